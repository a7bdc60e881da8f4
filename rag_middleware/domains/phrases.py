"""Gloss phrases beside a number decide an anchored item's label: "at most 4,000" is lte, "5+" gte.

The glosses of an item label (glosses.py: "lte for at most, up to, max, no more than") name the words a
request writes right before or right after a number. Each gloss clause, without its label, filler words
("for", articles) and placeholders ("N" of "N+"), is a phrase. A request's number takes the label of the
longest phrase its clause's words end with just before it, else of the longest they start with just after it.

The examples have the last word: a phrase that decides an example's number wrongly is dropped (until none
does), and the rule is judged by leave-one-out on the examples' numbers; only a rule right PHRASE_RELIABLE of
the time decides. Anchors (anchors.py) apply it over their nearest windows' labels, which mix up words that
look alike ("more than" and "less than" share most of a window).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["PhraseRule", "gloss_phrases", "learn_phrase_rule"]

PHRASE_RELIABLE = 0.9
PHRASE_MIN = 3
_TOKEN = re.compile(r"[a-z]+|\+")
_BOUNDARY = re.compile(r"[,;:.!?()\n]")
_FILLER = frozenset({"for", "a", "an", "the", "is", "are"})


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def gloss_phrases(glosses: dict[str, list[str]], labels: set[str]) -> dict[str, str]:
    """``{phrase: label}`` from one item label's glosses (``{label: clauses}``); a phrase that glosses two labels,
    or that names a label of the item (``labels``, lower-cased), is none."""
    found: dict[str, set[str]] = {}
    for label, clauses in glosses.items():
        for clause in clauses:
            words = [w for w in _tokens(clause) if w != label.lower() and w not in _FILLER and
                     (len(w) > 1 or w == "+")]  # "N+": the N stands for the number
            phrase = " ".join(words)
            if phrase and not labels & set(words):
                found.setdefault(phrase, set()).add(label)
    return {p: next(iter(ls)) for p, ls in found.items() if len(ls) == 1}


def adjacent(text: str, start: int, end: int, phrases: dict[str, str] | set[str]) -> str | None:
    """The phrase right before the number at ``text[start:end]`` (the longest), else right after it, within its
    clause. (Not after the word after it: "3 bedrooms under 2800" is no "under 3".)"""
    left = " " + " ".join(_tokens(_BOUNDARY.split(text[:start])[-1])[-5:])
    before = [p for p in phrases if left.endswith(" " + p)]
    if before:
        return max(before, key=len)
    right = " ".join(_tokens(_BOUNDARY.split(text[end:])[0])[:5]) + " "
    after = [p for p in phrases if right.startswith(p + " ")]
    return max(after, key=len) if after else None


@dataclass(frozen=True)
class PhraseRule:
    """One item label's phrases, judged on the examples' numbers: ``decided`` of them a phrase labelled (each
    example left out in turn), ``right`` of those correctly."""

    phrases: dict[str, str] = field(default_factory=dict)
    decided: int = 0
    right: int = 0

    @property
    def reliable(self) -> bool:
        return self.decided >= PHRASE_MIN and self.right >= PHRASE_RELIABLE * self.decided

    def decide(self, text: str, start: int, end: int) -> tuple[str, str] | None:
        """(label, phrase) for the number at ``text[start:end]``, or None."""
        phrase = adjacent(text, start, end, self.phrases)
        return (self.phrases[phrase], phrase) if phrase is not None else None

    def judged(self) -> dict[str, object]:
        return {"decided": self.decided, "right": self.right, "reliable": self.reliable}


def learn_phrase_rule(candidates: dict[str, str], spots: list[tuple[str, int, int, str]]) -> PhraseRule:
    """The rule from ``candidates`` (gloss_phrases) and the examples' numbers (``(text, start, end, label)``):
    phrases that label an example's number wrongly are dropped until none does; then each number is judged
    with the phrases only its own example dropped restored."""
    kept = dict(candidates)
    wrong: dict[str, set[int]] = {}  # phrase -> the spots it labelled wrongly (when it was the one that applied)
    for _ in range(len(candidates) + 1):
        bad = {}
        for n, (text, start, end, truth) in enumerate(spots):
            phrase = adjacent(text, start, end, kept)
            if phrase is not None and kept[phrase] != truth:
                bad.setdefault(phrase, set()).add(n)
        if not bad:
            break
        for phrase, where in bad.items():
            wrong.setdefault(phrase, set()).update(where)
            kept.pop(phrase)
    decided = right = 0
    for n, (text, start, end, truth) in enumerate(spots):
        own = {**kept, **{p: candidates[p] for p, where in wrong.items() if where == {n}}}
        phrase = adjacent(text, start, end, own)
        if phrase is not None:
            decided += 1
            right += own[phrase] == truth
    return PhraseRule(kept, decided, right)
