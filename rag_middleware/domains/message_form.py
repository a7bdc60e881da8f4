"""How a message is written, as terms the cue words are mined from beside its words.

A label can follow the form of a message rather than its words: an email opens with a greeting on a line of its
own and closes with a sign-off, a chat message is one line (often all in lower case), an agent's note is none
of these. No word says so, so the words alone never learn it. Each shape below is a term of its own, mined like
a word (votes.mine_cues): it becomes a cue only where the examples' labels follow it as purely as a word's must,
so a domain whose labels do not follow the form is not changed by it.

- ``<greeting line>``: the first line is a greeting of at most five words ("Hello Voltaro team,") and the
  message goes on below it;
- ``<sign-off>``: one of the last three lines is a closing ("Regards", "Thanks,", "Best wishes") of at most
  four words, under a line of the message;
- ``<one line>``: the message is a single line;
- ``<lower case>``: the message has at least three words and no capital letter.
"""

from __future__ import annotations

import re

__all__ = ["FORM_TERMS", "form_terms"]

GREETING_LINE, SIGN_OFF, ONE_LINE, LOWER_CASE = "<greeting line>", "<sign-off>", "<one line>", "<lower case>"
FORM_TERMS = frozenset({GREETING_LINE, SIGN_OFF, ONE_LINE, LOWER_CASE})

_GREETING = re.compile(r"(?:hello|hi|hey|dear|greetings|good (?:morning|afternoon|evening)|to whom it may concern)\b"
                       r"[^\n]*", re.I)
_CLOSING = re.compile(r"(?:(?:kind|best|warm|many)\s+)?(?:regards|wishes|thanks|thank you|cheers|sincerely|"
                      r"yours(?: sincerely| truly| faithfully)?|best|br|thx|ta)\b[^\n]*", re.I)
_WORDS = re.compile(r"[^\W\d_]+")


def _short(line: str, most: int) -> bool:
    return len(_WORDS.findall(line)) <= most


def form_terms(text: str) -> set[str]:
    """The form terms of a message (see the module's docstring)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return set()
    out: set[str] = set()
    if len(lines) == 1:
        out.add(ONE_LINE)
    elif _GREETING.fullmatch(lines[0]) and _short(lines[0], 5):
        out.add(GREETING_LINE)
    if len(lines) > 1 and any(_CLOSING.fullmatch(line) and _short(line, 4) for line in lines[max(1, len(lines) - 3):]):
        out.add(SIGN_OFF)
    if len(_WORDS.findall(text)) >= 3 and not any(ch.isupper() for ch in text):
        out.add(LOWER_CASE)
    return out
