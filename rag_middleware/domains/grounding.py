"""Facts taken from the request itself: declared contexts, numbers (as written, in words or through units),
words and phrases, matches of a field's pattern, and which context values the request's text names.

Everything here is a pure function of the request text, so it can be tested alone and costs microseconds.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from typing import Any

from .spec import ContextSpec
from .votes import STOP_WORDS

__all__ = ["build_context", "mentioned", "number_matches", "number_of", "numbers_in", "pattern_matches", "quantities",
           "request_body", "unit_bound", "unit_spans", "words_in"]

_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
    "a dozen": 12, "dozen": 12, "a couple of": 2, "a couple": 2, "couple of": 2, "a pair of": 2, "half a": 0.5,
    "half an": 0.5, "a hundred": 100, "a thousand": 1000}
_WORD_ALT = "|".join(sorted((re.escape(w) for w in _NUMBER_WORDS), key=len, reverse=True))
_GROUP_SPACE = "[ \u00a0\u202f]"  # a space, a no-break space or a narrow no-break space between digit groups
_CURRENCY_AFTER = r"\s?(?:€|£|\$|EUR\b|USD\b|GBP\b|CHF\b|euros?\b|kr\b|zł|PLN\b|SEK\b|NOK\b|DKK\b)"
_DIGITS = (r"\d{1,3}(?:,\d{3})+(?:\.\d+)?"  # 2,300 / 1,234.56
           r"|\d{1,3}(?:\.\d{3})+,\d{1,2}(?![\d,])"  # 18.500,00 (dots group, a comma marks the decimals)
           r"|\d{1,3}(?:\.\d{3}){2,}(?![\d.,])"  # 1.250.000 (two dot groups cannot be decimals)
           r"|\d{1,3}(?:'\d{3})+(?:\.\d+)?"  # 1'250'000
           rf"|(?<=[€£$])\s?\d{{1,3}}(?:{_GROUP_SPACE}\d{{3}})+(?!\d)"  # €2 900 (spaced groups after a currency)
           rf"|\d{{1,3}}(?:{_GROUP_SPACE}\d{{3}})+(?:[.,]\d{{1,2}})?(?={_CURRENCY_AFTER})"  # 2 900 € / 2 900,50 EUR
           r"|\d+(?:[.,]\d{1,2}(?=" + _CURRENCY_AFTER + r"))?"  # 12,50 € (a decimal comma before a currency)
           r"(?:\.\d+)?")
_NOT_A_COUNT = r"(?<!\bno )(?<!\bthe )(?<!\bthis )(?<!\bthat )(?<!\bwhich )(?<!\bany)(?<!\bsome)(?<!\bevery)"
_JOINED = r"(?!\d|[/:.]\d)"  # 02/09/2024, 14:20, 12.06.1958, ref 4471/22: a date, a time or a reference, no number
MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
               "november", "december")
MONTH_SHORT = ("jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec")
_MONTH = rf"(?:{'|'.join(MONTH_NAMES + MONTH_SHORT)})\b"
_DATED_AFTER = re.compile(rf"(?:-\d{{1,2}})?(?:st|nd|rd|th)?\s*(?:of\s+)?{_MONTH}", re.I)  # 21 May, 14-21 June
_DATED_BEFORE = re.compile(rf"\b{_MONTH}\.?\s+(?:the\s+)?$", re.I)  # May 21, April the 8th
_CLOCK = re.compile(r"\s?(?:am|pm|a\.m\.|p\.m\.)(?!\w)", re.I)  # 11pm
_NUMBER = re.compile(rf"(?<![\w./:])(?<!\w-)(?:(?P<d>{_DIGITS}){_JOINED}\s*(?P<suffix>k\b|m\b|thousand\b|million\b)?"
                     rf"|{_NOT_A_COUNT}(?P<w>{_WORD_ALT})\b)", re.I)


def request_body(request: str, context: dict[str, ContextSpec] | None = None) -> str:
    """The request without the lines a ``line`` context was read from (those name values, not instructions)."""
    lines = [compiled(spec.line, re.I) for spec in (context or {}).values() if spec.line]
    if not lines:
        return request
    return "\n".join(text for text in request.splitlines() if not any(p.search(text) for p in lines))


def _split(value: str, sep: str | None) -> list[str]:
    parts = value.split(sep) if sep else [value]
    return [p.strip() for p in parts if p.strip()]


@functools.lru_cache(maxsize=4096)
def compiled(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """A compiled regex, cached past ``re``'s own 512 entries: cue patterns are built per set of values (a
    request's columns), so a busy server sees thousands and ``re``'s cache would recompile them each time."""
    return re.compile(pattern, flags)


def build_context(request: str, specs: dict[str, ContextSpec]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    body: str | None = None
    for name, spec in specs.items():
        values: list[str] = []
        if spec.source is not None:
            body = request_body(request, specs) if body is None else body
            base = out.get(spec.source, [])
            values = mentioned(base, body) if spec.mentioned else list(base)
            if spec.cues:
                values = cued(values, body, spec.cues)
            if spec.without:
                gone = {v for other in spec.without for v in out.get(other, [])}
                values = [v for v in values if v not in gone]
        elif spec.line:
            pattern = compiled(spec.line, re.I)
            for text in request.splitlines():
                match = pattern.search(text)
                if match:
                    values = _split(_group(match), spec.split)
                    break
        else:
            for match in compiled(spec.regex or "", re.I | re.M).finditer(request):
                values += _split(_group(match), spec.split)
        out[name] = list(dict.fromkeys(values))
    return out


def cued(values: list[str], body: str, cues: list[str]) -> list[str]:
    """The values some cue names. A cue is a regex where ``{value}`` stands for a value (as written or with
    spaces for underscores); it runs on the lower-cased text.

    A cue compiled with the values in it is new for every new set of columns (~0.4 ms a cue), so two exact
    shortcuts come first: a cue whose value-free form (``_gate``, compiled once) finds nothing cannot match
    with any value, and a value written nowhere in the text (followed by no letter, digit or underscore)
    can never be the one matched, so it leaves the alternation."""
    forms: dict[str, str] = {}
    for v in values:
        for form in (v.lower(), v.lower().replace("_", " ")):
            forms.setdefault(form, v)
    if not forms:
        return []
    ordered = sorted(forms, key=len, reverse=True)
    low = body.lower()
    found: set[str] = set()
    written = [f for f in ordered if _written(f, low, after_only=True)]
    span = 1 << max(4, (len(ordered[0]) - 1).bit_length())  # the longest value's length, rounded up
    for cue in cues:
        gate = _gate(cue, span)
        if gate is not None and not (written and gate.search(low)):
            continue
        pattern = compiled(cue.replace("{value}", _alternation(ordered if gate is None else written)))
        found.update(forms[m.group("value")] for m in pattern.finditer(low))
    return [v for v in values if v in found]


def _alternation(forms: list[str]) -> str:
    return "(?P<value>" + "|".join(re.escape(f) for f in forms) + ")" + _VALUE_END


_VALUE_END = "(?![a-z0-9_])"
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")  # what [a-z0-9_] matches (no flags)
# not read by gate: inline flags i (a value matched in other cases) and x (comments), comment groups, and
# atomic groups and possessive quantifiers (they commit to one path)
_UNREAD = re.compile(r"\(\?[aiLmsux-]*[ix]|\(\?#|\(\?>|[*+?}]\+")


def _inside_negation(cue: str, placeholder: str = "{value}") -> bool | None:
    """Whether the placeholder sits in a negative lookaround or a character class (None: the cue is not read)."""
    stack: list[bool] = []
    i, found = 0, None
    while i < len(cue):
        ch = cue[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            i += 2 if cue.startswith("[^", i) else 1
            i += 1 if cue.startswith("]", i) else 0  # a leading ] is a member
            while i < len(cue) and cue[i] != "]":
                if cue.startswith(placeholder, i):
                    return True
                i += 2 if cue[i] == "\\" else 1
        elif ch == "(":
            stack.append(cue.startswith(("(?!", "(?<!"), i))
        elif ch == ")":
            if not stack:
                return None
            stack.pop()
        elif cue.startswith(placeholder, i):
            found = any(stack)
        i += 1
    return found if not stack else None


def _gate(cue: str, span: int) -> re.Pattern[str] | None:
    """The cue with any text of up to ``span`` characters where ``{value}`` stands (see :func:`gate`)."""
    return gate(cue, rf"(?P<value>[\s\S]{{0,{span}}}?){_VALUE_END}")


@functools.lru_cache(maxsize=1024)
def gate(pattern: str, fill: str, placeholder: str = "{value}", flags: int = 0) -> re.Pattern[str] | None:
    """``pattern`` with ``fill`` (a regex that matches every value, and more) where the placeholder stands:
    whatever the pattern matches with a value, this matches too, so where this finds nothing no value can be
    found. None: no such guarantee, as the placeholder is not written once, in plain context (outside a
    negative lookaround or a class, not quantified; no inline i or x flag, no atomic group)."""
    after = pattern.split(placeholder, 1)[-1][:1]
    if (pattern.count(placeholder) != 1 or after in ("*", "+", "?", "{") or _UNREAD.search(pattern)
            or _inside_negation(pattern, placeholder) is not False):
        return None
    try:
        return re.compile(pattern.replace(placeholder, fill), flags)
    except re.error:
        return None


def _group(match: re.Match[str]) -> str:
    if "value" in match.re.groupindex:
        return match.group("value") or ""
    return (match.group(1) if match.re.groups else match.group(0)) or ""


def _digits_value(text: str) -> float:
    """A number as written in any of _DIGITS' forms: grouping marks dropped, a decimal comma made a point."""
    text = re.sub(r"[\s\u00a0\u202f']", "", text)
    if "," in text and (("." in text and text.rindex(",") > text.rindex("."))  # 18.500,00, not 1,250.00
                        or re.fullmatch(r"\d+,\d{1,2}", text)):
        return float(text.replace(".", "").replace(",", "."))  # 18.500,00 / 12,50
    if text.count(".") > 1:
        return float(text.replace(".", ""))  # 1.250.000
    return float(text.replace(",", ""))


