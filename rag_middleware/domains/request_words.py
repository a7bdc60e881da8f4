"""A request's words as the grounded-value mechanisms read them: tokens that keep an identifier whole
("pay-01", "eu-west-1", "api/v1/orders", "u_48213"), lower-cased and indexed by word, so that each of a
request's many candidate values is found in it by one lookup (named_values.py, value_phrases.py)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

__all__ = ["Text", "quoted_spans", "spread_to_joined", "tokens", "words_of"]

_SEPARATOR = re.compile(r"\s*[,&/]\s*")  # between two values of a list ("a, b", "a & b"), as "and" is
_JOIN = re.compile(r"\s*,?\s*")  # between a value and the "and" or "or" after it
_TOKEN = re.compile(r"[^\W_][\w.@:/-]*[^\W_]|[^\W_]")
_QUOTED = re.compile(r"[\"“”`]([^\"“”`\n]+)[\"“”`]|(?<!\w)['‘’]([^'‘’\n]+)['‘’](?!\w)")


def quoted_spans(text: str) -> list[tuple[int, int]]:
    """The spans of the text's quoted phrases, without their quotes."""
    return [m.span(1) if m.group(1) is not None else m.span(2) for m in _QUOTED.finditer(text)]


def tokens(text: str) -> list[tuple[str, int, int]]:
    """Each token of ``text`` with its start and end."""
    return [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]


@lru_cache(maxsize=8192)
def words_of(value: str) -> tuple[str, ...]:
    """A value's tokens, lower-cased."""
    return tuple(t.lower() for t, _, _ in tokens(value))


class Text:
    """A request's tokens, lower-cased and indexed by word once for every value looked up in it."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.tokens = tokens(body)
        self.low = tuple(t.lower() for t, _, _ in self.tokens)
        self.at: dict[str, list[int]] = {}
        for i, word in enumerate(self.low):
            self.at.setdefault(word, []).append(i)

    def spans(self, value: str) -> list[tuple[int, int]]:
        """Where ``value``'s tokens stand in the request, as token index ranges."""
        want = words_of(value)
        n = len(want)
        return [(i, i + n) for i in self.at.get(want[0], []) if self.low[i:i + n] == want] if n else []


def spread_to_joined(text: Text, spans: dict[Any, list[tuple[int, int]]], out: dict[Any, str]) -> None:
    """Give a value of ``spans`` (one token) that a list joins to a value of ``out`` ("pay-01 and pay-04",
    "3318, 3319, 3320") that value's label, in place, until no more join; a value joined to two labels gets
    none."""
    body, toks = text.body, text.tokens
    grown = True
    while grown:
        grown = False
        ends = {span[1]: label for value, label in out.items() for span in spans.get(value, [])}
        for value, found in spans.items():
            if value in out or " " in str(value):
                continue
            joined = {ends[s[0]] for s in found if s[0] in ends and _SEPARATOR.fullmatch(
                body[toks[s[0] - 1][2]:toks[s[0]][1]])}
            joined |= {ends[s[0] - 1] for s in found if s[0] >= 2 and s[0] - 1 in ends and toks[s[0] - 1][0].lower()
                       in ("and", "or", "nor") and _JOIN.fullmatch(body[toks[s[0] - 2][2]:toks[s[0] - 1][1]])}
            if len(joined) == 1:
                out[value] = joined.pop()
                grown = True
