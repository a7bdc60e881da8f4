"""Slots: which number or word of the request fills which grounded field, learnt from the words around it.

Grounding admits every number (or word) the request states, and a small model often picks the wrong one or
none: ``limit`` left null in "show me 5 flats", ``city`` null in "villas in Nice". The examples say which
mention fills which field: in every example question, each number mention (for fields grounded in
``numbers``) and each word or capitalised phrase (for fields grounded in ``words``) is a window of words,
labelled with the fields whose value it is (or none). A request's mentions are labelled by their nearest
windows; when exactly one value is surely a field's, the grammar admits only that value (not even null).

Fields with time units (the number is converted) are not slots. Leave-one-out on the examples judges each
field; a field whose sure picks were right less than RELIABLE of the time is left to grounding alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .anchors import JUDGED_EXAMPLES, Mention, WindowIndex, mentions, window
from .grounding import unit_spans
from .paths import Path, values_at
from .votes import STOP_WORDS

__all__ = ["ORDINAL", "SlotBank", "judge_slots", "learnt_slots", "slot_paths", "word_mentions"]

RELIABLE = 0.7
ORDINAL = re.compile(r"(?:st|nd|rd|th)\b", re.I)  # right after a number: a rank or a date, no count
NEAR_MIN = 0.2  # word overlap (Jaccard) of a mention's nearest window, for its windows to say anything
_CANDIDATE = re.compile(r"[A-ZÀ-ÖØ-Þ][\w'-]*(?:[ -][A-ZÀ-ÖØ-Þ][\w'-]*)*|[a-zß-öø-ÿ][\w'-]*")


def word_mentions(text: str) -> list[tuple[str, Mention]]:
    """Words and capitalised runs ('Salt Lake City' whole, and each word of it) with their places."""
    out = []
    for match in _CANDIDATE.finditer(text):
        out.append((match.group(0), Mention(0, match.start(), match.end())))
        if " " in match.group(0) or "-" in match.group(0):
            for part in re.finditer(r"[A-Za-z][\w']*", match.group(0)):
                start = match.start() + part.start()
                out.append((part.group(0), Mention(0, start, start + len(part.group(0)))))
    return out


def _features(text: str, mention: Mention, word: str | None) -> frozenset[str]:
    own = window(text, mention)
    if word is None:
        return own
    shape = {"S:cap"} if word[:1].isupper() else set()
    return own | shape | ({"S:multi"} if " " in word else set()) | {f"W:{word.lower()}"}


@dataclass
class SlotBank:
    """Labelled windows of a domain's slot fields: ``paths`` grounded in numbers or in words."""

    numbers: tuple[Path, ...]
    words: tuple[Path, ...]
    k: int = 5
    margin: float = 0.6
    windows: dict[str, list[tuple[frozenset[str], frozenset[Path]]]] = field(
        default_factory=lambda: {"numbers": [], "words": []})
    judged: dict[str, Any] = field(default_factory=dict)
    shapes: dict[Path, Any] = field(default_factory=dict)  # word_shapes.WordShape of the words fields
    units: dict[str, float] = field(default_factory=dict)  # every unit field's units: their numbers are no slot's
    _indexes: dict[str, WindowIndex] = field(default_factory=lambda: {"numbers": WindowIndex(),
                                                                       "words": WindowIndex()}, repr=False)
    _shares: dict[tuple[str, Path, int], dict[Any, float]] = field(default_factory=dict, repr=False,
                                                                   compare=False)  # the last few requests

    def candidates(self, question: str, kind: str) -> list[tuple[Any, frozenset[str]]]:
        if kind == "numbers":  # a number written with a unit ("the last 2 hours") is the unit field's, no slot's,
            bound = unit_spans(question, self.units)  # and an ordinal ("the 95th percentile", "on the 3rd") counts
            return [(m.value, _features(question, m, None)) for m in mentions(question)  # nothing
                    if not any(start <= m.start < end for start, end in bound)
                    and not ORDINAL.match(question, m.end)]
        return [(w, _features(question, m, w)) for w, m in word_mentions(question) if w.lower() not in STOP_WORDS]

    def learn(self, question: str, answer: Any) -> None:
        for kind, paths in (("numbers", self.numbers), ("words", self.words)):
            if not paths:
                continue
            wanted = {p: values_at(answer, p) for p in paths}
            for value, feats in self.candidates(question, kind):
                labels = frozenset(p for p, found in wanted.items() if found and _same(found[0], value))
                self.windows[kind].append((feats, labels))

    def vote(self, question: str, *, extra: list[tuple[str, Any]] = (),
             skip: dict[str, range] | None = None) -> list[dict[str, Any]]:
        """One record per field with a sure pick: ``allowed`` that one value. ``extra``: (question, answer)
        of reviewed answers, learnt for this request too. ``skip``: per kind, windows left out (one example's,
        for leave-one-out)."""
        banks = self.windows
        if extra:
            more = SlotBank(self.numbers, self.words, self.k, self.margin, shapes=self.shapes, units=self.units)
            for q, a in extra:
                more.learn(q, a)
            banks = {kind: self.windows[kind] + more.windows[kind] for kind in self.windows}
        picks: dict[Path, list[tuple[Any, float]]] = {}
        blocked: set[Path] = set()
        for kind, paths in (("numbers", self.numbers), ("words", self.words)):
            bank = banks[kind]
            index = self._indexes[kind] if bank is self.windows[kind] else WindowIndex()
            feature_sets = [w for w, _ in bank]
            gone = skip.get(kind, range(0)) if skip else range(0)
            for value, feats in self.candidates(question, kind) if paths and bank else []:
                ranked = self._ranked(bank, index, feature_sets, feats, gone)
                if not ranked or ranked[0][0] < NEAR_MIN:  # like no window of the examples: "2FA", "95th"
                    if kind == "numbers":  # it may be the value of a field whose values have its digit count
                        blocked.update(p for p in paths if _sized(bank, p, feats))  # so no other is surely it
                    continue
                for path in paths:
                    share = _share(ranked, path)
                    if share >= self.margin and (path not in self.shapes or self.shapes[path].admits(value, question)):
                        picks.setdefault(path, []).append((value, share))
        out = []
        for path, found in picks.items():
            values = list(dict.fromkeys(v for v, _ in found))
            if len(values) == 1 and path not in blocked:
                share = max(s for _, s in found)
                out.append({"path": "/" + "/".join(path), "allowed": values, "scores": {str(values[0]): share},
                            "voters": [], "confident": True, "slot": True})
        return out

    def _ranked(self, bank: list[tuple[frozenset[str], frozenset[Path]]], index: WindowIndex,
                feature_sets: list[frozenset[str]], feats: frozenset[str], gone: range = range(0)
                ) -> list[tuple[float, frozenset[Path]]]:
        """The similarity and the fields of a mention's ``k`` nearest windows in ``bank`` (``gone`` left out)."""
        found = [(sim, i) for sim, i in index.nearest(feats, feature_sets) if i not in gone]
        return [(sim, bank[i][1]) for sim, i in found[: self.k]]

    def shares(self, question: str, path: Path) -> dict[Any, float]:
        """Per number of the request, the share of its nearest windows that fill a numbers field (however
        small); empty for a field that is not a numbers slot or without windows."""
        if path not in self.numbers or not self.windows["numbers"]:
            return {}
        key = (question, path, len(self.windows["numbers"]))  # one request asks twice (ranges, set when found)
        if key in self._shares:
            return dict(self._shares[key])
        bank = self.windows["numbers"]
        feature_sets = [w for w, _ in bank]
        out: dict[Any, float] = {}
        for candidate, feats in self.candidates(question, "numbers"):
            share = _share(self._ranked(bank, self._indexes["numbers"], feature_sets, feats), path)
            out[candidate] = max(share, out.get(candidate, 0.0))
        if len(self._shares) >= 16:
            self._shares.clear()  # one step, safe beside another thread
        self._shares[key] = out
        return dict(out)

    def likeliest(self, question: str, path: Path) -> Any:
        """The number of the request most likely a numbers field's, or None: the value a gloss rule's number
        ranges are judged on (glosses.GlossRule.ranges)."""
        found = {v: s for v, s in self.shares(question, path).items() if s > 0}
        return max(found, key=lambda v: found[v]) if found else None


