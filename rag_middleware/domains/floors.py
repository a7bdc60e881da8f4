"""Floors: an ordered label that a number of the same answer lifts ("severity is at least high from 10,000").

Read off the curated examples, like a derived map: a top-level enum field of three or more values, in the
schema's order (or its reverse), and a top-level number field grounded in the request's numbers, where
the examples show that the number sets a lowest label. Each step's threshold is the round number (1, 2,
2.5 or 5 times a power of ten) that best separates the labels below it from those at or above it; a label
above the floor is fine (another condition raised it), a label below it counts twice against a threshold.
The floor is kept only when, on the examples, no more than ``MAX_BELOW`` of the answers with both fields sit
below it and at least ``MIN_EXACT`` sit exactly on it.

After generation a label below the floor of the answer's own number is raised to it, and the change is
listed in the attempt's repairs (it runs with the derived fields, ``Switches.derive``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .paths import Path, enum_values, set_at, values_at

__all__ = ["Floor", "infer_floors", "lift"]

MIN_PAIRS = 10  # examples with both fields set before a floor is read
MAX_BELOW = 0.1  # share of those that may sit below the floor
MIN_EXACT = 0.6  # share that must sit exactly on it
BELOW_COST = 2.0  # a label below a threshold costs this; one above it (another condition) half a point


@dataclass(frozen=True)
class Floor:
    """``order``: the labels, lowest first; ``steps``: (from this number up, at least this label), ascending."""

    source: Path
    order: tuple[str, ...]
    steps: tuple[tuple[float, str], ...]

    def band(self, number: float) -> str:
        label = self.order[0]
        for at, step in self.steps:
            if number >= at:
                label = step
        return label

    def describe(self) -> str:
        shown = ", ".join(f"{step} from {at:,g}" for at, step in self.steps)
        return f"at least {shown} of /{'/'.join(self.source)}"


def _round_numbers(low: float, high: float) -> list[float]:
    """1, 2, 2.5 and 5 times the powers of ten between two numbers, roundest first (powers of ten lead)."""
    if high <= 0:
        return []
    out = []
    for exp in range(max(0, int(math.floor(math.log10(max(low, 1))))) - 1, int(math.log10(high)) + 2):
        for rank, mult in enumerate((1, 5, 2, 2.5)):
            value = mult * 10**exp
            if low < value <= high:
                out.append((rank, value))
    return [v for _, v in sorted(out)]


def _threshold(pairs: list[tuple[float, int]], level: int) -> tuple[float, float] | None:
    """(threshold, cost) of the round number that best separates labels below ``level`` from the others."""
    numbers = [n for n, _ in pairs]
    best = None
    for cut in _round_numbers(min(numbers), max(numbers)):
        cost = sum(BELOW_COST for n, lv in pairs if lv < level and n >= cut) + sum(
            0.5 for n, lv in pairs if lv >= level and n < cut)
        if best is None or cost < best[1]:
            best = (cut, cost)
    return best


def _fit(pairs: list[tuple[float, str]], order: list[str]) -> tuple[tuple[float, str], ...] | None:
    rank = {label: i for i, label in enumerate(order)}
    levels = [(n, rank[label]) for n, label in pairs]
    steps: list[tuple[float, str]] = []
    for level in sorted({lv for _, lv in levels if lv > min(lv for _, lv in levels)}):
        if sum(lv == level for _, lv in levels) < 2:
            continue
        found = _threshold(levels, level)
        if found is None or (steps and found[0] <= steps[-1][0]):
            return None
        steps.append((found[0], order[level]))
    return tuple(steps) or None


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def infer_floors(top: list[tuple[Path, dict[str, Any]]], numbers: list[Path],
                 examples: list[tuple[str, Any]]) -> dict[Path, Floor]:
    """The floors the examples show: ``top`` the top-level (path, schema) fields, ``numbers`` the paths grounded
    in the request's numbers."""
    out: dict[Path, Floor] = {}
    for path, node in top:
        labels = [v for v in enum_values(node) if isinstance(v, str)]
        if len(labels) < 3:
            continue
        for source in numbers:
            pairs = [(float(n), e) for _, a in examples
                     if isinstance(n := (values_at(a, source) or [None])[0], (int, float)) and not isinstance(n, bool)
                     and (e := (values_at(a, path) or [None])[0]) in labels]
            if len(pairs) < MIN_PAIRS:
                continue
            floor = _floor(path, source, pairs, labels)
            if floor is not None:
                out[path] = floor
                break
    return out


def _floor(path: Path, source: Path, pairs: list[tuple[float, str]], labels: list[str]) -> Floor | None:
    medians = [_median([n for n, e in pairs if e == label]) for label in labels
               if sum(e == label for _, e in pairs) >= 2]
    if len(medians) < 2:
        return None
    if all(a < b for a, b in zip(medians, medians[1:], strict=False)):
        order = labels
    elif all(a > b for a, b in zip(medians, medians[1:], strict=False)):
        order = labels[::-1]
    else:
        return None
    steps = _fit(pairs, order)
    if steps is None:
        return None
    floor = Floor(source, tuple(order), steps)
    rank = {label: i for i, label in enumerate(order)}
    below = sum(rank[e] < rank[floor.band(n)] for n, e in pairs)
    exact = sum(e == floor.band(n) for n, e in pairs)
    if below > MAX_BELOW * len(pairs) or exact < MIN_EXACT * len(pairs):
        return None
    return floor


def lift(value: Any, floors: dict[Path, Floor], repairs: list[str]) -> None:
    """Raise each label below the floor of the answer's own number to it (in place)."""
    if not isinstance(value, dict):
        return
    for path, floor in floors.items():
        number = (values_at(value, floor.source) or [None])[0]
        current = (values_at(value, path) or [None])[0]
        if not isinstance(number, (int, float)) or isinstance(number, bool) or current not in floor.order:
            continue
        band = floor.band(float(number))
        if floor.order.index(current) < floor.order.index(band):
            set_at(value, path, lambda _old, b=band: b)
            repairs.append(f"/{'/'.join(path)}: {current!r} -> {band!r} ({floor.describe()})")
