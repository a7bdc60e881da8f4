"""A narrowed grammar that admits nothing is put back as the schema had it, with a note.

Each mechanism narrows one node at a time (grounding, votes, list bounds, per-position steps), and together
they can leave a node no value could satisfy: an empty ``enum``, ``minItems`` above ``maxItems``, a
``minimum`` above its ``maximum``, a required property or a list's required item that admits nothing, a
union none of whose branches admits anything. A decoder does not say so: llama.cpp drops a grammar it cannot
build and answers unconstrained, and Ollama may refuse the request. ``guarded`` finds every such node and
replaces it by the same node of the un-narrowed schema (the nearest enclosing one where the narrowed
structure has no counterpart there), so a request loses that narrowing only, never the grammar.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

__all__ = ["guarded", "shown", "unsatisfiable"]

Where = tuple[str | int, ...]  # keys from the schema's root to a node


def _bounds(node: dict[str, Any]) -> str | None:
    for low, high in (("minItems", "maxItems"), ("minLength", "maxLength"), ("minimum", "maximum"),
                      ("minProperties", "maxProperties")):
        if isinstance(node.get(low), (int, float)) and isinstance(node.get(high), (int, float)) \
                and node[low] > node[high]:
            return f"{low} {node[low]} > {high} {node[high]}"
    low, high = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low >= high:
        return f"exclusiveMinimum {low} >= exclusiveMaximum {high}"
    return None


def unsatisfiable(node: Any, where: Where = ()) -> list[tuple[Where, str]]:
    """Each node under ``node`` that admits nothing, with why; a parent is listed only when its own
    constraints are the cause (a required child that admits nothing is listed as the child)."""
    if not isinstance(node, dict):
        return [] if node is not False or not where else [(where, "false admits nothing")]
    found: list[tuple[Where, str]] = []
    if "enum" in node and isinstance(node["enum"], list) and not node["enum"]:
        found.append((where, "empty enum"))
    if isinstance(node.get("type"), list) and not node["type"]:
        found.append((where, "no type"))
    if (why := _bounds(node)) is not None:
        found.append((where, why))
    required = set(node.get("required") or []) if isinstance(node.get("required"), list) else set()
    for name, child in (node.get("properties") or {}).items():
        if name in required:
            found += unsatisfiable(child, (*where, "properties", name))
    needed = node.get("minItems", 0) if isinstance(node.get("minItems"), int) else 0
    for i, child in enumerate(node.get("prefixItems") or []):
        if i < needed:
            found += unsatisfiable(child, (*where, "prefixItems", i))
    if needed > len(node.get("prefixItems") or []) and isinstance(node.get("items"), dict):
        found += unsatisfiable(node["items"], (*where, "items"))
    for key in ("anyOf", "oneOf"):
        branches = node.get(key)
        if isinstance(branches, list):
            per_branch = [unsatisfiable(b, (*where, key, i)) for i, b in enumerate(branches)]
            if branches and all(per_branch):
                found += [p for branch in per_branch for p in branch]
            elif not branches:
                found.append((where, f"empty {key}"))
    for i, branch in enumerate(node.get("allOf") or []):
        found += unsatisfiable(branch, (*where, "allOf", i))
    return found


def shown(where: Where) -> str:
    """A node's place as a field path: ``/filters/0/value``."""
    return "/" + "/".join(str(k) for k in where if k not in ("properties", "items", "prefixItems"))


def _at(node: Any, where: Where) -> Any:
    for key in where:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def guarded(schema: dict[str, Any], before: Callable[[], dict[str, Any]], notes: list[str]) -> dict[str, Any]:
    """``schema`` with every node that admits nothing replaced by the same node of ``before()`` (the schema
    before narrowing, made only when needed); one note per node put back."""
    if not unsatisfiable(schema):
        return schema
    reference = before()
    own = {where for where, _ in unsatisfiable(reference)}  # the schema's own faults are its author's to mend
    for _ in range(8):  # each round puts back at least one node; a handful is plenty
        found = [(where, why) for where, why in unsatisfiable(schema) if where not in own]
        if not found:
            return schema
        where, why = found[0]
        back = where
        while back and _at(reference, back) is None:
            back = back[:-1]
        notes.append(f"grammar: {shown(back)} admitted nothing ({why}); left as the schema has it")
        if not back:
            return copy.deepcopy(reference)
        parent = _at(schema, back[:-1])
        if parent is None:
            return copy.deepcopy(reference)
        parent[back[-1]] = copy.deepcopy(_at(reference, back))
    return copy.deepcopy(reference)
