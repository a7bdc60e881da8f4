"""Anchored list items: a list whose items carry a number the request states has one item per such number.

In ``{"filters": [{"field": "bedrooms", "op": "gte", "value": 3}]}`` with ``/filters/*/value`` grounded in
the request's numbers, each item answers one number mention ("at least 3 bedrooms"), and the words around
the number say which field and operator it is. A small model knows the words but mixes up which number goes
where, so the core learns it from data: every number mention in the curated examples' questions (and in
reviewed answers' questions) is a labelled window of words. It is labelled with its item's enum values, or
``none`` when no item carries it (a count of results, a number of days). A request's mentions are labelled
by their nearest windows; when every mention is sure whether it is an item, the list is fixed to one item per
item mention, in the request's order, each with its number and the labels its window voted for.

Found without declaration: any list of objects with a numeric leaf grounded in ``numbers`` and at least one
enum leaf. The plan is recorded as a vote (``path`` the list, ``items`` per position), so ``--explain`` and
the replay report show it, and leave-one-out on the examples judges it like any vote.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import grounding
from .glosses import label_glosses
from .paths import Path, enum_values, schema_nodes, values_at
from .phrases import RANGE_HIGH, RANGE_LOW, PhraseRule, bound_phrases, gloss_phrases, learn_phrase_rule

__all__ = ["JUDGED_EXAMPLES", "Anchor", "AnchorBank", "WindowIndex", "describe", "find_anchors", "judge",
           "learnt_anchors", "mentions"]

JUDGED_EXAMPLES = 300  # leave-one-out is quadratic: the first this many examples judge a list
WINDOW = 3  # words each side of a number
FEATURE_DEFAULT = 0.3  # the weight of a window word seen in fewer than two item windows
GLOSS_WINDOW = 0.5  # the weight of a gloss's window against an example's (1)
_WORD = re.compile(r"[a-z]+|\d[\d,.]*", re.I)
_SIGN_BEFORE = re.compile(r"[$£€¥₹]\s?$")  # "£4,300", "€ 215": a currency sign takes no place among the words
_SIGN_AFTER = re.compile(r"^\s?[$£€¥₹]")
# words that say the same beside any number, whichever of them an example happened to use: "on 2 April" and
# "3 May" are dates alike, "£4,300" and "4,300 euros" money alike; each class is one window word
_MONTHS = grounding.MONTH_NAMES + grounding.MONTH_SHORT
_MONEY = ("usd", "eur", "gbp", "chf", "pound", "pounds", "quid", "dollar", "dollars", "euro", "euros", "bucks")
_CLASSES = {**dict.fromkeys(_MONTHS, "<month>"), **dict.fromkeys(_MONEY, "<money>")}
_RANGE = re.compile(r"\s*(and|to|-|–)\s*", re.I)  # "and" joins a range only after "between"


@dataclass(frozen=True)
class Mention:
    value: int | float
    start: int
    end: int


def mentions(text: str) -> list[Mention]:
    """Every number the text states, in order, repeats included (``grounding.numbers_in`` dedupes)."""
    out = []
    for match in grounding.number_matches(text):
        value = grounding.number_of(match)
        if value is not None:
            out.append(Mention(value, match.start(), match.end()))
    return out


def window(text: str, mention: Mention) -> frozenset[str]:
    """The words around a mention, tagged by side (numbers as ``#``); the adjacent word on each side twice,
    once tagged as adjacent, since it says most ("at least 3", "3 bedrooms"); and the number's digit count.
    The first number of a range ("between 1,000 and 3,000 m2", "2 to 3 bedrooms", "2-3") reads its right
    words after the second."""
    def words(part: str) -> list[str]:
        return [_token(w) for w in _WORD.findall(part)]

    before, rest = words(text[: mention.start]), text[mention.end :]
    joined = _RANGE.match(rest)  # "between 1,000 and 3,000 square meters": the words after a range are its too
    if joined is not None and (joined.group(1).lower() != "and" or before[-1:] == ["between"]) and (
            second := next(grounding.number_matches(rest[joined.end():]), None)) is not None and second.start() == 0:
        rest = rest[joined.end() + second.end():]
    left, right = before[-WINDOW:], words(rest)[:WINDOW]
    out = {f"L:{w}" for w in left} | {f"R:{w}" for w in right}
    if float(mention.value).is_integer():  # its digits say much of which field (a price, a year, a count)
        out.add(f"N:{len(str(int(abs(mention.value))))}")
    if left:
        out.add(f"L1:{left[-1]}")
    if right:
        out.add(f"R1:{right[0]}")
    signed = _SIGN_BEFORE.search(text[max(0, mention.start - 2): mention.start]) or _SIGN_AFTER.match(
        text[mention.end: mention.end + 2])
    out |= {f"A:{w}" for w in (left[-1:] + right[:1] + (["<money>"] if signed else [])) if w.startswith("<")}
    return frozenset(out)


def _token(word: str) -> str:
    """A window word: numbers as ``#``, a month or a currency as its class (``_CLASSES``), else lower case."""
    if word[0].isdigit():
        return "#"
    return _CLASSES.get(word.lower(), word.lower())


class WindowIndex:
    """Labelled windows (feature sets) with an inverted index: the nearest ones by word overlap (Jaccard) are
    found among the windows that share a feature, not by a scan of all. Rebuilt when windows were added."""

    def __init__(self) -> None:
        self._index: dict[str, list[int]] = {}
        self._size = 0

    def nearest(self, own: frozenset[str], windows: list[frozenset[str]]) -> list[tuple[float, int]]:
        """(similarity, position) of every window sharing a feature with ``own``, nearest first (ties: the
        earlier window first)."""
        if self._size != len(windows):
            self._index = {}
            for i, feats in enumerate(windows):
                for f in feats:
                    self._index.setdefault(f, []).append(i)
            self._size = len(windows)
        shared: dict[int, int] = {}
        for f in own:
            for i in self._index.get(f, ()):
                shared[i] = shared.get(i, 0) + 1
        return [(-s, i) for s, i in sorted((-c / (len(own) + len(windows[i]) - c), i) for i, c in shared.items())]


@dataclass(frozen=True)
class Anchor:
    """A list (``path``) whose items carry a grounded number at ``value`` and enum labels at ``labels``."""

    path: Path
    value: Path
    labels: tuple[Path, ...]

    @property
    def shown(self) -> str:
        return "/" + "/".join(self.path)


def find_anchors(schema: dict[str, Any], numbers: Iterable[Path]) -> list[Anchor]:
    """The anchored lists of a schema, given the paths grounded in the request's numbers."""

    out = []
    for path in numbers:
        if "*" not in path or path.count("*") != 1:
            continue
        star = path.index("*")
        items = schema_nodes(schema, path[: star + 1])
        inner = path[star + 1 :]
        labels: list[Path] = []
        for item in items:
            for name, child in _properties(item).items():
                if (name,) != inner and isinstance(child, dict) and _is_enum(child):
                    labels.append((name,))
        if inner and labels:
            out.append(Anchor(path[:star], inner, tuple(dict.fromkeys(labels))))
    return out


def _properties(node: dict[str, Any]) -> dict[str, Any]:
    props = dict(node.get("properties") or {})
    for key in ("anyOf", "oneOf"):
        for branch in node.get(key, []) or []:
            if isinstance(branch, dict):
                props.update(branch.get("properties") or {})
    return props


def _is_enum(node: dict[str, Any]) -> bool:
    if "enum" in node:
        return sum(v is not None for v in node["enum"]) >= 2
    return any(isinstance(b, dict) and _is_enum(b) for k in ("anyOf", "oneOf") for b in node.get(k, []) or [])


@dataclass
class AnchorBank:
    """Labelled windows of one anchored list: ``(window, labels or None for no item, weight)``."""

    anchor: Anchor
    windows: list[tuple[frozenset[str], dict[Path, str] | None, float]] = field(default_factory=list)
    k: int = 5
    margin: float = 0.6
    judged: dict[str, Any] = field(default_factory=dict)  # judge() on the examples
    # what the schema and rules say of each label ("lte for at most, up to"), as item windows (gloss_windows)
    glossed: list[tuple[frozenset[str], dict[Path, str], float]] = field(default_factory=list)
    # per item label, the gloss phrases beside a number that decide it (phrases.py), judged at load
    phrases: dict[Path, PhraseRule] = field(default_factory=dict)
    # every labelled item mention learnt: (question, mention, its labels); what the phrases are judged on
    spots: list[tuple[str, Mention, dict[Path, str]]] = field(default_factory=list, repr=False)
    _index: WindowIndex = field(default_factory=WindowIndex, repr=False)
    _purity: dict[tuple[Path, int], dict[str, float]] = field(default_factory=dict, repr=False)
    _tallies: dict[tuple[Path, int], dict[str, dict[str, float]]] = field(default_factory=dict, repr=False)

    def learn(self, question: str, answer: Any, weight: float = 1.0) -> None:
        """Label every number mention of a question by the item that carries it (none if no item does). A
        question whose items do not all match a mention teaches nothing (they are not anchored there)."""
        items = [i for i in values_at(answer, self.anchor.path + ("*",)) if isinstance(i, dict)]
        found = mentions(question)
        used: set[int] = set()
        labelled: dict[int, dict[Path, str]] = {}
        for item in items:
            value = values_at(item, self.anchor.value)
            spot = next((n for n, m in enumerate(found) if value and m.value == value[0] and n not in used), None)
            if spot is None:
                return
            used.add(spot)
            labelled[spot] = {p: str(v[0]) for p in self.anchor.labels if (v := values_at(item, p))}
        for n, mention in enumerate(found):
            self.windows.append((window(question, mention), labelled.get(n), weight))
            if n in labelled:
                self.spots.append((question, mention, labelled[n]))

    def vote(self, question: str, *, extra: list[tuple[str, Any, float]] = (), skip: range = range(0)
             ) -> dict[str, Any]:
        """The plan for a request, as a vote record: ``items``, per list position its number and allowed labels
        (an item the vote is unsure of is ``optional``; it may come only after the sure ones); else no
        ``items`` and a ``reason``. ``skip``: windows left out (one example's, for leave-one-out)."""
        bank = self
        if extra:
            bank = AnchorBank(self.anchor, list(self.windows), self.k, self.margin, glossed=self.glossed,
                              phrases=self.phrases)
            for text, answer, weight in extra:
                bank.learn(text, answer, weight)
        record: dict[str, Any] = {"path": self.anchor.shown, "value": "/".join(self.anchor.value), "allowed": [],
                                  "scores": {}, "voters": [], "confident": False, "mentions": []}
        items: list[dict[str, Any]] = []
        for mention in mentions(question):
            seen = bank._label(window(question, mention), skip)
            seen["value"] = mention.value
            if seen["item"]:
                self._phrased(question, mention, seen, record["mentions"][-1:])
            record["mentions"].append(seen)
            if seen["sure"] and seen["item"] and any(i.get("optional") for i in items):
                record["reason"] = f"not sure whether a number before {mention.value} is an item"
                return record
            if seen["item"] or not seen["sure"]:  # an unsure number at the end may be an item: optional
                # the grammar admits each label's winner alone (the model picks worse than the vote's order
                # between two); the runner-up stays a candidate, which the leave-one-out judgement reads
                items.append({"value": mention.value, "labels": {k: v[:1] for k, v in seen["labels"].items()},
                              "candidates": seen["labels"], **({} if seen["sure"] else {"optional": True}),
                              **({"phrases": seen["phrases"]} if seen.get("phrases") else {})})
        if record["mentions"]:
            record["items"] = items
            record["confident"] = True
        return record

    def _phrased(self, question: str, mention: Mention, seen: dict[str, Any], last: list[dict[str, Any]]) -> None:
        """An item label that a reliable gloss phrase beside the number decides takes that label alone. The
        second number of a range ("between 1990 and 2010") bounds the first's quantity: it takes the first's
        other labels (the first's window reads the words on both sides of the range)."""
        for path, rule in self.phrases.items():
            decided = rule.decide(question, mention.start, mention.end) if rule.reliable else None
            if decided is not None:
                seen["labels"]["/".join(path)] = [decided[0]]
                seen.setdefault("phrases", {})["/".join(path)] = decided[1]
        said = seen.get("phrases", {})
        if last and last[0]["item"] and any(last[0].get("phrases", {}).get(k) == RANGE_LOW and p == RANGE_HIGH
                                            for k, p in said.items()):
            seen["labels"].update({k: v for k, v in last[0]["labels"].items() if k not in said})

    def _label(self, own: frozenset[str], skip: range = range(0)) -> dict[str, Any]:
        """Item or not, by the nearest windows; an item's labels by the nearest item windows (one search)."""
        found = [(s, i) for s, i in self._index.nearest(own, [w for w, _, _ in self.windows]) if i not in skip]
        ranked = [(sim, self.windows[i][1], self.windows[i][2]) for sim, i in found]
        near = ranked[: self.k]
        total = sum(s * w for s, _, w in near)
        if not total:
            return {"sure": False, "item": False, "labels": {}}
        item_share = sum(s * w for s, labels, w in near if labels is not None) / total
        is_item = item_share >= 0.5
        sure = max(item_share, 1 - item_share) >= self.margin
        labels: dict[str, list[str]] = {}
        if is_item:
            items = [(i, self.windows[i]) for _, i in found if self.windows[i][1] is not None]
            items += [(len(self.windows) + n, w) for n, w in enumerate(self.glossed)]  # after every real one
            for path in self.anchor.labels:
                labels["/".join(path)] = self._labels_at(own, items, path, skip)
        return {"sure": sure, "item": is_item, "share": round(item_share, 3), "labels": labels}

    def _labels_at(self, own: frozenset[str], items: list[tuple[int, tuple[frozenset[str], Any, float]]],
                   path: Path, skip: range = range(0)) -> list[str]:
        """The best two values of one label among the nearest item windows, best first, nearness weighing each
        shared word by how well it tells this label's values apart ("under" the operator, "bedrooms" the
        field); nothing when they do not hold ``margin`` of the vote."""
        weights = self._weights_without(path, skip) if skip else self._weights(path)
        near = sorted(((sum(weights.get(f, FEATURE_DEFAULT) for f in own & feats)
                        / sum(weights.get(f, FEATURE_DEFAULT) for f in own | feats), i, found, w)
                       for i, (feats, found, w) in items if path in found), key=lambda t: (-t[0], t[1]))
        scores: dict[str, float] = {}
        for s, _, found, w in near[: self.k]:
            scores[found[path]] = scores.get(found[path], 0.0) + s * w
        ordered = sorted(scores, key=lambda v: -scores[v])
        total = sum(scores.values())
        return ordered[:2] if total and sum(scores[v] for v in ordered[:2]) / total >= self.margin else []

    def _weights(self, path: Path) -> dict[str, float]:
        """Per window word, how pure the label's values are among the item windows holding it (squared; a word
        seen once has FEATURE_DEFAULT). Made once per set of windows."""
        key = (path, len(self.windows))
        if key not in self._purity:
            self._purity[key] = {f: p for f, c in self._counts(path).items() if (p := _purity(c)) is not None}
        return self._purity[key]

    def _counts(self, path: Path) -> dict[str, dict[str, float]]:
        key = (path, len(self.windows))
        if key not in self._tallies:
            counts: dict[str, dict[str, float]] = {}
            for feats, found, w in self.windows:
                if found is None or path not in found:
                    continue
                for f in feats:
                    counts.setdefault(f, {})
                    counts[f][found[path]] = counts[f].get(found[path], 0.0) + w
            self._tallies[key] = counts
        return self._tallies[key]

    def _weights_without(self, path: Path, skip: range) -> dict[str, float]:
        """``_weights`` as if the ``skip`` windows were not there (leave-one-out)."""
        counts, weights = self._counts(path), dict(self._weights(path))
        touched: dict[str, dict[str, float]] = {}
        for i in skip:
            feats, found, w = self.windows[i]
            if found is None or path not in found:
                continue
            for f in feats:
                touched.setdefault(f, dict(counts[f]))[found[path]] -= w
        for f, c in touched.items():
            purity = _purity({label: n for label, n in c.items() if n > 1e-9})
            if purity is None:
                weights.pop(f, None)
            else:
                weights[f] = purity
        return weights


def _purity(counts: dict[str, float]) -> float | None:
    total = sum(counts.values())
    return (max(counts.values()) / total) ** 2 if total >= 2 else None


def judge(bank: AnchorBank, examples: list[tuple[str, Any]]) -> dict[str, Any]:
    """Leave-one-out on the examples: how often a plan admits the example's own list (``precision``), each
    position's labels among its candidates."""
    planned = right = 0
    every = AnchorBank(bank.anchor, [], bank.k, bank.margin, glossed=bank.glossed,  # one index, own windows skipped
                       phrases=bank.phrases)
    spans = []
    for question, answer in examples:
        start = len(every.windows)
        every.learn(question, answer)
        spans.append(range(start, len(every.windows)))
    for (question, answer), own in zip(examples, spans, strict=True):
        record = every.vote(question, skip=own)
        if "items" not in record:
            continue
        planned += 1
        right += admits(record["items"], values_at(answer, bank.anchor.path), bank.anchor)
    precision = right / planned if planned else 0.0
    return {"narrowed": planned, "right": right, "precision": round(precision, 3),
            "reliable": planned >= 3 and precision >= 0.5}


def admits(items: list[dict[str, Any]], truth: list[Any], anchor: Anchor) -> bool:
    """Whether a plan admits a list (the truth as found at the anchor's path)."""
    actual = truth[0] if truth and isinstance(truth[0], list) else []
    if not sum(not i.get("optional") for i in items) <= len(actual) <= len(items):
        return False
    for plan, item in zip(items, actual, strict=False):
        if not isinstance(item, dict) or values_at(item, anchor.value) != [plan["value"]]:
            return False
        for path, allowed in plan.get("candidates", plan["labels"]).items():
            found = [str(v) for v in values_at(item, tuple(path.split("/")))]
            if allowed and not (len(found) == 1 and found[0] in allowed):
                return False
    return True


def gloss_windows(anchor: Anchor, schema: dict[str, Any], rules: list[str]) -> list[tuple[frozenset[str],
                                                                                            dict[Path, str], float]]:
    """Each gloss of an item label (glosses.py: "lte for at most, up to") as two small item windows, its words
    on the left of a number and on its right, at GLOSS_WINDOW weight: they label a mention whose words no
    example has, and weigh little where examples are near."""
    out = []
    for path in anchor.labels:
        full = anchor.path + ("*",) + path
        labels = [v for node in schema_nodes(schema, full) for v in enum_values(node) if isinstance(v, str)]
        for label, clauses in label_glosses(schema, [full], {full: labels}, rules).get(full, {}).items():
            for clause in clauses:
                words = [_token(w) for w in _WORD.findall(clause) if w.lower() != label.lower()]
                if words:
                    out.append((frozenset({f"L:{w}" for w in words[-WINDOW:]} | {f"L1:{words[-1]}"}), {path: label},
                                GLOSS_WINDOW))
                    out.append((frozenset({f"R:{w}" for w in words[:WINDOW]} | {f"R1:{words[0]}"}), {path: label},
                                GLOSS_WINDOW))
    return out


def learnt_anchors(schema: dict[str, Any], spec: Any, pairs: list[tuple[str, Any]],
                   rules: list[str] = ()) -> list[AnchorBank]:
    """A domain's anchored lists, each learnt from its examples (``(request body, answer)``) and the glosses of
    its labels, and judged on them."""
    numbers = [p for p, g in spec.ground.items() if g.source == "numbers" and p not in spec.units]
    banks = [AnchorBank(a) for a in find_anchors(schema, numbers)]
    for bank in banks:
        bank.glossed = gloss_windows(bank.anchor, schema, list(rules))
    for bank in banks:
        for question, answer in pairs:
            bank.learn(question, answer)
        bank.phrases = item_phrases(bank, schema, list(rules))
        bank.judged = judge(bank, pairs[:JUDGED_EXAMPLES])
    return banks


def item_phrases(bank: AnchorBank, schema: dict[str, Any], rules: list[str]) -> dict[Path, PhraseRule]:
    """Per item label with glosses, its phrase rule judged on the numbers the bank learnt."""
    out = {}
    paths = {path: bank.anchor.path + ("*",) + path for path in bank.anchor.labels}
    labels = {path: [v for node in schema_nodes(schema, full) for v in enum_values(node) if isinstance(v, str)]
              for path, full in paths.items()}
    every = {str(v).lower() for found in labels.values() for v in found}
    for path, full in paths.items():
        glosses = label_glosses(schema, [full], {full: labels[path]}, rules).get(full, {})
        candidates = gloss_phrases(glosses, every)
        candidates |= bound_phrases(candidates)  # core bound words, where the glosses name both bounds
        if candidates:
            spots = [(q, m.start, m.end, found[path]) for q, m, found in bank.spots if path in found]
            out[path] = learn_phrase_rule(candidates, spots)
    return out


def describe(vote: dict[str, Any]) -> str:
    """An anchored list's plan in one line: each position's number and admitted labels (for --explain and the
    replay report)."""
    def one(item: dict[str, Any]) -> str:
        said = item.get("phrases", {})
        labels = ", ".join(f"{k} {'|'.join(v)}" + (f" ({said[k]!r})" if k in said else "")
                           for k, v in item["labels"].items() if v)
        return f"{item['value']}{' (optional)' if item.get('optional') else ''}{': ' + labels if labels else ''}"

    return "one item per number: " + ("; ".join(one(i) for i in vote["items"]) or "no item")
