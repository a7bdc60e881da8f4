"""A field's declared rules as data: ``{pattern, label}`` pairs whose pattern may name a context
(``{columns}``), matched against the request, its typos of the rule's own words mended (typos.py)."""

from __future__ import annotations

import json
import re
from typing import Any

from .spec import VoteSpec
from .typos import mended

__all__ = ["decide_by_rule", "expand"]


def expand(pattern: str, context: dict[str, list[str]], within: str | None = None) -> str:
    """``{name}`` in a rule stands for any value of that context (escaped, longest first, underscores or
    spaces); a name with no values matches nothing. ``within``: the only text the pattern will search, so a
    form written nowhere in it (compared lower-cased, where both are ASCII) can never match and is left out:
    the pattern is then the same for every text that names the same values, and compiles once."""
    low = within.lower() if within is not None and within.isascii() else None

    def alternation(match: re.Match[str]) -> str:
        values = context.get(match.group(1))
        if values is None:
            return match.group(0)
        forms = {f for v in values for f in (v.lower(), v.lower().replace("_", " "))
                 if f and (low is None or not f.isascii() or f in low)}
        return "(?:" + "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)) + ")" if forms else "(?!)"

    return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", alternation, pattern)


def decide_by_rule(spec: VoteSpec, text: str, context: dict[str, list[str]]) -> tuple[str, Any] | None:
    """(pattern, label) of the first rule whose pattern is found in the text (case-insensitive), or else in the
    text with its typos of the rule's own words mended ("erors" is "errors": ``mended``)."""
    for rule in spec.rules:
        pattern = expand(rule.pattern, context, text)
        if re.search(pattern, text, re.I) or re.search(pattern, mended(text, pattern), re.I):
            label: Any = rule.label
            if label in ("true", "false", "null"):
                label = json.loads(label)
            return rule.pattern, label
    return None
