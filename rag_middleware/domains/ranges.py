"""Number ranges a domain's words give a label: "high (... an amount of 10,000 or more)", "medium (an amount
from 1,000 to 9,999)", "low (an amount under 1,000)", "urgent if more than 100 users are affected". A range in
a label's gloss clause glosses that label for a request whose number falls in it: the request's value of the
numeric field the clause names ("amount" of amount_claimed), else a number the request writes with the
range's unit word ("250 users"); glosses.GlossRule judges these ranges on the examples as it judges words.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .grounding import number_matches, number_of
from .paths import Path

__all__ = ["NumberRange", "number_fields", "ranges_in", "range_glosses", "unit_values"]

Source = Path | str  # a numeric field, or a unit word ("user")
_NOT_UNITS = {"or", "and", "to", "the", "a", "an", "of", "in", "per", "is", "are", "than", "more", "less", "if",
              "when", "for", "with", "at", "on", "by", "as", "from"}
_UNIT = re.compile(r"\s*([A-Za-z][A-Za-z-]{2,})")

_N = r"(\d[\d,.\s]*\d|\d)(?:\s*(k|thousand|million)\b)?"
_FORMS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"\b(?:from|between)\s+{_N}\s+(?:to|and|through)\s+{_N}", re.I), "both"),
    (re.compile(rf"(?<![\w.,]){_N}\s*(?:-|–|to)\s*{_N}(?![\w.,])", re.I), "both"),
    (re.compile(rf"(?<![\w.,]){_N}\s*(?:or|and)\s+(?:more|above|over|higher|greater|up)\b", re.I), "from"),
    (re.compile(rf"(?<![\w.,]){_N}\s*\+", re.I), "from"),
    (re.compile(rf"\b(?:at\s+least|minimum(?:\s+of)?|no\s+less\s+than)\s+{_N}", re.I), "from"),
    (re.compile(rf"\b(?:over|above|more\s+than|greater\s+than|exceeding|beyond)\s+{_N}", re.I), "after"),
    (re.compile(rf"(?<![\w.,]){_N}\s*(?:or|and)\s+(?:less|below|under|fewer|lower)\b", re.I), "to"),
    (re.compile(rf"\b(?:up\s+to|at\s+most|maximum(?:\s+of)?|no\s+more\s+than)\s+{_N}", re.I), "to"),
    (re.compile(rf"\b(?:under|below|less\s+than|fewer\s+than|lower\s+than)\s+{_N}", re.I), "before"),
]


@dataclass(frozen=True)
class NumberRange:
    low: float = -math.inf
    high: float = math.inf
    low_in: bool = True
    high_in: bool = True

    def holds(self, value: Any) -> bool:
        if isinstance(value, list):
            return any(self.holds(v) for v in value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        above = value >= self.low if self.low_in else value > self.low
        below = value <= self.high if self.high_in else value < self.high
        return above and below

    @property
    def shown(self) -> str:
        def num(v: float) -> str:
            return f"{int(v):,}" if float(v).is_integer() else f"{v:g}"
        if self.high == math.inf:
            return f"{'>=' if self.low_in else '>'} {num(self.low)}"
        if self.low == -math.inf:
            return f"{'<=' if self.high_in else '<'} {num(self.high)}"
        return f"{num(self.low)} to {num(self.high)}"


def _value(text: str) -> float | None:
    match = next(number_matches(text), None)
    value = number_of(match) if match is not None else None
    return float(value) if value is not None else None


def _singular(word: str) -> str:
    word = word.lower()
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def ranges_in(text: str) -> list[tuple[NumberRange, str | None]]:
    """The number ranges a text states, each once, in the forms of _FORMS (the first form to claim a span
    wins: "from 1,000 to 9,999" is one range, not two), each with the unit word written after it ("100
    users": "user"), or None."""
    out: list[tuple[NumberRange, str | None]] = []
    taken: list[tuple[int, int]] = []
    for pattern, form in _FORMS:
        for match in pattern.finditer(text):
            if any(match.start() < end and start < match.end() for start, end in taken):
                continue
            first = _value(match.group(1) + (" " + match.group(2) if match.group(2) else ""))
            if first is None:
                continue
            if form == "both":
                second = _value(match.group(3) + (" " + match.group(4) if match.group(4) else ""))
                if second is None or second < first:
                    continue
                found = NumberRange(first, second)
            elif form in ("from", "after"):
                found = NumberRange(low=first, low_in=form == "from")
            else:
                found = NumberRange(high=first, high_in=form == "to")
            taken.append((match.start(), match.end()))
            after = _UNIT.match(text, match.end())
            unit = _singular(after.group(1)) if after and after.group(1).lower() not in _NOT_UNITS else None
            if (found, unit) not in out:
                out.append((found, unit))
    return out


def unit_values(text: str, unit: str) -> list[float]:
    """The numbers a text writes with a unit word, singular or plural ("250 users", "1 user")."""
    out = []
    for match in number_matches(text):
        after = _UNIT.match(text, match.end())
        if after and _singular(after.group(1)) == unit and (value := number_of(match)) is not None:
            out.append(float(value))
    return out


def number_fields(schema: dict[str, Any] | None) -> dict[Path, set[str]]:
    """The top-level numeric fields, each with the words that name it: its name, spaced, and its name parts
    of four letters or more ("amount" and "claimed" of amount_claimed)."""
    out: dict[Path, set[str]] = {}
    for name, node in ((schema or {}).get("properties") or {}).items():
        kinds = node.get("type") if isinstance(node, dict) else None
        kinds = {kinds} if isinstance(kinds, str) else set(kinds or [])
        if not kinds & {"integer", "number"}:
            continue
        low = name.lower()
        out[(name,)] = {low, low.replace("_", " ")} | {p for p in re.split(r"[\s_-]+", low) if len(p) >= 4}
    return out


def range_glosses(clauses: dict[str, list[str]], fields: dict[Path, set[str]], own: Path
                  ) -> list[tuple[Source, NumberRange, str]]:
    """(source, range, label) for each range in a label's clauses: about the numeric field the clause names,
    else about its unit word, else about the only numeric field; never about the voted field ``own``."""
    others = [p for p in fields if p != own]
    out: list[tuple[Source, NumberRange, str]] = []
    for label, texts in clauses.items():
        for text in texts:
            found = ranges_in(text)
            if not found:
                continue
            low = text.lower()
            named = [p for p, words in fields.items()
                     if any(re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", low) for w in words)]
            for span, unit in found:
                source: Source | None = named[0] if len(named) == 1 else None
                if not named:
                    source = unit if unit is not None else others[0] if len(others) == 1 else None
                if source is not None and source != own and (source, span, label) not in out:
                    out.append((source, span, label))
    return out