def _sized(bank: list[tuple[frozenset[str], frozenset[Path]]], path: Path, feats: frozenset[str]) -> bool:
    """Whether a number (its window ``feats``) has as many digits as some value of ``path`` in ``bank`` (a status
    502 is no limit of 5 to 50); a number without a digit count (a decimal) may be any."""
    size = next((f for f in feats if f.startswith("N:")), None)
    return size is None or any(size in own for own, labels in bank if path in labels)


def _share(ranked: list[tuple[float, frozenset[Path]]], path: Path) -> float:
    """The share of the nearest windows' similarity held by those that fill ``path``."""
    total = sum(s for s, _ in ranked)
    return sum(s for s, labels in ranked if path in labels) / total if total else 0.0


def _same(expected: Any, value: Any) -> bool:
    if isinstance(expected, str) and isinstance(value, str):
        return expected.casefold() == value.casefold()
    return isinstance(expected, (int, float)) and not isinstance(expected, bool) and expected == value


def judge_slots(bank: SlotBank, examples: list[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    """Leave-one-out on the examples: per field, how often a sure pick was the example's own value."""
    stats: dict[Path, list[int]] = {p: [0, 0] for p in (*bank.numbers, *bank.words)}
    every = SlotBank(bank.numbers, bank.words, bank.k, bank.margin, shapes=bank.shapes, units=bank.units)  # one index
    spans = []  # each example's windows
    for question, answer in examples:
        start = {kind: len(found) for kind, found in every.windows.items()}
        every.learn(question, answer)
        spans.append({kind: range(start[kind], len(found)) for kind, found in every.windows.items()})
    for (question, answer), own in zip(examples, spans, strict=True):
        for record in every.vote(question, skip=own):
            path = tuple(record["path"].strip("/").split("/"))
            found = values_at(answer, path)
            stats[path][0] += 1
            stats[path][1] += bool(found) and _same(found[0], record["allowed"][0])
    return {"/" + "/".join(p): {"narrowed": n, "right": r, "precision": round(r / n, 3) if n else 0.0,
                                "reliable": n >= 3 and r / n >= RELIABLE} for p, (n, r) in stats.items()}


def slot_paths(spec: Any) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """The fields a domain's slots cover: grounded in numbers (without units) or in words, not in a list."""
    numbers = tuple(p for p, g in spec.ground.items() if g.source == "numbers" and p not in spec.units
                    and "*" not in p)
    words = tuple(p for p, g in spec.ground.items() if g.source == "words" and "*" not in p)
    return numbers, words


def learnt_slots(spec: Any, pairs: list[tuple[str, Any]]) -> SlotBank | None:
    """A domain's slot fields, learnt from its examples (``(request body, answer)``) and judged on them."""
    numbers, words = slot_paths(spec)
    if not (numbers or words):
        return None
    bank = SlotBank(numbers, words, shapes=dict(getattr(spec, "shape", {}) or {}), units=spec.unit_words)
    for question, answer in pairs:
        bank.learn(question, answer)
    bank.judged = judge_slots(bank, pairs[:JUDGED_EXAMPLES])
    return bank