_CURRENCY_BEFORE = re.compile(r"(?:[€£$]|\b(?:EUR|USD|GBP|CHF|PLN|SEK|NOK|DKK)\b)\s?$")
_CURRENCY_NEXT = re.compile(_CURRENCY_AFTER)


def _money_grouped(match: re.Match[str]) -> bool:
    """'4.180 EUR', '€12.400': one dot then three digits beside a currency groups thousands, as money is
    written with two decimals (or none), never three."""
    digits = match.group("d")
    if not re.fullmatch(r"\d{1,3}\.\d{3}", digits):
        return False
    text = match.string
    return bool(_CURRENCY_NEXT.match(text, match.end("d"))
                or _CURRENCY_BEFORE.search(text[max(0, match.start("d") - 5): match.start("d")]))


def _as_number(match: re.Match[str]) -> float | None:
    if match.group("d"):
        value = _digits_value(match.group("d").replace(".", "") if _money_grouped(match) else match.group("d"))
        suffix = (match.group("suffix") or "").lower()
        value *= {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6}.get(suffix, 1)
        return value
    word = (match.group("w") or "").lower()
    return float(_NUMBER_WORDS[word]) if word in _NUMBER_WORDS else None


def _tidy(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def number_matches(text: str) -> Iterator[re.Match[str]]:
    """The matches of every number the text states (digits or words), repeats included; a day of a date
    ("21 May", "April 8th", "14-21 June") and an hour ("11pm") are no numbers (a year stays one)."""
    for match in _NUMBER.finditer(text):
        digits = match.group("d") or ""
        day = re.fullmatch(r"\d{1,2}", digits) is not None and int(digits) <= 31
        if day and (_DATED_AFTER.match(text, match.end("d")) or _CLOCK.match(text, match.end("d"))
                    or _DATED_BEFORE.search(text[max(0, match.start() - 16): match.start()])):
            continue
        yield match


def number_of(match: re.Match[str]) -> int | float | None:
    value = _as_number(match)
    return None if value is None else _tidy(value)


def numbers_in(text: str) -> list[int | float]:
    """Numbers the text states, in order, without repeats: digits ('2,300', '2.5k') and number words."""
    found = []
    for match in number_matches(text):
        value = _as_number(match)
        if value is not None:
            found.append(_tidy(value))
    return list(dict.fromkeys(found))


# the usual short forms of a declared unit: '30 mins', '2 hrs'; the one-letter ones only joined to digits
# ('24h', '7d', '2w'), where they cannot be a word
_SHORT = {"second": ("sec", "secs"), "minute": ("min", "mins"), "hour": ("hr", "hrs"), "week": ("wk", "wks"),
          "month": ("mo", "mos", "mth", "mths"), "year": ("yr", "yrs")}
_JOINED_LETTER = {"hour": "h", "day": "d", "week": "w", "year": "y"}


def _unit_forms(units: dict[str, float]) -> dict[str, str]:
    """Every form a declared unit is written in (lower case) -> the declared unit word."""
    forms = {u.lower(): u for u in units}
    for unit in units:
        for short in _SHORT.get(unit.lower(), ()):
            forms.setdefault(short, unit)
    return forms


def _unit_pattern(units: dict[str, float]) -> tuple[re.Pattern[str], dict[str, str], dict[str, str]]:
    """The pattern of a quantity in the units, the forms each unit is written in, the letters joined to digits
    (built once per set of unit words: every request of a domain asks for the same)."""
    return _unit_pattern_of(tuple(units))


@functools.lru_cache(maxsize=64)
def _unit_pattern_of(units: tuple[str, ...]) -> tuple[re.Pattern[str], dict[str, str], dict[str, str]]:
    forms = _unit_forms(dict.fromkeys(units, 0.0))
    letters = {letter: unit for unit in units if (letter := _JOINED_LETTER.get(unit.lower())) and letter not in forms}
    alt = "|".join(sorted((re.escape(u) for u in forms), key=len, reverse=True))
    joined = (rf"|(?P<jd>\d+(?:\.\d+)?)(?P<letter>{'|'.join(letters)})(?!\w)") if letters else ""
    pattern = re.compile(
        rf"(?:(?P<d>{_DIGITS})\s*(?P<suffix>k\b|thousand\b)?|(?P<w>{_WORD_ALT})\b|(?P<half>\bhalf)(?=[\s-]+\w))?"
        rf"[\s-]*(?P<unit>{alt})(?:s|es)?\b{joined}", re.I)
    return pattern, forms, letters


def unit_bound(text: str, units: dict[str, float]) -> set[int | float]:
    """The numbers every mention of which is written with one of the units ('the last 24h', '90 minutes'): a
    quantity's number, no other field's value (a status code of 24, a latency of 90)."""
    spans = unit_spans(text, units)
    inside: dict[int | float, bool] = {}
    for match in number_matches(text):
        if (value := number_of(match)) is not None:
            inside[value] = inside.get(value, True) and any(start <= match.start() < end for start, end in spans)
    return {value for value, bound in inside.items() if bound}


def unit_spans(text: str, units: dict[str, float]) -> list[tuple[int, int]]:
    """Where ``text`` writes a number with one of the units ("90" of "90 minutes", "24h", "three days")."""
    return [m.span(g) for m in _unit_pattern(units)[0].finditer(text) for g in ("d", "jd", "w")
            if m.group(g)] if units else []


def quantities(text: str, units: dict[str, float]) -> list[int | float]:
    """Quantities in the units' terms: '3 hours' -> 3 * units['hour']; 'the last day', 'a week', 'yesterday'
    (one of the unit) -> 1 * units[...]. Plurals, ``-ly`` forms and the usual short forms ('2 hrs', '30min',
    '24h', '7d') are understood."""
    if not units:
        return []
    pattern, forms, letters = _unit_pattern(units)
    found: list[int | float] = []
    for match in pattern.finditer(text):
        if match.group("letter"):
            if not re.search(r"(?:^|[\s(])$", text[: match.start()]):
                continue  # 'x24h' is an identifier
            found.append(_tidy(float(match.group("jd")) * units[letters[match.group("letter").lower()]]))
            continue
        written = match.group("unit").lower()
        unit = forms[written]
        if written != unit.lower() and not (match.group("d") or match.group("w") or match.group("half")):
            continue  # a short form counts after a number only: 'the min price' is no minute
        if match.group("half"):
            count = 0.5  # "the last half hour", "a half-day"
        elif match.group("d") or match.group("w"):
            count = _as_number(match)
        else:
            before = text[max(0, match.start() - 12) : match.start()].lower()
            if not re.search(r"\b(?:a|an|the|one|this|last|past|previous|per|single)\s*$", before):
                continue  # a bare unit word ("daily report") is not a quantity
            count = 1.0
        if count is not None:
            found.append(_tidy(count * units[unit]))
    if "day" in units and re.search(r"\b(?:yesterday|today|since this morning)\b", text, re.I):
        found.append(_tidy(units["day"]))
    return list(dict.fromkeys(found))


_QUOTED = re.compile(r"[\"“']([^\"”'\n]{1,60})[\"”']")
_UPPER = "A-ZÀ-ÖØ-Þ"  # a capital, accented ones too ("Óbidos", "Île")
_CAPITALISED = re.compile(rf"\b[{_UPPER}][\w'-]*(?:[ -](?:[{_UPPER}][\w'-]*|de|del|la|le|am|upon|on|of))*"
                          rf"(?:[ -][{_UPPER}][\w'-]*)?")
_TOKEN = re.compile(r"[^\W_][\w.@:/-]*[^\W_]|[^\W_]")  # letters and digits of any script: "Malmö" whole
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+|\n)$")


