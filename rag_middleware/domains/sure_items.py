"""Sure items: the list items a request's values surely are, written first and each exactly once.

Some grounded values of a list's items are surely items of their own:

- a value a word names as one label, written like an identifier ("host pay-01": named_values.NamedBank.sure);
- a value whose other label a reliable phrase decides ("excluding /v1/webhooks", "above 800 ms":
  value_phrases.py), or a label word beside it ("800 ms": number_labels.py);
- a value the examples always give an item when the request writes one (a path matching the field's
  ``pattern``: used_values.py).

A minimum length alone leaves a small model to pick which items fill it, and it writes the first sure value
and stops, or one value twice. So each sure value gets a position of its own: the list's ``prefixItems``
hold one item per sure value, in the request's order, each the value's own item shape(s) with only that value;
the list's other items (``items``) admit every other value as before, and no sure one again. Labels the
grammar has not decided for the value (a number's field, a word's operator) stay the model's choice.

The sure items come first, so an answer may hold its items in another order than the request writes their
values. Where the examples keep that order as their convention (ORDER_MIN examples with two or more such
items, ORDER_SHARE of them in order: ``learn_order``), the answer's items are put back in it after generation
(``in_request_order``, a repair like the others).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from . import grounding
from .paths import Path, last_star, schema_nodes, show_path, values_at
from .request_words import quoted_spans, words_of

__all__ = ["ORDER_MIN", "ORDER_SHARE", "SureValues", "add_sure", "in_request_order", "learn_order", "require_items"]

ORDER_MIN = 3  # examples with two or more items whose values the question writes
ORDER_SHARE = 0.75  # of them, those whose items follow the question's order: the convention most keep

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


def _joins(value: Any, values: list[Any], body: str, quotes: list[tuple[int, int]]) -> bool:
    """Whether ``value`` holds another of ``values`` among its words ("pay-01 and pay-04"): no value of its own,
    unless the request quotes it whole ("S3 PutObject")."""
    words = words_of(str(value))
    return len(words) > 1 and not any(body[a:b].strip() == str(value) for a, b in quotes) and any(
        v != value and _within(words_of(str(v)), words) for v in values)


def _in_quotes(value: Any, body: str, quotes: list[tuple[int, int]]) -> bool:
    """Whether every mention of ``value`` lies inside a quoted phrase that is more than it: a part of a quoted
    value ("S3" of "S3 PutObject"), no value of its own."""
    if not isinstance(value, str) or not quotes:
        return False
    starts = [m.start() for m in re.finditer(re.escape(value), body)]
    return bool(starts) and all(any(a <= s and s + len(value) <= b and body[a:b].strip() != value for a, b in quotes)
                                for s in starts)


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
            quotes = quoted_spans(body)
            wanted = sorted(((v, key) for key, values in per_key.items() for v in values
                             if not _joins(v, values, body, quotes) and not _in_quotes(v, body, quotes)),
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


def _order(items: list[Any], key: str, body: str) -> list[int]:
    return [_first_at(body, item.get(key)) if isinstance(item, dict) else len(body) for item in items]


def learn_order(found: list[Any], pairs: list[tuple[str, Any]]) -> dict[Path, str]:
    """Per list of grounded union items (``found``: annotations.Annotated), its value key, where the examples
    (``pairs``: request body, answer) keep the items in the order the question writes their values."""
    out: dict[Path, str] = {}
    for item in found:
        if item.holder is None or "*" not in item.path or len(item.path) != last_star(item.path) + 2:
            continue
        path, key = item.path[:last_star(item.path)], item.path[-1]
        if path in out:  # another shape of the same list: the same answer
            continue
        seen = kept = 0
        for body, answer in pairs:
            lists = _lists(answer, path)
            for items in lists:
                at = [p for p in _order(items, key, body) if p < len(body)]
                if len(at) >= 2:
                    seen += 1
                    kept += at == sorted(at)
        if seen >= ORDER_MIN and kept >= ORDER_SHARE * seen:
            out[path] = key
    return out


def _lists(value: Any, path: Path) -> list[list[Any]]:
    return [v for v in values_at(value, path) if isinstance(v, list)]


def in_request_order(value: Any, ordered: dict[Path, str], body: str, repairs: list[str]) -> None:
    """Put the items of each ordered list of ``value`` (in place) in the order the request writes their values;
    items whose value it does not write keep their order, after them."""
    for path, key in ordered.items():
        for items in _lists(value, path):
            at = _order(items, key, body)
            order = sorted(range(len(items)), key=lambda i: at[i])
            if order != list(range(len(items))):
                items[:] = [items[i] for i in order]
                repairs.append(f"{show_path(path)}: items put in the order the request writes their values")
