"""Gloss phrases before a grounded list item's value decide the item's other labels: "excluding host pay-01"
is ``neq``, "other than /robots.txt" ``neq``, "over 500 ms" ``gt``.

phrases.py does this for the numbers of anchored lists (anchors.py). An item of an ``x-ground`` union (a
number, a path or a word, each with an operator beside it) gets the same from here:

- per other enum key of the item's shapes (its ``op``), the gloss phrases of that key's labels
  (phrases.gloss_phrases), where a gloss's alternatives ("except or excluding") are also read one by one and
  a trailing "it" (the value itself: "neq for excluding it") is dropped;
- a phrase is looked for right before the value only (a word or a path has no "N or more"; "/api/v2/orders
  over the last day" is no ``gt``), past the words that may stand between it and the value: the words naming
  the value's kind (named_values: "host" of "excluding host pay-01") and the words of the item's other labels
  ("status code" of ``status_code``);
- each key's phrases are judged as the anchors' are, leave-one-out on the examples' values of every shape
  together; only a rule right PHRASE_RELIABLE of at least PHRASE_MIN times decides (phrases.PhraseRule).

In a request, a value every mention of which a phrase decides is admitted only with that label: its shape
splits into a branch per decided label, holding only its values, and one for the rest.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from . import grounding
from .annotations import Annotated, own_objects
from .glosses import label_glosses
from .paths import Path, last_star, schema_nodes
from .phrases import PhraseRule, gloss_phrases, learn_phrase_rule
from .request_words import Text, spread_to_joined, words_of
from .votes import STOP_WORDS

__all__ = ["ValuePhrases", "inflections", "learn_value_phrases", "phrase_values"]

_ALTERNATIVE = re.compile(r"\s+or\s+")
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class ValuePhrases:
    """For one list's grounded items: the ``key`` whose label a phrase before the item's ``value`` decides."""

    key: str
    value: str
    rule: PhraseRule
    skip: frozenset[str]  # words between the phrase and the value: a naming word, a label's own words

    def decide(self, body: str, value: Any, text: Text | None = None) -> tuple[str, str] | None:
        """(label, phrase) that every mention of ``value`` in ``body`` agrees on, or None."""
        spans = _spans(text or Text(body), value)
        said = {self.rule.decide(body[:end], self._before(body, start), end) for start, end in spans}
        return said.pop() if len(said) == 1 and None not in said else None

    def _before(self, body: str, start: int) -> int:
        """Where the value's phrase must end: before the skipped words right before ``start``."""
        while True:
            match = re.search(r"([a-z]+)\W*$", body[:start].lower())
            if match is None or match.group(1) not in self.skip:
                return start
            start = match.start()


def _spans(text: Text, value: Any) -> list[tuple[int, int]]:
    """The character spans of ``value`` in the request: a word value's tokens, a number as written."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [(m.start(), m.end()) for m in grounding.number_matches(text.body) if grounding.number_of(m) == value]
    return [(text.tokens[i][1], text.tokens[j - 1][2]) for i, j in text.spans(str(value))]


def inflections(word: str) -> list[str]:
    """A verb written in the third person ("contains", "mentions", "matches") and its other forms ("contain",
    "containing", "contained"); nothing for any other word."""
    if not (len(word) >= 5 and word.isalpha() and word.endswith("s") and not word.endswith(("ss", "us", "is"))):
        return []
    base = word[:-2] if word.endswith(("ches", "shes", "xes", "zes", "sses")) else word[:-1]
    stem = base[:-1] if base.endswith("e") else base
    return [base, stem + "ing", stem + "ed" if not base.endswith("e") else base + "d"]


def _candidates(glosses: dict[str, list[str]], labels: set[str]) -> dict[str, str]:
    """Phrase -> label: the glosses' phrases, their alternatives one by one, a verb's other forms, and a label
    that is itself such a verb ("contains": "containing /health")."""
    alternatives = {label: [part for clause in clauses for part in [clause, *_ALTERNATIVE.split(clause)]]
                    for label, clauses in glosses.items()}
    found = gloss_phrases(alternatives, labels)
    found.update({label: label for label in labels if inflections(label)})
    out: dict[str, str] = {}
    for phrase, label in found.items():
        phrase = re.sub(r"\s+it$", "", phrase)
        for form in [phrase, *inflections(phrase)]:
            if form and out.setdefault(form, label) != label:
                out[form] = ""
    return {p: label for p, label in out.items() if label}


def _keys(items: list[Annotated]) -> dict[str, set[str]]:
    """Per other key of the items' shapes holding a string enum (two labels or more), every label."""
    keys: dict[str, set[str]] = {}
    for item in items:
        for key, node in ((item.holder or {}).get("properties") or {}).items():
            enum = node.get("enum") if isinstance(node, dict) else None
            if key != item.path[-1] and isinstance(enum, list) and all(isinstance(v, str) for v in enum):
                keys.setdefault(key, set()).update(enum)
    return {k: labels for k, labels in keys.items() if len(labels) > 1}


