"""Narrowing a JSON Schema node to allowed values (a vote's winners, a clause's labels, a request's grounded
values). Votes and clauses narrow copies: the schema a request starts from is never changed in place by a
failed narrowing.

A schema can ask for grounding itself: ``"x-ground": "columns"`` (or a list, the first source with values
wins) on a string or number node admits only that context's values for the request; on an object with
``additionalProperties`` it makes them its keys; on an array it grounds the items and bounds the length by
the number of values. The annotation never reaches the decoder or the prompt.
"""

from __future__ import annotations

import copy
from typing import Any

from .paths import Path, schema_nodes

__all__ = ["ANNOTATION", "annotated", "apply_votes", "ground_node", "narrowed_copy", "nullable", "replace_node",
           "restrict", "set_or_null", "strip_annotations", "types_of"]

ANNOTATION = "x-ground"


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


def types_of(node: dict[str, Any]) -> set[str]:
    """The JSON types a node admits (its union branches' too)."""
    t = node.get("type")
    out = set(t) if isinstance(t, list) else {t} if isinstance(t, str) else set()
    for key in ("anyOf", "oneOf"):
        for branch in node.get(key, []) or []:
            if isinstance(branch, dict):
                out |= types_of(branch)
    return out


def nullable(node: dict[str, Any]) -> bool:
    t = node.get("type")
    if t == "null" or (isinstance(t, list) and "null" in t):
        return True
    if None in (node.get("enum") or []) or ("const" in node and node["const"] is None):
        return True
    return any(isinstance(b, dict) and nullable(b) for k in ("anyOf", "oneOf") for b in node.get(k, []) or [])


def ground_node(node: dict[str, Any], values: list[Any], admit_null: bool, *, numeric: bool) -> None:
    """Admit only ``values`` where the node takes a scalar of their kind; object and array branches of a union
    (a comparison such as ``{"$gt": 5}``) stay as they are."""
    kind = {"integer", "number"} if numeric else {"string"}
    for key in ("anyOf", "oneOf"):
        branches = node.get(key)
        if isinstance(branches, list):
            kept: list[dict[str, Any]] = []
            for b in branches:
                if not isinstance(b, dict):
                    continue
                types = types_of(b) if ("type" in b or "enum" in b) else set()
                if not types & (kind | {"null"}):
                    kept.append(b)  # an object, an array, a boolean: not what grounding is about
                elif types - kind - {"null"} and "enum" not in b:
                    kept.append({"type": sorted(types - kind - {"null"})})  # other scalar kinds stay open
            node[key] = [{"enum": [*values, *([None] if admit_null else [])]}, *kept]
            return
    replace_node(node, {"enum": [*values, *([None] if admit_null else [])]})


def annotated(node: Any) -> list[dict[str, Any]]:
    """Every node (at any depth, union branches included) that carries the grounding annotation."""
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if ANNOTATION in node:
            out.append(node)
        for v in node.values():
            out += annotated(v)
    elif isinstance(node, list):
        for v in node:
            out += annotated(v)
    return out


def strip_annotations(node: Any) -> Any:
    """A copy without the grounding annotation (for the decoder and the prompt)."""
    if isinstance(node, dict):
        return {k: strip_annotations(v) for k, v in node.items() if k != ANNOTATION}
    return [strip_annotations(v) for v in node] if isinstance(node, list) else node


def ground_annotated_node(node: dict[str, Any], values: list[Any]) -> str:
    """Ground one annotated node in ``values`` (in place); returns what was done, for the notes."""
    if "object" in types_of(node) or "additionalProperties" in node:
        value_schema = node.get("additionalProperties")
        value_schema = value_schema if isinstance(value_schema, dict) else {}
        node["properties"] = {str(v): copy.deepcopy(value_schema) for v in values}
        node["additionalProperties"] = False
        return "keys"
    if isinstance(node.get("items"), dict) and ("array" in types_of(node) or "type" not in node):
        items = node["items"]
        ground_node(items, values, nullable(items), numeric=bool(types_of(items) & {"integer", "number"}))
        # each grounded value at most once: a small model otherwise repeats one until the list is full
        node["maxItems"] = max(min(int(node.get("maxItems", len(values))), len(values)), int(node.get("minItems", 0)))
        return "items"
    types = types_of(node)
    numeric = bool(types & {"integer", "number"}) and "string" not in types
    if numeric and "number" not in types:
        values = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    ground_node(node, values, nullable(node), numeric=numeric)
    return "values"


