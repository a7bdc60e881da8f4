"""Likeness: which label a value written like an identifier takes, read off the examples' values of each label.

A list item that says with an enum which kind of value it holds (``field: host | region | user_id``) leaves a
small model to type each value, and a value with no word naming its kind is typed by guess: "p95 latency in
us-east-1" gets a host. The examples' own values say what each kind looks like: regions are "eu-west-1" and
"us-east-1", hosts "web-07" and "pay-02". A request's value is compared with each of them by its character
n-grams (digits all alike, so "web-03" is as near "web-07" as it can be), and takes the label of the nearest
ones when that label is LIKE_MIN alike and LIKE_MARGIN more alike than any other label's values.

Leave-one-out on the examples judges it: each example value is typed by the others, and the likeness is used
only where at least JUDGED_MIN were typed and no more than one in five of them wrongly.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["LIKE_MARGIN", "LIKE_MIN", "Likeness", "learn_likeness"]

LIKE_MIN = 0.25  # cosine of character n-grams to the nearest value of the label
LIKE_MARGIN = 0.1  # over the nearest value of any other label
JUDGED_MIN = 2  # example values typed leave-one-out before the likeness is trusted
JUDGED_SHARE = 0.8  # of them that must be right


def grams(value: str) -> Counter[str]:
    """Character 2- to 4-grams of a value, digits all one, with its start and end marked."""
    text = "^" + re.sub(r"\d", "9", value.casefold()) + "$"
    return Counter(text[i:i + n] for n in (2, 3, 4) for i in range(len(text) - n + 1))


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    dot = sum(count * b[g] for g, count in a.items() if g in b)
    norm = math.sqrt(sum(c * c for c in a.values()) * sum(c * c for c in b.values()))
    return dot / norm if norm else 0.0


@dataclass
class Likeness:
    """The examples' one-token values with their labels; ``judged``: how leave-one-out typing fared."""

    values: list[tuple[str, str, Counter[str]]] = field(default_factory=list)
    judged: dict[str, int] = field(default_factory=dict)

    @property
    def trusted(self) -> bool:
        typed, right = self.judged.get("typed", 0), self.judged.get("right", 0)
        return typed >= JUDGED_MIN and right >= JUDGED_SHARE * typed

    def known(self, value: str) -> str | None:
        """The one label an example gave ``value`` itself, or None."""
        found = {label for known, label, _ in self.values if known.casefold() == value.casefold()}
        return found.pop() if len(found) == 1 else None

    def label_of(self, value: str, *, skip: str | None = None) -> str | None:
        """The label ``value`` is like, or None when no label's values are alike enough or two are close.
        ``skip``: a value left out (leave-one-out)."""
        mine = grams(value)
        best: dict[str, float] = {}
        for known, label, theirs in self.values:
            if skip is not None and known.casefold() == skip.casefold():
                continue
            best[label] = max(best.get(label, 0.0), _cosine(mine, theirs))
        ranked = sorted(best.values(), reverse=True)
        if not ranked or ranked[0] < LIKE_MIN or (len(ranked) > 1 and ranked[0] - ranked[1] < LIKE_MARGIN):
            return None
        return max(best, key=lambda label: best[label])


def learn_likeness(values: list[tuple[str, str]]) -> Likeness:
    """The likeness of ``values`` ((value, label) of the examples' items written like identifiers, one token
    each), judged leave-one-out on them."""
    seen = dict.fromkeys((v, label) for v, label in values)
    like = Likeness([(v, label, grams(v)) for v, label in seen])
    typed = right = 0
    for value, label in seen:
        guess = like.label_of(value, skip=value)
        typed += guess is not None
        right += guess == label
    like.judged = {"values": len(seen), "typed": typed, "right": right}
    return like
