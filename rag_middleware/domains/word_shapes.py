"""Word shapes: what a field grounded in the request's words looks like, read off the examples.

Grounding in ``words`` admits every word and phrase of the request, and a small model then writes "newest",
"2" or "Townhouses" as a city. The examples say what the field's values look like:

- **capitalised**: every value the examples give starts with a capital letter (a name). A request written in
  lower case throughout is exempt ("flats in nice" still has its city), and so is such an example: a
  reviewed "condos in porto" does not teach that names are written in lower case;
- **digits**: whether any value holds a digit; when none does, a candidate with a digit is not a value;
- **stop words**: words of at least STOP_MIN example questions that are never part of one of the field's
  values ("show", "flats", "bedrooms", "I"). A phrase that starts with one, or ends with one in lower case,
  is not a value;
- **calendar words**: whether any value is the name of a month or a weekday; when none is, such a name is
  not a value ("relocating to Nashville in June": June is capitalised, and no city).

Each needs at least MIN_VALUES values to be learnt. The request's candidates for the field (and the slot
picks, slots.py) keep only what the shape admits; the grammar notes list the candidates that remain.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .grounding import MONTH_NAMES
from .paths import Path, values_at

__all__ = ["WordShape", "word_shapes"]

MIN_VALUES = 5  # non-null example values before a field's shape is learnt
STOP_MIN = 2  # example questions a word must be in before its absence from the values makes it a stop word
_WORD = re.compile(r"[A-Za-z0-9][\w'-]*")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


_CALENDAR = frozenset(MONTH_NAMES) | {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}


@dataclass(frozen=True)
class WordShape:
    capitalised: bool
    digits: bool
    stop: frozenset[str]
    calendar: bool = True  # a month's or a weekday's name may be a value (some example's value is one)

    def names(self, request: str) -> bool:
        """Whether the shape tells names apart in this request: its values are capitalised and the request
        writes capitals at all."""
        return self.capitalised and _cased(request)

    def admits(self, candidate: Any, request: str) -> bool:
        if not isinstance(candidate, str):
            return True
        written = _WORD.findall(candidate)
        if not written:
            return False
        if self.names(request) and not (candidate[:1].isupper() and written[-1][:1].isupper() and all(
                w[:1].isupper() or w.lower() in _JOINING for w in written[1:])):
            return False  # "Could you pull", "Family of": a capital that starts a sentence, then common words
        if not self.digits and any(ch.isdigit() for ch in candidate):
            return False
        if not self.calendar and all(w.lower() in _CALENDAR for w in written):
            return False
        first, last = written[0].lower(), written[-1].lower()
        # a name may end in a common word ("New York City"): a capitalised last word is part of it
        return first not in self.stop and (last not in self.stop or len(written) > 1 and written[-1][:1].isupper())


# the lower-case words a place's name may hold between capitalised ones ("Rio de Janeiro", "Frankfurt am Main")
_JOINING = frozenset({"de", "del", "della", "di", "da", "do", "dos", "das", "du", "des", "la", "le", "les", "el",
                      "am", "an", "im", "on", "upon", "of", "en", "sur", "y"})


def _cased(text: str) -> bool:
    """The writer uses capitals at all (a request in lower case throughout writes its names in lower case)."""
    return any(ch.isupper() for ch in text)


def word_shapes(paths: list[Path], pairs: list[tuple[str, Any]],
                own: dict[Path, list[list[Any]]] | None = None) -> dict[Path, WordShape]:
    """Per field grounded in words, the shape of its values in ``pairs`` (request body, answer). ``own``: per
    path, each pair's values of the field's own shape where a union gives the path other shapes too
    (annotations.own_values); these paths are learnt from those alone."""
    in_questions: Counter[str] = Counter()
    for question, _ in pairs:
        in_questions.update(set(_words(question)))
    out = {}
    own = own or {}
    for path in [*paths, *(p for p in own if p not in paths)]:
        per_pair = own[path] if path in own else [values_at(a, path) for _, a in pairs]
        found = [(q, v) for (q, _), values in zip(pairs, per_pair, strict=True) for v in values
                 if isinstance(v, str) and v.strip()]
        values = [v for _, v in found]
        if len(values) < MIN_VALUES:
            continue
        in_values = {w for v in values for w in _words(v)}
        stop = frozenset(w for w, n in in_questions.items() if n >= STOP_MIN and w not in in_values)
        # a request in lower case throughout is exempt here as in ``admits``: "condos in porto" says nothing
        # of how names are written where the writer uses capitals
        cased = [v for q, v in found if _cased(q)]
        out[path] = WordShape(capitalised=bool(cased) and all(v[:1].isupper() for v in cased),
                              digits=any(ch.isdigit() for v in values for ch in v), stop=stop,
                              calendar=any(w in _CALENDAR for v in values for w in _words(v)))
    return out