def learn_value_phrases(schema: dict[str, Any], found: list[Annotated], pairs: list[tuple[str, Any]],
                        rules: list[str], named: dict[Path, Any]) -> dict[Path, list[ValuePhrases]]:
    """Per list of annotated items (``found``), the phrase rules of its items' keys, judged on ``pairs``
    (request body, answer); ``named``: the lists' naming words (named_values.learn_named)."""
    lists: dict[Path, list[Annotated]] = {}
    for item in found:
        if item.holder is not None and item.union is not None and "*" in item.path:
            lists.setdefault(item.path, []).append(item)
    out: dict[Path, list[ValuePhrases]] = {}
    for path, items in lists.items():
        keys = _keys(items)
        bank = named.get(path)
        naming = {w[2:] for w in (bank.names if bank is not None else {}) if w.startswith("L:")} | {"the", "a", "an"}
        objects = [[o for per in row for o in per] for row in zip(
            *[own_objects([i], [a for _, a in pairs]) for i in items], strict=True)]
        for key, labels in sorted(keys.items()):
            full = path[:last_star(path) + 1] + (key,)
            glosses = label_glosses(schema, [full], {full: sorted(labels)}, rules).get(full, {})
            candidates = _candidates(glosses, {label.lower() for label in labels})
            if not candidates:
                continue
            words = {w for other, found in keys.items() if other != key for label in found
                     for w in _WORD.findall(label.lower())}
            # function words that are part of no phrase are passed over too: "not from the stripe-gateway
            # service" is the phrase "not"; "more than", "over", "other than" keep their words
            phrased = {w for phrase in candidates for w in _WORD.findall(phrase)}
            skip = frozenset(naming | words | {w + "s" for w in words} | (STOP_WORDS - phrased))
            probe = ValuePhrases(key, path[-1], PhraseRule(candidates), skip)
            spots = []
            for (body, _), row in zip(pairs, objects, strict=True):
                text = Text(body)
                for obj in row:
                    if obj.get(key) in labels:
                        spots += [(body[:e], probe._before(body, s), e, obj[key])  # before the value only
                                  for s, e in _spans(text, obj.get(path[-1]))]
            out.setdefault(path, []).append(ValuePhrases(key, path[-1], learn_phrase_rule(candidates, spots), skip))
    return out


def phrase_values(schema: dict[str, Any], body: str, phrased: dict[Path, list[ValuePhrases]],
                  notes: list[str], numbered: dict[Path, Any] | None = None) -> dict[Path, list[Any]]:
    """Split each grounded item shape of ``schema`` (in place) by the labels reliable phrases decide for its
    values in ``body``, and by the labels the label words beside its numbers decide (``numbered``:
    number_labels.NumberLabels). Returns, per value path, the values so decided (each surely an item)."""
    text = Text(body)
    decided: dict[Path, list[Any]] = {}
    for path in dict.fromkeys([*phrased, *(numbered or {})]):
        said: set[str] = set()
        deciders = [r for r in phrased.get(path, []) if r.rule.reliable]
        deciders += [(numbered or {})[path]] if path in (numbered or {}) else []
        for vp in deciders:
            for node in schema_nodes(schema, path[:last_star(path) + 1]):
                union = node.get("anyOf") if isinstance(node.get("anyOf"), list) else None
                for branch in list(union if union is not None else [node]):
                    said |= _split(vp, branch, union, body, text, notes, path, decided.setdefault(path, []))
        if said:  # the words of a phrase that decided ("other than") are no value ("other"), nor with its value
            _unsay(schema, path, {w for phrase in said for w in phrase.split()}, decided.get(path, []), notes)
    return {path: values for path, values in decided.items() if values}