_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def words_in(text: str, *, max_words: int = 3) -> list[str]:
    """Words and phrases the text writes: quoted phrases, capitalised runs ('New York', not a capital that
    only starts a sentence), every token (identifiers such as 'svc-12' or 'api.example.com' whole), runs of
    up to ``max_words`` tokens within a clause, each also in lower case."""
    found: list[str] = [m.group(1).strip() for m in _QUOTED.finditer(text)]
    for match in _CAPITALISED.finditer(text):
        phrase = match.group(0).strip(" -")
        if " " in phrase or not _SENTENCE_START.search(text[: match.start()]):
            found.append(phrase)
    for clause in re.split(r"[,;!?()\n]+|[.:](?=\s|$)", _THOUSANDS.sub("", text)):  # "5,000" is one word
        tokens = [m.group(0) for m in _TOKEN.finditer(clause)]
        found += tokens
        for size in range(2, max_words + 1):  # a run that starts or ends on a stop word is no value ("host on the")
            found += [" ".join(run) for i in range(len(tokens) - size + 1)
                      if (run := tokens[i : i + size])[0].lower() not in STOP_WORDS
                      and run[-1].lower() not in STOP_WORDS]
    # a capitalised word may be a plain one ("Checkout errors"); one with capitals inside, or a capital and a
    # digit, is written so ("cus_7Q2kd9", "PutObject", "S3"): no lower-case copy of it
    found += [w.lower() for w in found if not any(
        any(c.isupper() for c in token[1:]) or (token[:1].isupper() and any(c.isdigit() for c in token))
        for token in w.split())]
    return [w for w in dict.fromkeys(found) if w]


