"""Masking personal data before anything leaves for a fine-tuning set.

Each detector finds candidates with a pattern and, where a checksum exists, confirms them: card numbers by
the Luhn check, IBANs by ISO 7064 mod-97, IP addresses by parsing. Detectors run in order from the most
specific (emails, IBANs, cards) to the most general (phone numbers), and a masked span is never looked at
again, so one number is counted once. A match becomes ``<EMAIL>``, ``<CARD>`` and so on: no quotes or
backslashes, so masking inside JSON text keeps it valid JSON.

Over-masking is the safe side here: a long digit run that looks like a phone number is masked even when it
is not one.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PII_TYPES", "PiiMasker", "iban_valid", "luhn_valid"]


def luhn_valid(digits: str) -> bool:
    """The Luhn check (ISO/IEC 7812) over a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers (A=10), mod 97 == 1."""
    iban = re.sub(r"[\s-]", "", text).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _ip_valid(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


_DATE_OR_DECIMAL = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}|\d+\.\d+")


@dataclass(frozen=True)
class _Detector:
    kind: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] = lambda _: True


_DETECTORS = (
    _Detector("email", re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
    _Detector("iban", re.compile(r"\b[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]{2,4}){3,8}\b"), iban_valid),
    # a card number is a word of its own (a digit run inside a hex id is none) and no part of a decimal; a full
    # stop that ends the sentence is no decimal point
    _Detector("card", re.compile(r"(?<!\w)(?<!\d\.)\d(?:[ -]?\d){12,18}(?!\w|\.\d)"),
              lambda m: 13 <= len(_digits(m)) <= 19 and luhn_valid(_digits(m))),
    _Detector("ip", re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"), _ip_valid),
    _Detector("ip", re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}(?::|[0-9A-Fa-f]{1,4})(?:[0-9A-Fa-f:]*)(?![\w:])"),
              lambda m: ":" in m and _ip_valid(m)),
    # national-ID-like: US SSN, UK National Insurance number, and numbers labelled as an ID or passport
    _Detector("national_id", re.compile(r"(?<!\d)(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\d)")),
    _Detector("national_id", re.compile(r"\b(?![DFIQUV])[A-Z](?![DFIOQUV])[A-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")),
    _Detector("national_id", re.compile(
        r"(?i)\b(?:ssn|national id|id number|id no\.?|passport(?: no\.?| number)?|tax id|personalausweis)[:# ]{1,3}"
        r"(?P<v>[A-Z0-9][A-Z0-9-]{5,15})\b"), lambda m: any(ch.isdigit() for ch in m)),
    # phone numbers: an optional +country code, then 7-15 digits in groups with spaces, dots, dashes, parens
    _Detector("phone", re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?"
                                  r"\d{2,4}(?:[ .-]?\d{2,4}){1,4}(?!\w)"),
              lambda m: 7 <= len(_digits(m)) <= 15 and not _DATE_OR_DECIMAL.fullmatch(m)
              and (m.startswith(("+", "(")) or len(_digits(m)) >= 9 or bool(re.search(r"\d[ .-]\d", m)))),
)

PII_TYPES = tuple(dict.fromkeys(d.kind for d in _DETECTORS))


@dataclass
class PiiMasker:
    """Masks text and whole JSON values; ``hits`` counts what was masked, by type."""

    hits: Counter[str] = field(default_factory=Counter)

    def mask(self, text: str) -> str:
        for det in _DETECTORS:
            def replace(match: re.Match[str], det: _Detector = det) -> str:
                whole = match.group(0)
                found = match.group("v") if "v" in match.re.groupindex else whole
                if "<" in found or not det.check(found):
                    return whole
                self.hits[det.kind] += 1
                return whole[: len(whole) - len(found)] + f"<{det.kind.upper()}>"

            text = det.pattern.sub(replace, text)
        return text

    def mask_value(self, value: Any) -> Any:
        """Every string inside a JSON value (keys too), masked."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, list):
            return [self.mask_value(v) for v in value]
        if isinstance(value, dict):
            return {self.mask(str(k)): self.mask_value(v) for k, v in value.items()}
        return value
