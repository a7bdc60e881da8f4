"""Leftover numbers: a number the request writes that no other field takes is an item of the list whose items
take numbers ("any 502s on web-07 in the past 2 hours": 2 is the window's, 502 a status condition).

A small model given "502s" beside a host writes the host's condition and drops the status; no word beside "502s"
names its label, so named_values.py and number_labels.py have nothing to go on. The examples say whether every
number a question writes is used: per list item value grounded in numbers, an example's leftover numbers are
the digits its question writes, less those written with a unit (grounding.unit_bound) and those its answer
gives outside the list (a limit, a threshold). Where at least USED_MIN examples have some and at least
USED_SHARE of them give every one an item (as used_values.py learns it of paths), the property is learnt.

In a request, a leftover number is one written in digits, not with a unit, not named as a word value ("user
7781": named_values.py), and not a number slot's (slots.py):
a slot field that picked another number holds that one, and one that picked none must stand nowhere near it
(the number's slot share is 0). Each is then surely an item of its own (sure_items.py), and the record says so.
"""

from __future__ import annotations

from typing import Any

from . import grounding
from .annotations import Annotated
from .paths import Path, values_at
from .slots import ORDINAL
from .used_values import USED_MIN, USED_SHARE

__all__ = ["leftover", "learn_leftover"]


def written_numbers(body: str, units: dict[str, float]) -> list[int | float]:
    """The numbers ``body`` writes in digits, without a unit and not as an ordinal ("95th"), once each, in
    order."""
    bound = grounding.unit_spans(body, units)
    found = []
    for match in grounding.number_matches(body):
        if match.group("d") and not any(start <= match.start() < end for start, end in bound) and not \
                ORDINAL.match(body, match.end()):
            value = grounding.number_of(match)
            if value is not None and value not in found:
                found.append(value)
    return found


def _numbers(values: list[Any]) -> set[float]:
    out = set()
    for value in values:
        if isinstance(value, bool):
            continue
        try:
            out.add(float(value))
        except (TypeError, ValueError):
            continue
    return out


def _outside(answer: Any, star: Path, where: Path = ()) -> list[Any]:
    """Every scalar of ``answer`` outside the list at ``star``."""
    if where == star:
        return []
    if isinstance(answer, dict):
        return [v for k, child in answer.items() for v in _outside(child, star, (*where, k))]
    if isinstance(answer, list):
        return [v for child in answer for v in _outside(child, star, (*where, "*"))]
    return [answer]


def learn_leftover(found: list[Annotated], pairs: list[tuple[str, Any]], units: dict[str, float]
                   ) -> dict[Path, tuple[int, int]]:
    """Per list item value grounded in numbers (``found``: annotated paths), ``(seen, used)`` where the
    examples (``pairs``: request body, answer) always give their leftover numbers an item."""
    out: dict[Path, tuple[int, int]] = {}
    for item in found:
        if "numbers" not in item.sources or "*" not in item.path or item.path in out:
            continue
        star = item.path[: item.path.index("*")]
        seen = used = 0
        for body, answer in pairs:
            others = _numbers(_outside(answer, star))
            left = [n for n in written_numbers(body, units) if float(n) not in others]
            if left:
                seen += 1
                used += _numbers(left) <= _numbers(values_at(answer, item.path))
        if seen >= USED_MIN and used >= USED_SHARE * seen:
            out[item.path] = (seen, used)
    return out


def leftover(spec: Any, body: str, slots: Any, picks: dict[Path, Any]) -> list[dict[str, Any]]:
    """One record per learnt item path with the request's leftover numbers (``picks``: the number slots' sure
    picks, ``slots``: slots.SlotBank or None)."""
    if not spec.leftover:
        return []
    written = written_numbers(body, spec.unit_words)
    # a number a word names as a word value's ("user 7781", "customer 40021") is that value, no number's
    named = {v for bank in spec.named.values() for v in bank.labelled(body, [str(n) for n in written])}
    numbers = [n for n in written if n not in picks.values() and str(n) not in named]
    fields = slots.numbers if slots is not None else ()
    shares = {path: slots.shares(body, path) for path in fields if path not in picks}
    left = [n for n in numbers if all(share.get(n, 0.0) <= 0 for share in shares.values())]
    if not left:
        return []
    return [{"path": "/" + "/".join(path), "allowed": [], "scores": {}, "voters": [], "confident": False,
             "leftover": left, "reason": f"numbers no other field takes, each an item ({used} of {seen} examples "
                                         "gave theirs one)"} for path, (seen, used) in spec.leftover.items()]