_LEADING_NUMBER = re.compile(r"(\d[\d,]*(?:\.\d+)?)[a-z]*", re.I)


def _spent_number(phrase: str, spent: set[Any] | frozenset[Any]) -> bool:
    """A phrase that starts or ends on a number another field takes ('40 minutes ago', '24h' in 'the last 24h')."""
    words = phrase.split()
    for word in {words[0], words[-1]} if words else ():
        match = _LEADING_NUMBER.fullmatch(word)
        if match:
            digits = match.group(1).replace(",", "")
            if _tidy(float(digits)) in spent:
                return True
    return False


def _ends(phrase: str) -> set[str]:
    """The first and last word of a run of lower-case words (a name's, 'New York City', are its own)."""
    words = phrase.split()
    if len(words) < 2 or all(w[:1].isupper() for w in words):
        return set()
    return {words[0].lower(), words[-1].lower()}


def pattern_matches(pattern: str, text: str) -> list[str]:
    """Substrings of the text that match a JSON Schema ``pattern`` (anchors dropped, whole tokens only)."""
    core = pattern
    if core.startswith("^"):
        core = core[1:]
    if core.endswith("$") and not core.endswith("\\$"):
        core = core[:-1]
    try:
        regex = re.compile(rf"(?<![\w-])(?:{core})(?![\w-])")
    except re.error:
        return []
    full = re.compile(pattern)
    found = []
    for match in regex.finditer(text):
        value = match.group(0)
        # a sentence's full stop or comma after the value is not the value's ("errors on /login.")
        trimmed = value.rstrip(".,;:!?")
        if trimmed != value and trimmed and full.search(trimmed) and _SENTENCE_END.match(text, match.end()):
            value = trimmed
        if full.search(value):
            found.append(value)
    return list(dict.fromkeys(found))


