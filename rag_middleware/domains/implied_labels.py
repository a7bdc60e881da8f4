"""Implied labels: within one item shape of a list, one key's label that the examples always pair with another
key's label ("message" is always ``contains``; a ``contains`` word condition is always on the ``message``).

A list item of a union shape often carries two labels: which field a condition is on, and its operator. The
request's words decide some of them (named_values.py names the field of "host pay-01", value_phrases.py the
operator of "excluding pay-01" and of "containing \"timeout\""), and the other is left to a small model, which
pairs them badly ("deadlock detected" as a host, equal to). The examples say which pairs go together: per
item shape, per pair of its enum keys (A, B), a label ``a`` of A implies ``b`` of B when at least IMPLY_MIN
of the examples' items of that shape with ``a`` have ``b``, and at least IMPLY_SHARE of them do. An item whose
B a phrase of its own decides (value_phrases.py: "excluding host pay-01" is ``neq``) says nothing of what
``a`` alone implies, and is not counted.

In a request, an item shape of the grammar (after grounding split it) whose A admits only ``a`` admits only
``b`` for B, where it admits ``b`` and no other implication says otherwise; implied labels imply further.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from .annotations import Annotated, own_objects
from .paths import Path, last_star, schema_nodes
from .value_phrases import ValuePhrases

__all__ = ["IMPLY_MIN", "IMPLY_SHARE", "Implied", "imply", "learn_implied"]

IMPLY_MIN = 3  # example items with both labels
IMPLY_SHARE = 0.9  # of the example items with the first label, the share with the second


@dataclass(frozen=True)
class Implied:
    key: str
    label: str
    other: str
    implied: str
    seen: int  # example items of the shape with ``label`` (those whose ``other`` no phrase decided)
    paired: int  # of them, those with ``implied``


def _labels(holder: dict[str, Any]) -> dict[str, list[str]]:
    """The holder's keys whose node is a string enum of two labels or more."""
    out = {}
    for key, node in (holder.get("properties") or {}).items():
        enum = node.get("enum") if isinstance(node, dict) else None
        if isinstance(enum, list) and len(enum) > 1 and all(isinstance(v, str) for v in enum):
            out[key] = enum
    return out


def learn_implied(found: list[Annotated], pairs: list[tuple[str, Any]],
                  phrased: dict[Path, list[ValuePhrases]]) -> dict[Path, list[Implied]]:
    """Per list path, the implications its items' shapes (``found``: annotated union items) show in ``pairs``
    (request body, answer)."""
    out: dict[Path, list[Implied]] = {}
    for item in found:
        if item.holder is None or item.union is None or "*" not in item.path:
            continue
        keys = _labels(item.holder)
        deciders = {vp.key: vp for vp in phrased.get(item.path, []) if vp.rule.reliable}
        counts: dict[tuple[str, str, str], Counter[str]] = {}
        for (body, _), objects in zip(pairs, own_objects([item], [a for _, a in pairs]), strict=True):
            for obj in objects:
                for key, labels in keys.items():
                    for other in keys:
                        if other == key or obj.get(key) not in labels:
                            continue
                        vp = deciders.get(other)
                        if vp is not None and vp.decide(body, obj.get(vp.value)) is not None:
                            continue  # the item's own words decided it
                        counts.setdefault((key, obj[key], other), Counter())[str(obj.get(other))] += 1
        path = item.path[:last_star(item.path) + 1]
        for (key, label, other), seen in sorted(counts.items()):
            implied, paired = seen.most_common(1)[0]
            total = sum(seen.values())
            if paired >= IMPLY_MIN and paired >= IMPLY_SHARE * total and implied in keys[other]:
                found_here = Implied(key, label, other, implied, total, paired)
                if found_here not in out.get(path, []):
                    out.setdefault(path, []).append(found_here)
    return out


def _branches(node: Any) -> list[dict[str, Any]]:
    if not isinstance(node, dict):
        return []
    if isinstance(node.get("anyOf"), list):
        return [b for child in node["anyOf"] for b in _branches(child)]
    return [node] if isinstance(node.get("properties"), dict) else []


def imply(schema: dict[str, Any], implied: dict[Path, list[Implied]], notes: list[str]) -> None:
    """Narrow each item shape of the lists in ``schema`` (in place) by the implications, as above."""
    for path, rules in implied.items():
        for array in schema_nodes(schema, path[:-1]):
            for branch in [b for node in [*(array.get("prefixItems") or []), array.get("items")]
                           for b in _branches(node)]:
                _narrow(branch, rules, notes, path)


def _narrow(branch: dict[str, Any], rules: list[Implied], notes: list[str], path: Path) -> None:
    props = branch["properties"]
    changed = True
    while changed:
        changed = False
        wanted: dict[str, set[str]] = {}
        for rule in rules:
            own, other = (props.get(rule.key) or {}).get("enum"), (props.get(rule.other) or {}).get("enum")
            if own == [rule.label] and isinstance(other, list) and rule.implied in other and len(other) > 1:
                wanted.setdefault(rule.other, set()).add(rule.implied)
        for other, labels in wanted.items():
            if len(labels) == 1:  # two implications that disagree decide nothing
                label = labels.pop()
                props[other] = {**props[other], "enum": [label]}
                changed = True
                notes.append(f"/{'/'.join(path)}/{other}: {label}, implied by the item's other label "
                             f"(the examples always pair them)")
