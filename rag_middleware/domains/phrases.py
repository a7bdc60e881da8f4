"""Gloss phrases beside a number decide an anchored item's label: "at most 4,000" is lte, "5+" gte.

The glosses of an item label (glosses.py: "lte for at most, up to, max, no more than") name the words a
request writes right before or right after a number. Each gloss clause, without its label, filler words
("for", articles) and placeholders ("N" of "N+"), is a phrase. A request's number takes the label of the
longest phrase its clause's words end with just before it, else of the longest they start with just after it.

The examples have the last word: a phrase that decides an example's number wrongly is dropped (until none
does), and the rule is judged by leave-one-out on the examples' numbers; only a rule right PHRASE_RELIABLE of
the time decides. Anchors (anchors.py) apply it over their nearest windows' labels, which mix up words that
look alike ("more than" and "less than" share most of a window).

English bound words the glosses may not spell out come in as more candidates (bound_phrases), judged the same
way: a small core lexicon tells which label's phrases mean an inclusive lower bound ("at least", "minimum") and
which an inclusive upper bound ("at most", "up to"); the lower label then gets "a minimum of N", "N bedrooms or
more" (``N … or more``: after the number, past up to UNIT_WORDS words, not up to another number) and the first
number of a range ("between 1,000 and 3,000", "2 to 3", "1990 - 2010": ``[N]-M``), the upper label their
counterparts ("N-[M]" the range's second number). A domain whose labels have no such pair gets none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import grounding

__all__ = ["BOUND_WORDS", "PhraseRule", "bound_phrases", "gloss_phrases", "learn_phrase_rule"]

PHRASE_RELIABLE = 0.9
PHRASE_MIN = 3
_TOKEN = re.compile(r"[a-z]+|\+")
_BOUNDARY = re.compile(r"[,;:.!?()\n]")
_FILLER = frozenset({"for", "a", "an", "the", "is", "are"})
UNIT_WORDS = 3  # "45 square meters minimum": a trailing bound word may follow the number's unit words
RANGE_LOW, RANGE_HIGH = "[N]-M", "N-[M]"  # the first and the second number of a range
AFTER, TRAILING = "N ", "N … "  # a phrase said right after the number only; after it, past its unit words
_JOIN = re.compile(r"\s*(and|to|through|-|–|—)\s*[€£$]?", re.I)  # "and" joins a range only after "between"
# core English bound words: said before a number, said after it (maybe past unit words), right after it only
_BOUNDS = {
    "lower": (("at least", "minimum", "min", "minimum of", "min of", "no less than", "no fewer than",
               "not less than", "not fewer than"),
              ("or more", "or higher", "or above", "or later", "or newer", "or greater", "or over", "and up",
               "and above", "and over", "and higher", "minimum", "min", "at least", "at the least"),
              ("plus", "+")),
    "upper": (("at most", "up to", "max", "maximum", "maximum of", "max of", "no more than", "no greater than",
               "not more than", "not over"),
              ("or less", "or fewer", "or lower", "or below", "or under", "or earlier", "or older", "or smaller",
               "and under", "and below", "and less", "max", "maximum", "at most", "at the most"),
              ()),
}


# every word of the core bound phrases ("greater", "than", "least"): words that may stand between a number and
# the word that says what it counts (number_labels.py)
BOUND_WORDS = frozenset(w for kinds in _BOUNDS.values() for phrases in kinds for p in phrases
                        for w in re.findall(r"[a-z]+", p))


# "n't" is "not", with or without its apostrophe ("aren't 503", "didnt return 200"), in glosses and requests alike
_NOT = re.compile(r"\b(do|did|does|is|are|was|were|has|have|had|could|would|should|ca|wo)n['’]?t\b|n['’]t\b")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(_NOT.sub(lambda m: f"{m.group(1) or ''} not", text.lower()))


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


def bound_phrases(candidates: dict[str, str]) -> dict[str, str]:
    """More candidates from the core bound words, for the label whose ``candidates`` (gloss_phrases) alone
    the lexicon calls an inclusive lower bound and the one it calls an inclusive upper bound; none without
    both. A phrase the glosses have already is left to them."""
    bound = {}
    for side, words in _BOUNDS.items():
        labels = {label for phrase, label in candidates.items() if any(phrase in kind for kind in words)}
        if len(labels) != 1:
            return {}
        bound[side] = labels.pop()
    if bound["lower"] == bound["upper"]:
        return {}
    out = {RANGE_LOW: bound["lower"], RANGE_HIGH: bound["upper"]}
    for side, (before, trailing, right_after) in _BOUNDS.items():
        out.update({p: bound[side] for p in before})
        out.update({TRAILING + p: bound[side] for p in trailing})
        out.update({AFTER + p: bound[side] for p in right_after})
    return {p: label for p, label in out.items() if p not in candidates and p.removeprefix(AFTER) not in candidates}


def adjacent(text: str, start: int, end: int, phrases: dict[str, str] | set[str]) -> str | None:
    """The phrase right before the number at ``text[start:end]`` (the longest), else right after it, within its
    clause. (Not after the word after it: "3 bedrooms under 2800" is no "under 3".) Bound phrases: a range's
    ends first; ``N … `` phrases last, past up to UNIT_WORDS words and not right before another number."""
    if RANGE_LOW in phrases or RANGE_HIGH in phrases:
        end_of = range_end(text, start, end)
        if end_of in phrases:
            return end_of
    left = " " + " ".join(_tokens(_BOUNDARY.split(text[:start])[-1])[-5:])
    before = [p for p in phrases if left.endswith(" " + p)]
    if before:
        return max(before, key=len)
    clause = _BOUNDARY.split(text[end:])[0]
    right = " ".join(_tokens(clause)[:5]) + " "
    after = [p for p in phrases if right.startswith(p.removeprefix(AFTER) + " ") and not p.startswith(TRAILING)]
    if after:
        return max(after, key=len)
    trailing = [p for p in phrases if p.startswith(TRAILING)]
    if not trailing:
        return None
    following = next(grounding.number_matches(clause), None)  # not past another number, nor its phrase
    words = _tokens(clause[: following.start()] if following else clause)
    for skip in range(min(UNIT_WORDS, len(words)) + 1):
        here = " ".join(words[skip:]) + " "
        found = [p for p in trailing if here.startswith(p.removeprefix(TRAILING) + " ") and
                 not (following and here == p.removeprefix(TRAILING) + " ")]
        if found:
            return max(found, key=len)
    return None


def range_end(text: str, start: int, end: int) -> str | None:
    """RANGE_LOW for the first number of a range in one clause ("between 1,000 and 3,000", "2 to 3", "10 -
    20"), RANGE_HIGH for its second, else None. Both must be numbers of the text ("2-3" states only the 2)."""
    found = list(grounding.number_matches(text))
    starts = {m.start() for m in found}
    join = _JOIN.match(text, end)
    if join is not None and join.end() in starts and _joins(text, start, join):
        return RANGE_LOW
    for m in found:
        join = _JOIN.match(text, m.end())
        if m.end() <= start and join is not None and join.end() == start and _joins(text, m.start(), join):
            return RANGE_HIGH
    return None


def _joins(text: str, start: int, join: re.Match[str]) -> bool:
    """Whether ``join`` joins a range whose first number starts at ``start`` ("and" only after "between")."""
    return join.group(1).lower() != "and" or _tokens(text[:start])[-1:] == ["between"]


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
