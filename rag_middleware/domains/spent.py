"""Spent numbers: a number of the request that one field surely takes is no other field's value.

A request's numbers ground several fields at once (a limit, a window, a list item's value), and a small model
given the same number twice writes it twice ("top 5" as a limit and as a status 5). Two things make a
number surely one field's, and the other fields grounded in numbers then stop admitting it:

- every mention of it is made an item of an anchored list (anchors.py), judged sure (``spend_anchored``);
- a scalar field grounded in numbers is settled on it: after the votes its grammar admits that one number and
  nothing else, not even null (``spend_settled``). Only a number written once in the request is spent so: a
  number written twice may be two fields' values.

A list item shape that admits nothing else then admits no item of that shape (narrowing.drop_shape), and a
list that may be empty, whose only shape that was, no item; a scalar keeps its number rather than admit
nothing.
"""

from __future__ import annotations

from typing import Any

from . import grounding
from .annotations import annotated_paths
from .narrowing import drop_shape, no_items, nullable
from .paths import Path, last_star, schema_nodes, show_path
from .spec import DeclarativeSpec

__all__ = ["numeric_annotations", "spend_anchored", "spend_settled"]


def _numeric_paths(spec: DeclarativeSpec, annotated: list[Path]) -> list[Path]:
    """The paths grounded in the request's numbers (not through units): ``ground:`` entries and the ``x-ground``
    ones (``annotated``)."""
    found = [p for p, g in spec.ground.items() if g.source == "numbers" and p not in spec.units]
    return found + [p for p in annotated if p not in found]


def numeric_annotations(base: dict[str, Any]) -> list[Path]:
    """The paths a domain's schema (with its annotations) grounds in the request's numbers by ``x-ground``."""
    return [a.path for a in annotated_paths(base) if "numbers" in a.sources]


def _targets(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in [node, *[b for k in ("anyOf", "oneOf") for b in node.get(k, []) or []]]
            if isinstance(t, dict) and isinstance(t.get("enum"), list)]


def _take(schema: dict[str, Any], path: Path, spent: set[Any], why: str, notes: list[str], *,
          drop: bool = True) -> None:
    """``path``'s nodes no longer admit ``spent``; a list item shape left with nothing is dropped (``drop``)."""
    for node in schema_nodes(schema, path):
        for target in _targets(node):
            if not spent & {v for v in target["enum"] if v is not None}:
                continue
            kept = [v for v in target["enum"] if v is None or v not in spent]
            if kept:
                target["enum"] = kept
                notes.append(f"{show_path(path)}: {sorted(spent)} taken by {why}")
            elif drop and "*" in path:
                star = last_star(path)
                if drop_shape(schema_nodes(schema, path[:star + 1]), node):
                    notes.append(f"{show_path(path[:star])}: no item of the shape whose {path[-1]} is only "
                                 f"{sorted(spent)}, taken by {why}")
                elif no_items(schema_nodes(schema, path[:star])):
                    notes.append(f"{show_path(path[:star])}: no item (its only value {sorted(spent)} is taken by "
                                 f"{why})")


def spend_anchored(spec: DeclarativeSpec, schema: dict[str, Any], votes: list[dict[str, Any]],
                   notes: list[str]) -> None:
    """A number that every mention of makes an item of an anchored list is no other field's value: the other
    fields grounded in the request's numbers no longer admit it."""
    for vote in votes:
        if not vote.get("items"):
            continue
        mentions = vote.get("mentions", [])
        spent = {m["value"] for m in mentions if m.get("sure") and m.get("item")} - {
            m["value"] for m in mentions if not (m.get("sure") and m.get("item"))}
        anchor = tuple(vote["path"].strip("/").split("/"))
        for path, ground in spec.ground.items():
            if ground.source == "numbers" and path not in spec.units and path[: len(anchor)] != anchor:
                _take(schema, path, spent, vote["path"], notes, drop=False)


def spend_settled(spec: DeclarativeSpec, schema: dict[str, Any], annotated: list[Path], body: str,
                  notes: list[str]) -> None:
    """A number written once that a scalar field grounded in numbers is settled on (``schema``, after the
    votes) is no other numeric field's value; ``annotated``: the paths its schema grounds in numbers by
    ``x-ground`` (``numeric_annotations``)."""
    paths = _numeric_paths(spec, annotated)
    for path in (p for p in paths if "*" not in p):
        nodes = schema_nodes(schema, path)
        enums = [t["enum"] for node in nodes for t in _targets(node)]
        if len(enums) != 1 or len(enums[0]) != 1 or any(nullable(n) for n in nodes):
            continue
        number = enums[0][0]
        if sum(grounding.number_of(m) == number for m in grounding.number_matches(body)) != 1:
            continue
        for other in paths:
            if other != path:
                _take(schema, other, {number}, show_path(path), notes)
