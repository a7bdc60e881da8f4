"""Number labels: the word of a label beside a number decides which field a numeric list item is on ("latency
above 800 ms" is ``latency_ms``, "a status code below 400" ``status_code``).

A numeric item of a union shape says with an enum what the number is (``field: status_code | latency_ms``),
and a small model picks one by the number's look: 400 is a latency as often as a status. The request writes
which: the label's own words (``latency_ms``: "latency", "ms"; ``status_code``: "status", "code") right after
the number, or before it past the words of the phrases that state the item's operator (value_phrases.py), the
core English bound words ("status code *greater than* 400"; phrases.py) and articles. Such a word of exactly
one label decides it.

The rule is judged on the examples' numbers of the item shape, as phrases are: it decides only when it decided
at least PHRASE_MIN of them and was right PHRASE_RELIABLE of the time. A decided number's shape splits, as a
phrase's does (value_phrases.py), and the number is surely an item (sure_items.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import grounding
from .annotations import Annotated, own_objects
from .paths import Path
from .phrases import BOUND_WORDS, PHRASE_MIN, PHRASE_RELIABLE
from .request_words import Text

__all__ = ["NumberLabels", "learn_number_labels"]

_WORD = re.compile(r"[a-z]+")
_BOUNDARY = re.compile(r"[,;:.!?()\n]")
_FILLER = frozenset({"the", "a", "an", "is", "of", "with"})
REACH = 4  # words looked at before the number


@dataclass(frozen=True)
class NumberLabels:
    """For one list's numeric items: which ``key`` a label word beside the item's ``value`` decides."""

    key: str
    value: str
    words: dict[str, str]  # a label's own word -> the label (words two labels share are none)
    skip: frozenset[str]  # words between a label word and the number: the operator's phrases, articles
    decided: int = 0
    right: int = 0

    @property
    def reliable(self) -> bool:
        return self.decided >= PHRASE_MIN and self.right >= PHRASE_RELIABLE * self.decided

    def label_at(self, body: str, start: int, end: int) -> tuple[str, str] | None:
        """(label, word) for the number at ``body[start:end]``: the word right after it, else the nearest
        before it past the skipped words, within its clause."""
        after = _WORD.findall(_BOUNDARY.split(body[end:].lower())[0])[:1]
        if after and after[0] in self.words:
            return self.words[after[0]], after[0]
        before = _WORD.findall(_BOUNDARY.split(body[:start].lower())[-1])[-REACH:]
        for word in reversed(before):
            if word in self.words:
                return self.words[word], word
            if word not in self.skip:
                return None
        return None

    def decide(self, body: str, value: Any, text: Text | None = None) -> tuple[str, str] | None:
        """(label, word) that every mention of the number ``value`` in ``body`` agrees on, or None."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        said = {self.label_at(body, m.start(), m.end()) for m in grounding.number_matches(body)
                if grounding.number_of(m) == value}
        return said.pop() if len(said) == 1 and None not in said else None


def _own_words(labels: list[str]) -> dict[str, str]:
    found: dict[str, set[str]] = {}
    for label in labels:
        for word in re.split(r"[\W_]+", label.lower()):
            if len(word) >= 2 and word.isalpha():
                found.setdefault(word, set()).add(label)
    return {w: next(iter(ls)) for w, ls in found.items() if len(ls) == 1}


def learn_number_labels(found: list[Annotated], pairs: list[tuple[str, Any]],
                        phrased: dict[Path, list[Any]]) -> dict[Path, NumberLabels]:
    """Per numeric union item path of ``found``, its rule judged on ``pairs`` (request body, answer);
    ``phrased``: the lists' value phrases (value_phrases.learn_value_phrases), whose words it passes over."""
    out: dict[Path, NumberLabels] = {}
    for item in found:
        if item.holder is None or item.union is None or "*" not in item.path or "numbers" not in item.sources:
            continue
        keys = [(k, n["enum"]) for k, n in (item.holder.get("properties") or {}).items()
                if k != item.path[-1] and isinstance(n, dict) and isinstance(n.get("enum"), list)
                and len(n["enum"]) > 1 and all(isinstance(v, str) for v in n["enum"])]
        for key, labels in keys:
            words = _own_words(labels)
            if not words:
                continue
            skip = {w for vp in phrased.get(item.path, []) for phrase in vp.rule.phrases for w in _WORD.findall(phrase)}
            skip |= BOUND_WORDS
            probe = NumberLabels(key, item.path[-1], words, frozenset(skip - set(words)) | _FILLER)
            decided = right = 0
            for (body, _), objects in zip(pairs, own_objects([item], [a for _, a in pairs]), strict=True):
                for obj in objects:
                    said = probe.decide(body, obj.get(probe.value))
                    if said is not None:
                        decided += 1
                        right += said[0] == obj.get(key)
            rule = NumberLabels(key, probe.value, words, probe.skip, decided, right)
            if rule.reliable:
                out[item.path] = rule
    return out