def _unsay(schema: dict[str, Any], path: Path, words: set[str], decided: list[Any], notes: list[str]) -> None:
    """Leave out of ``schema``'s values at ``path`` those of a deciding phrase's ``words`` only, and those that
    are a ``decided`` value with such words ("except eu-central-1")."""
    own = {words_of(str(v)) for v in decided}

    def phrased(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        tokens = words_of(value)
        return set(tokens) <= words or (len(tokens) > 1 and tuple(t for t in tokens if t not in words) in own
                                        and tokens not in own)

    for items in schema_nodes(schema, path[:last_star(path) + 1]):
        union = items.get("anyOf") if isinstance(items.get("anyOf"), list) else [items]
        for branch in list(union):
            node = ((branch.get("properties") or {}).get(path[-1]) if isinstance(branch, dict) else None) or {}
            enum = node.get("enum")
            if not (isinstance(enum, list) and any(isinstance(v, str) for v in enum)):
                continue
            kept = [v for v in enum if not phrased(v)]
            if len(kept) == len(enum) or not (kept or len(union) > 1):
                continue
            notes.append(f"/{'/'.join(path)}: {[v for v in enum if v not in kept][:6]} left out: the words of "
                         "a phrase that decided an item's label")
            if kept:
                node["enum"] = kept
            else:  # nothing else in that shape: the shape goes
                union.remove(branch)


def _split(vp: Any, branch: Any, union: list[Any] | None, body: str, text: Text, notes: list[str],
           path: Path, sure: list[Any]) -> set[str]:
    """Split ``branch`` by the labels decided for its values (added to ``sure``); the phrases that decided
    them."""
    props = branch.get("properties") if isinstance(branch, dict) else None
    values, labels = ((props or {}).get(vp.value) or {}).get("enum"), ((props or {}).get(vp.key) or {}).get("enum")
    if not (isinstance(values, list) and isinstance(labels, list) and len(labels) > 1):
        return set()
    out, said = {}, {}
    for value in values:
        found = vp.decide(body, value, text)
        if found is not None and found[0] in labels:
            out[value] = found[0]
            said.setdefault(found[0], found[1])
    if not out:
        return set()
    # a value a list joins to a decided one takes its label: "excluding host pay-01 and pay-04"
    spread_to_joined(text, {v: text.spans(str(v)) for v in values}, out)
    decided: dict[str, list[Any]] = {}
    for value in values:
        if value in out:
            decided.setdefault(out[value], []).append(value)
    if union is None and (len(decided) > 1 or len(decided[next(iter(decided))]) < len(values)):
        return set()  # one shape, no union to split into: only a label every value takes
    rest = [v for v in values if not any(v in vs for vs in decided.values())]
    sure += [v for vs in decided.values() for v in vs if v not in sure]
    copies = []
    for label, vs in decided.items():
        copied = copy.deepcopy(branch)
        copied["properties"][vp.key] = {**props[vp.key], "enum": [label]}
        copied["properties"][vp.value] = {**props[vp.value], "enum": vs}
        copies.append(copied)
        notes.append(f"/{'/'.join(path[:-1])}/{vp.key}: {label} for {vs[:6]} (the request writes "
                     f"{said[label]!r} beside it)")
    if union is None:
        branch["properties"][vp.key] = copies[0]["properties"][vp.key]
        return set(said.values())
    if rest:
        props[vp.value] = {**props[vp.value], "enum": rest}
        copies.append(branch)
    at = next(i for i, b in enumerate(union) if b is branch)
    union[at:at + 1] = copies
    return set(said.values())