_SENTENCE_END = re.compile(r"\s|$")


def _abbreviates(name: str, word: str) -> bool:
    common = len(os.path.commonprefix([name, word]))
    if common >= 4 or common == len(name):
        return True
    if name[0] != word[0]:
        return False
    rest = iter(word)
    return all(ch in rest for ch in name)  # the name's letters, in order, within the word


def _written(form: str, low: str, *, after_only: bool = False) -> bool:
    """Whether the text writes ``form`` with no [a-z0-9_] after it, nor (unless ``after_only``) before it: a
    string scan, where a regex per value would be compiled anew for every new column."""
    i = low.find(form)
    while i >= 0:
        end = i + len(form)
        if ((after_only or i == 0 or low[i - 1] not in _WORD_CHARS)
                and (end == len(low) or low[end] not in _WORD_CHARS)):
            return True
        i = low.find(form, i + 1)
    return False


def mentioned(values: list[str], body: str) -> list[str]:
    """The values the text names: as written, with spaces for underscores ('interest rate'), or as a word
    they abbreviate (a value 'dept' is named by 'department', 'qty' by 'quantity'). A word of the text is
    never taken as an abbreviation of a value ('are' would name 'area')."""
    low_body = body.lower()
    words = set(re.findall(r"[a-z0-9]{3,}", low_body))
    named = []
    for value in values:
        low = value.lower().strip()
        forms = {low, low.replace("_", " ")}
        as_written = any(f and _written(f, low_body) for f in forms)
        if as_written or (len(low) >= 3 and re.fullmatch(r"[a-z0-9]+", low)
                          and any(_abbreviates(low, w) for w in words)):
            named.append(value)
    return named


