"""Typos of a rule's own words: "erors" is "errors", "warnigns" "warnings".

A declared rule (``vote.rules``: a regex per label) fires on the words it spells, and a request that misspells
one gets nothing from it; where the rule also makes its field quiet (null where no rule fires), the typo
costs the field. A word of 5 letters or more one edit away from a word the rule spells out (a letter left
out or added, or two neighbours swapped; not a letter changed, which turns one real word into another) is read
as that word when the rule is tried a second time.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

__all__ = ["mended"]
_LETTERS = re.compile(r"[a-z]{5,}")


def mended(text: str, pattern: str) -> str:
    """``text`` with each word of 5 letters or more that is one edit (``_one_edit``) from a word the ``pattern``
    spells out replaced by that word: a typo of the rule's own word."""
    spelled = _spelled(pattern)
    if not spelled:
        return text
    return re.sub(r"[A-Za-z]{5,}", lambda m: next(
        (w for w in sorted(spelled) if m.group(0).lower() not in spelled and _one_edit(m.group(0).lower(), w)),
        m.group(0)), text)


@lru_cache(maxsize=512)
def _spelled(pattern: str) -> frozenset[str]:
    """The words of 5 letters or more that ``pattern`` matches literally, its optional parts and alternatives
    spelled out ("warn(?:s|ings?)?" spells "warns", "warnings"); what it cannot spell out (a class, a wildcard,
    a repeat) ends a word."""
    try:
        parsed = re._parser.parse(pattern.lower())  # type: ignore[attr-defined]
    except (re.error, AttributeError):
        return frozenset(_LETTERS.findall(pattern.lower()))
    return frozenset(w for text in _spell(list(parsed)) for w in _LETTERS.findall(text))


def _spell(items: list[Any], limit: int = 64) -> list[str]:
    from re import _constants as c  # type: ignore[attr-defined]

    out = [""]
    for op, arg in items:
        if op is c.LITERAL:
            parts = [chr(arg)]
        elif op is c.SUBPATTERN:
            parts = _spell(list(arg[-1]), limit)
        elif op is c.BRANCH:
            parts = [p for branch in arg[1] for p in _spell(list(branch), limit)]
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT) and arg[0] == 0 and arg[1] == 1:
            parts = ["", *_spell(list(arg[2]), limit)]
        elif op is c.AT or op is c.ASSERT_NOT or op is c.ASSERT:
            continue
        else:
            parts = [" "]
        out = [a + b for a in out for b in parts][:limit]
    return out


def _one_edit(a: str, b: str) -> bool:
    """One letter left out or added, or two neighbours swapped. Not one letter changed: that is how one real
    word becomes another ("packed" is no "hacked", "spoke" no "smoke")."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))
