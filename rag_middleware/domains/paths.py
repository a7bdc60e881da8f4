"""Paths into answers and into their JSON Schemas: ``/operations/*/type``.

A path is a JSON Pointer whose ``*`` stands for every item of an array (or every value of an object). The
declarative mechanisms (grounding, derived fields, votes, hardening) name the fields they act on this way.
On a schema, a path walks ``properties``, ``items``/``prefixItems`` and ``additionalProperties``, and goes
into every branch of ``anyOf``/``oneOf``, so one path reaches the field in each variant of a union.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Path", "inline_refs", "last_star", "parse_path", "schema_nodes", "schema_words", "show_path", "values_at",
           "set_at", "remove_at"]

Path = tuple[str, ...]
MISSING = object()


def parse_path(text: str) -> Path:
    """``/a/*/b`` -> ("a", "*", "b"). ``~1`` and ``~0`` escape ``/`` and ``~`` as in RFC 6901."""
    if not isinstance(text, str) or not text.startswith("/"):
        raise ValueError(f"a path starts with '/', got {text!r}")
    if text == "/":
        return ()
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in text[1:].split("/"))


def _children(value: Any, part: str) -> Iterator[tuple[Any, Any]]:
    """(key, child) pairs of ``value`` that ``part`` selects."""
    if part == "*":
        if isinstance(value, list):
            yield from enumerate(value)
        elif isinstance(value, dict):
            yield from value.items()
        return
    if isinstance(value, dict) and part in value:
        yield part, value[part]
    elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
        yield int(part), value[int(part)]


def values_at(value: Any, path: Path) -> list[Any]:
    """Every value the path reaches in ``value`` (a wildcard may reach many, a missing key none)."""
    current = [value]
    for part in path:
        current = [child for v in current for _, child in _children(v, part)]
    return current


def set_at(value: Any, path: Path, fn: Callable[[Any], Any]) -> None:
    """Replace each value the path reaches by ``fn(old)``; the last key is created on objects that lack it
    (``fn`` then receives ``MISSING``). Returning ``MISSING`` deletes the key or item."""
    if not path:
        raise ValueError("cannot replace the root")
    parents = values_at(value, path[:-1])
    last = path[-1]
    for parent in parents:
        if isinstance(parent, dict):
            keys = list(parent) if last == "*" else [last]
            for key in keys:
                new = fn(parent.get(key, MISSING))
                if new is MISSING:
                    parent.pop(key, None)
                else:
                    parent[key] = new
        elif isinstance(parent, list):
            indexes = range(len(parent)) if last == "*" else ([int(last)] if last.isdigit() else [])
            for i in sorted((i for i in indexes if i < len(parent)), reverse=True):
                new = fn(parent[i])
                if new is MISSING:
                    del parent[i]
                else:
                    parent[i] = new


def remove_at(value: Any, path: Path) -> None:
    set_at(value, path, lambda _old: MISSING)


# -- schemas --------------------------------------------------------------------------------------------

def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of the schema with local ``$ref``s (``#/$defs/X``) replaced by what they point to, so a path can
    walk through them and a narrowed copy of a shared definition changes one place only. Recursive
    definitions stop after one level (the reference is left in place)."""
    root = schema  # walk() builds new containers all the way down: the input is never shared or changed
    defs = {**root.get("definitions", {}), **root.get("$defs", {})}
    kept: list[str] = []  # references left in place (recursive, or to no local definition)

    def walk(node: Any, seen: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [walk(n, seen) for n in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if ref.startswith("#/") and ref not in seen and name in defs:
                target = walk(defs[name], seen | {ref})
                rest = {k: walk(v, seen) for k, v in node.items() if k != "$ref"}
                return {**target, **rest}
            kept.append(ref)
        return {k: walk(v, seen) if k not in ("$defs", "definitions") else copy.deepcopy(v) for k, v in node.items()}

    out = walk({k: v for k, v in root.items() if k not in ("$defs", "definitions")}, frozenset())
    if kept:
        return walk(root, frozenset())  # a recursive schema keeps its definitions
    return out


def _all_nodes(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from _all_nodes(v)
    elif isinstance(node, list):
        for v in node:
            yield from _all_nodes(v)


def _branches(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The node itself and, recursively, every branch of its anyOf/oneOf/allOf."""
    yield node
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in node.get(key, []) or []:
            if isinstance(branch, dict):
                yield from _branches(branch)


def _schema_children(node: dict[str, Any], part: str) -> Iterator[dict[str, Any]]:
    for branch in _branches(node):
        if part == "*":
            for key in ("prefixItems",):
                for item in branch.get(key, []) or []:
                    if isinstance(item, dict):
                        yield item
            if branch.get("type") == "object" or "additionalProperties" in branch:
                for item in (branch.get("properties") or {}).values():  # every value of an object
                    if isinstance(item, dict):
                        yield item
            for key in ("items", "additionalProperties"):
                if isinstance(branch.get(key), dict):
                    yield branch[key]
            continue
        props = branch.get("properties")
        if isinstance(props, dict) and isinstance(props.get(part), dict):
            yield props[part]
        elif part.isdigit() and isinstance(branch.get("prefixItems"), list) and int(part) < len(branch["prefixItems"]):
            yield branch["prefixItems"][int(part)]


def show_path(path: Path) -> str:
    """A path as notes and reports write it: ``/filters/*/value``."""
    return "/" + "/".join(path)


def last_star(path: Path) -> int:
    """The index of the innermost list step (``*``) of a path, -1 when it has none: ``path[:last_star(path)]``
    is the list whose items hold the value."""
    return len(path) - 1 - path[::-1].index("*") if "*" in path else -1


def schema_nodes(schema: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The schema nodes (objects, to edit in place) that describe the values at ``path``. Call on an
    :func:`inline_refs` copy so that editing a node does not reach a shared definition elsewhere."""
    current = [schema]
    for part in path:
        current = [child for node in current for child in _schema_children(node, part)]
    return current


def parent_objects(schema: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The object-schema branches that hold the last key of ``path`` in their ``properties``."""
    if not path:
        return []
    out = []
    for node in schema_nodes(schema, path[:-1]):
        for branch in _branches(node):
            if isinstance(branch.get("properties"), dict) and path[-1] in branch["properties"]:
                out.append(branch)
    return out


def enum_values(node: dict[str, Any]) -> list[Any]:
    """The enum values a schema node allows, in its own branches too (``anyOf``/``oneOf``), in order, once."""
    values: list[Any] = []
    for b in [node, *[b for k in ("anyOf", "oneOf") for b in node.get(k, []) or [] if isinstance(b, dict)]]:
        values += [v for v in b.get("enum", []) if v not in values]
    return values


def schema_words(node: Any, *, labels: bool = True) -> set[str]:
    """Every property name (and, with ``labels``, string enum value) of a schema, at any depth: the schema's
    own vocabulary."""
    if isinstance(node, list):
        return {word for item in node for word in schema_words(item, labels=labels)}
    if not isinstance(node, dict):
        return set()
    own = set(node.get("properties") or {}) if isinstance(node.get("properties"), dict) else set()
    if labels and isinstance(node.get("enum"), list):
        own |= {v for v in node["enum"] if isinstance(v, str)}
    return own | {word for value in node.values() for word in schema_words(value, labels=labels)}
