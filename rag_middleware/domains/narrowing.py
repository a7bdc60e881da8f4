"""Narrowing a JSON Schema node to allowed values (a vote's winners, a clause's labels), as copies: the
schema a request starts from is never changed in place by a failed narrowing."""

from __future__ import annotations

import copy
from typing import Any

from .paths import Path, schema_nodes

__all__ = ["narrowed_copy", "replace_node", "restrict"]


def replace_node(node: dict[str, Any], new: dict[str, Any]) -> None:
    """``node`` becomes ``new`` in place, keeping its description and title (the model reads them)."""
    keep = {k: node[k] for k in ("description", "title") if k in node}
    node.clear()
    node.update({**new, **keep})


def restrict(node: dict[str, Any], allowed: list[Any]) -> dict[str, Any] | None:
    """A copy of ``node`` that admits only ``allowed`` values (None: it admits none of them)."""
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            branches = [b for b in (restrict(x, allowed) for x in node[key] if isinstance(x, dict)) if b is not None]
            if not branches:
                return None
            return {**{k: v for k, v in node.items() if k != key}, key: branches} if len(branches) > 1 else branches[0]
    if "const" in node:
        return dict(node) if node["const"] in allowed else None
    if "enum" in node:
        kept = [v for v in node["enum"] if v in allowed]
        return {**node, "enum": kept} if kept else None
    if node.get("type") == "object" or "properties" in node:
        return None  # an object is not a label
    return {"enum": list(allowed)}


def narrowed_copy(node: dict[str, Any], inner: Path, allowed: list[str]) -> dict[str, Any] | None:
    """A copy of ``node`` with only the anyOf/oneOf branches whose value at ``inner`` can be an allowed label,
    that value narrowed in each; None when no branch can. The dropped branches are never copied."""
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            copies = (narrowed_copy(b, inner, allowed) for b in node[key] if isinstance(b, dict))
            kept = [c for c in copies if c is not None]
            if not kept:
                return None
            return {**{k: copy.deepcopy(v) for k, v in node.items() if k != key}, key: kept}
    news = [restrict(t, allowed) for t in schema_nodes(node, inner)]  # read only: nothing copied yet
    if not news or any(n is None for n in news):
        return None
    copied = copy.deepcopy(node)
    for target, new in zip(schema_nodes(copied, inner), news, strict=True):
        replace_node(target, new)  # type: ignore[arg-type]
    return copied
