"""Sure items: the list items a request's values surely are, written first and each exactly once.

Some grounded values of a list's items are surely items of their own:

- a value a word names as one label, written like an identifier ("host pay-01": named_values.NamedBank.sure);
- a value whose other label a reliable phrase decides ("excluding /v1/webhooks", "above 800 ms":
  value_phrases.py);
- a value the examples always give an item when the request writes one (a path matching the field's
  ``pattern``: used_values.py).

A minimum length alone leaves a small model to pick which items fill it, and it writes the first sure value
and stops, or one value twice. So each sure value gets a position of its own: the list's ``prefixItems``
hold one item per sure value, in the request's order, each the value's own item shape(s) with only that value;
the list's other items (``items``) admit every other value as before, and no sure one again. Labels the
grammar has not decided for the value (a number's field, a word's operator) stay the model's choice.
"""

from __future__ import annotations

import copy
from typing import Any

from . import grounding
from .paths import Path, schema_nodes
from .request_words import words_of

__all__ = ["SureValues", "add_sure", "require_items"]

# per list path, per item key: the values surely items, in no order
SureValues = dict[Path, dict[str, list[Any]]]


def add_sure(sure: SureValues, path: Path, values: list[Any]) -> None:
    """Note ``values`` of the item key ``path[-1]`` of the list ``path[:-2]`` (``.../*/key``) as sure."""
    if len(path) < 2 or path[-2] != "*" or not values:
        return
    found = sure.setdefault(path[:-2], {}).setdefault(path[-1], [])
    found += [v for v in values if v not in found]


def _enum(branch: Any, key: str) -> list[Any] | None:
    node = ((branch.get("properties") or {}).get(key) if isinstance(branch, dict) else None) or {}
    return node.get("enum") if isinstance(node.get("enum"), list) else None


def _first_at(body: str, value: Any) -> int:
    """Where the request first writes ``value`` (a number as written); after everything if nowhere."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return next((m.start() for m in grounding.number_matches(body) if grounding.number_of(m) == value),
                    len(body))
    at = body.lower().find(str(value).lower())
    return at if at >= 0 else len(body)


def _joins(value: Any, values: list[Any]) -> bool:
    """Whether ``value`` holds another of ``values`` among its words ("pay-01 and pay-04"): no value of its own."""
    words = words_of(str(value))
    return len(words) > 1 and any(v != value and _within(words_of(str(v)), words) for v in values)


def _within(part: tuple[str, ...], words: tuple[str, ...]) -> bool:
    return bool(part) and any(words[i:i + len(part)] == part for i in range(len(words) - len(part) + 1))


def require_items(schema: dict[str, Any], sure: SureValues, body: str, notes: list[str]) -> None:
    """Give each sure value of each list in ``schema`` (in place) a position of its own, as above. A value no
    item shape admits any more (a vote or a settled field took it) is no item; a list with positions already
    (one per clause) or bounded below its sure values is left as it is."""
    for path, per_key in sure.items():
        for array in schema_nodes(schema, path):
            items = array.get("items")
            if array.get("type") != "array" or "prefixItems" in array or not isinstance(items, dict):
                continue
            union = items.get("anyOf") if isinstance(items.get("anyOf"), list) else [items]
            wanted = sorted(((v, key) for key, values in per_key.items() for v in values if not _joins(v, values)),
                            key=lambda vk: _first_at(body, vk[0]))
            prefix, placed = [], []
            for value, key in wanted:
                own = [b for b in union if value in (_enum(b, key) or [])]
                if not own:
                    continue
                shapes = []
                for branch in own:
                    shape = copy.deepcopy(branch)
                    shape["properties"][key] = {**shape["properties"][key], "enum": [value]}
                    shapes.append(shape)
                prefix.append(shapes[0] if len(shapes) == 1 else {"anyOf": shapes})
                placed.append((value, key))
            if not prefix or len(prefix) > array.get("maxItems", len(prefix)):
                continue
            rest = []
            for branch in union:
                kept = copy.deepcopy(branch)
                for key in {k for _, k in placed}:
                    enum = _enum(kept, key)
                    if enum is not None:
                        kept["properties"][key] = {**kept["properties"][key],
                                                   "enum": [v for v in enum if (v, key) not in placed]}
                if all(_enum(kept, k) != [] for k in {k for _, k in placed}):
                    rest.append(kept)
            array["prefixItems"] = prefix
            array["items"] = (rest[0] if len(rest) == 1 and "anyOf" not in items else
                              {**{k: v for k, v in items.items() if k != "anyOf"}, "anyOf": rest}) if rest else False
            array["minItems"] = max(len(prefix), array.get("minItems", 0))
            if not rest:
                array["maxItems"] = len(prefix)
                array["minItems"] = len(prefix)
            notes.append(f"/{'/'.join(path)}: first {len(prefix)} item(s), one per value surely an item: "
                         f"{[v for v, _ in placed][:6]}")