def candidates(source: str, *, request: str, body: str, context: dict[str, list[str]],
               units: dict[str, float] | None, pattern: str | None, only_mentioned: bool,
               spent: set[Any] | frozenset[Any] = frozenset()) -> list[Any] | None:
    """The values a grounded field may take for this request (None: this source cannot ground the field).
    ``spent``: numbers or words that are another field's (``unit_bound``; the schema's own words), left out."""
    if source == "numbers":
        if units:  # a quantity in the field's unit, or nothing: a bare number elsewhere is not a duration
            return quantities(body, units)
        return [v for v in numbers_in(body) if v not in spent]
    if source == "words":  # nor one that is, or starts or ends on, the schema's own word ("p95 latency")
        return _fitting([w for w in words_in(body) if not ({w.lower(), *_ends(w)} & spent or _spent_number(w, spent))],
                        pattern)
    if source == "request":
        return pattern_matches(pattern, request) if pattern else None
    values = list(context.get(source, []))
    if only_mentioned:
        return _fitting(mentioned(values, body) or values, pattern)
    return _fitting(values, pattern)


def _fitting(values: list[str], pattern: str | None) -> list[str]:
    """The values the field's own ``pattern`` admits (a value it does not admit would fail validation)."""
    if not pattern:
        return values
    try:
        regex = compiled(pattern)
    except re.error:
        return values
    return [v for v in values if regex.search(str(v))]