def fix_items(array: dict[str, Any], value: Path, items: list[dict[str, Any]]) -> bool:
    """An anchored list's plan (domains/anchors.py): one position per item, its number fixed at ``value`` and
    its labels narrowed to those voted; optional items (last) may be left out. An item whose number grounding
    no longer admits (another field's: "a 12-month contract") is left out. False (and the node unchanged)
    when the item schema cannot take the plan."""
    item = array.get("items")
    if not isinstance(item, dict):
        return False
    out, kept = [], []
    for plan in items:
        new = narrowed_copy(item, value, [plan["value"]])
        if new is None:
            continue
        for path, allowed in plan["labels"].items():
            if new is not None and allowed:
                new = narrowed_copy(new, tuple(path.split("/")), allowed)
        if new is None:
            return False
        out.append(new)
        kept.append(plan)
    if items and not kept:
        return False
    required = sum(not plan.get("optional") for plan in kept)
    array.update({"prefixItems": out, "items": False, "minItems": required, "maxItems": len(out)})
    return True


def drop_shape(items: list[dict[str, Any]], dead: dict[str, Any]) -> bool:
    """Take out of a list's item union (``items``: the item schemas) the branch that holds ``dead``, a value
    node nothing in the request can fill: the item cannot take that shape, the others stay. False, and
    nothing changed, when no union holds it in one of several branches."""
    def holds(node: Any) -> bool:
        if node is dead:
            return True
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        return any(holds(child) for child in children)

    for item in items:
        for key in ("anyOf", "oneOf"):
            branches = item.get(key)
            if isinstance(branches, list):
                kept = [b for b in branches if not holds(b)]
                if kept and len(kept) < len(branches):
                    branches[:] = kept  # in place: a caller may hold the list (annotations.Annotated.union)
                    return True
    return False


def no_items(arrays: list[dict[str, Any]], *, dry: bool = False) -> bool:
    """Optional lists whose items need a value the request does not have admit no item (True); False, and
    nothing changed, unless every node is an array that may be empty. ``dry``: only say whether they may."""
    if not arrays or any(a.get("type") != "array" or a.get("minItems", 0) > 0 for a in arrays):
        return False
    for array in arrays if not dry else ():
        array["maxItems"] = 0
    return True


def set_or_null(node: dict[str, Any], allowed: list[str]) -> dict[str, Any] | None:
    """A copy of a nullable node that admits only null (``["null"]``) or only its other values (``["set"]``);
    None when both are allowed or the node cannot be narrowed so."""
    if set(allowed) == {"null"}:
        return {"type": "null"}
    if set(allowed) != {"set"}:
        return None
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            kept = [b for b in node[key] if not (isinstance(b, dict) and b.get("type") == "null")]
            if not kept or len(kept) == len(node[key]):
                return None
            rest = {k: v for k, v in node.items() if k != key}
            return {**rest, **copy.deepcopy(kept[0])} if len(kept) == 1 else {**rest, key: copy.deepcopy(kept)}
    if isinstance(node.get("type"), list) and "null" in node["type"]:
        return {**copy.deepcopy(node), "type": [t for t in node["type"] if t != "null"]}
    if isinstance(node.get("enum"), list) and None in node["enum"]:  # a grounded field: its values, or null
        kept = [v for v in node["enum"] if v is not None]
        return {**copy.deepcopy(node), "enum": kept} if kept else None
    return None


def apply_votes(schema: dict[str, Any], votes: list[dict[str, Any]], notes: list[str]) -> None:
    """Each vote's field admits only the labels it allows, where every node at its path can be narrowed so."""
    for vote in votes:
        if vote.get("items") is not None:
            arrays = schema_nodes(schema, tuple(vote["path"].strip("/").split("/")))
            value = tuple(vote["value"].split("/"))
            if arrays and all(fix_items(a, value, vote["items"]) for a in arrays):
                notes.append(f"{vote['path']}: one item per number, {[i['value'] for i in vote['items']]}")
            continue
        if not vote.get("allowed"):
            continue
        path = tuple(vote["path"].strip("/").split("/"))
        nodes = schema_nodes(schema, path)
        narrow = set_or_null if vote.get("presence") else restrict
        narrowed = [(n, narrow(n, vote["allowed"])) for n in nodes]
        if nodes and all(new is not None for _, new in narrowed):
            for node, new in narrowed:
                replace_node(node, new)  # type: ignore[arg-type]
            notes.append(f"{vote['path']}: vote admits {vote['allowed']}")
        elif nodes and not vote.get("presence") and (pruned := narrowed_copy(schema, path, vote["allowed"])):
            # a label that picks the branch of a union (a tool whose arguments differ): the other branches go
            replace_node(schema, pruned)
            notes.append(f"{vote['path']}: vote admits {vote['allowed']} (the other branches of the schema dropped)")
