"""Schema-declared grounding (``"x-ground"``) handled like ``ground:`` entries in domain.yaml.

An annotation sits on one node, often one branch of a union of list items (a filter whose ``value`` is a
number in one shape, a path in another, a word in a third). Each annotated node is known here by its path
(``*`` for list items, union branches passed through, as ``paths.schema_nodes`` reads them) and by the
object branch that holds it, so that

- a field grounded in ``words`` learns its word shape (word_shapes.py) from the values of the examples'
  items of its own shape only (not from another shape's numbers or paths), and the request's candidates
  keep only what that shape admits ("the", "per" and "how many" are no service);
- a node with nothing in the request to ground it behaves as a ``ground:`` entry does: a nullable one admits
  only null, and an item shape of a list that may be empty is dropped (no number in the request: no
  numeric filter), where it was left open, so the model wrote any number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from .narrowing import ANNOTATION, drop_shape, ground_annotated_node, ground_node, no_items, nullable, \
    strip_annotations, types_of
from .paths import Path, last_star, schema_nodes, values_at

__all__ = ["Annotated", "annotated_paths", "ground_annotations", "iter_sources", "own_objects", "own_values"]


@dataclass(frozen=True)
class Annotated:
    path: Path
    node: dict[str, Any]
    holder: dict[str, Any] | None  # the object branch whose ``properties`` hold the node (None at the root)
    union: list[Any] | None = None  # the anyOf/oneOf list the holder is a branch of, if it is one

    @property
    def sources(self) -> list[str]:
        raw = self.node[ANNOTATION]
        return [raw] if isinstance(raw, str) else [s for s in raw if isinstance(s, str)]


def annotated_paths(schema: Any) -> list[Annotated]:
    """Every annotated node of ``schema`` with its path and holding object branch, in document order."""
    out: list[Annotated] = []

    def walk(node: Any, path: Path, holder: tuple[dict[str, Any] | None, list[Any] | None],
             within: list[Any] | None) -> None:
        if not isinstance(node, dict):
            return
        if ANNOTATION in node:
            out.append(Annotated(path, node, *holder))
        for key in ("anyOf", "oneOf", "allOf"):
            branches = node.get(key)
            for branch in branches if isinstance(branches, list) else ():
                walk(branch, path, holder, branches if key != "allOf" else None)
        props = node.get("properties")
        if isinstance(props, dict):
            for name, child in props.items():
                walk(child, (*path, str(name)), (node, within), None)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], (*path, "*"), (None, None), None)
        for child in node.get("prefixItems") or []:
            walk(child, (*path, "*"), (None, None), None)

    walk(schema, (), (None, None), None)
    return out


def own_values(found: list[Annotated], answers: list[Any]) -> dict[Path, list[list[Any]]]:
    """Per annotated path, each answer's values there that sit in an object of the annotated node's own shape
    (its holder validates it), so that another branch's values at the same path are not counted."""
    holders: dict[Path, list[Annotated]] = {}
    out: dict[Path, list[list[Any]]] = {}
    for item in found:
        if item.holder is None:  # a list's items or a map's values: no sibling tells its shape
            out[item.path] = [values_at(answer, item.path) for answer in answers]
        else:
            holders.setdefault(item.path, []).append(item)
    for path, items in holders.items():
        key = path[-1]
        out[path] = [[obj[key] for obj in objects if key in obj] for objects in own_objects(items, answers)]
    return out


def own_objects(items: list[Annotated], answers: list[Any]) -> list[list[dict[str, Any]]]:
    """Each answer's objects at the place of ``items`` (annotated nodes of one path) that one of their
    holders validates: the objects of their own shape of a union."""
    checks = [Draft202012Validator(strip_annotations(i.holder)) for i in items if i.holder is not None]
    path = items[0].path[:-1] if items else ()
    return [[o for o in values_at(answer, path) if isinstance(o, dict) and any(c.is_valid(o) for c in checks)]
            for answer in answers]


Candidates = Callable[[str, dict[str, Any]], "list[Any] | None"]


def ground_annotations(schema: dict[str, Any], candidates: Candidates, admits: Callable[[Path, Any], bool],
                       notes: list[str], *, named: dict[Path, Any] | None = None, body: str = ""
                       ) -> dict[Path, list[Any]]:
    """Ground every annotated node of ``schema`` (in place, the annotation taken off): the first source with
    values that ``admits`` (the field's word shape) keeps wins. With none: null where the node allows it,
    else the list item's shape is dropped where the list may be empty, else the node is left open. ``named``:
    per path, the words that name a value's label (named_values.py); a grounded item shape is split by them.
    Returns, per annotated path, the values surely items of their own (``NamedBank.sure``)."""
    splits, sure = [], {}
    for item in annotated_paths(schema):
        node, path = item.node, item.path
        sources = item.sources
        node.pop(ANNOTATION)
        known = False
        for source in sources:
            values = candidates(source, node)
            if values is None:
                continue
            known = True
            values = [v for v in values if admits(path, v)] if source == "words" else values
            if values:
                done = ground_annotated_node(node, values)
                notes.append(f"{ANNOTATION} {source}: {done} grounded in {values[:12]}")
                if source == "words" and item.path in (named or {}) and item.union is not None:
                    splits.append((item, named[item.path]))  # type: ignore[index]
                break
        else:
            if known:
                _unfilled(schema, item, notes)
    for item, bank in splits:  # after every annotation is read: a split copies the shape's nodes
        star = last_star(item.path)
        sure.setdefault(item.path, []).extend(bank.sure(body, item.node.get("enum") or []))
        labels, dropped, empty = bank.split(item.union, item.holder, body)
        if empty and no_items(schema_nodes(schema, item.path[:star])):
            notes.append(f"/{'/'.join(item.path[:star])}: no item (no word of the request has a mark of a value)")
        if labels:
            notes.append(f"/{'/'.join(item.path)}: named beside the request's words, only as "
                         + ", ".join(f"{bank.label} {label}" for label in labels))
        if dropped:
            notes.append(f"/{'/'.join(item.path)}: {dropped} words left out: part of another value, or with no "
                         "mark of one (no naming word beside them, not written like an identifier, not quoted)")
    return {path: values for path, values in sure.items() if values}


def _unfilled(schema: dict[str, Any], item: Annotated, notes: list[str]) -> None:
    node, path = item.node, item.path
    where = "/" + "/".join(path)
    scalar = not types_of(node) & {"object", "array"} and not {"properties", "items"} & node.keys()
    if scalar and nullable(node):
        ground_node(node, [], True, numeric=False)
        notes.append(f"{ANNOTATION} {where}: nothing in the request to ground it; null")
        return
    star = last_star(path)
    needed = item.holder is not None and path[-1] in (item.holder.get("required") or [])
    if scalar and needed and star >= 0 and no_items(schema_nodes(schema, path[:star]), dry=True):
        if drop_shape(schema_nodes(schema, path[: star + 1]), node):
            notes.append(f"{where}: no item of a shape whose {path[-1]} has nothing in the request to ground it")
            return
        if star == len(path) - 2 and no_items(schema_nodes(schema, path[:star])):
            notes.append(f"/{'/'.join(path[:star])}: no item (nothing in the request to ground {where})")
            return
    notes.append(f"{ANNOTATION} {where}: nothing in the request to ground it; left open")


def iter_sources(schema: Any) -> Iterator[str]:
    """Every source an annotation of ``schema`` names."""
    for item in annotated_paths(schema):
        yield from item.sources
