"""Necessary traits: what every curated example of a label has, so that a request without it is not voted that label.

A label can be written in one form only: each example email closes with a sign-off, each chat message is one
line, each agent's note of a call opens the way the field's declared rule for "phone" reads. Neighbours close in
topic do not see the form, and vote "email" for a one-line chat message. A label's necessary traits are learnt
from the examples that carry it (at least NECESSARY_MIN):

- a form term (message_form.py) that all of them have, where that many having it by chance is unlikely
  (its share among all the field's examples to the power of their number is at most NECESSARY_CHANCE);
- ``RULED``: the field's declared rules give that label on every one of them, so where none fires it is none;
  only on a field written wholly by its form, where every label has a necessary trait. Where some label has
  none, the rules may list only some of the ways to theirs (ticket_routing's urgent priority: the rules name
  smoke and fraud, the examples of a takeover they do not name are urgent too).

The vote then leaves out the labels whose traits the request lacks (votes.py: ``lacking``), unless
that would leave nothing to vote on. The traits are learnt with the field's judgement (judgement.reliability),
from the same examples, and shown in it as ``necessary``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .message_form import form_terms
from .paths import Path
from .spec import VoteSpec
from .rule_match import decide_by_rule
from .votes import RULED, label_of, labels_at

__all__ = ["NECESSARY_CHANCE", "NECESSARY_MIN", "necessary_traits"]

NECESSARY_MIN = 4  # examples of a label before what they all share is taken as necessary
NECESSARY_CHANCE = 0.01  # how unlikely all of them sharing a form term by chance must be


def necessary_traits(texts: list[str], answers: list[Any], specs: dict[Path, VoteSpec]
                     ) -> dict[Path, dict[str, list[str]]]:
    """``{path: {label: [trait, ...]}}`` for the voted fields' labels that have necessary traits."""
    forms = [form_terms(text) for text in texts]
    out: dict[Path, dict[str, list[str]]] = {}
    for path, spec in specs.items():
        if spec.per_clause or spec.presence:
            continue
        groups: dict[str, list[int]] = defaultdict(list)
        for i, answer in enumerate(answers):
            found = labels_at(answer, path) if answer is not None else []
            if len(found) == 1:
                groups[found[0]].append(i)
        labelled = sum(len(ids) for ids in groups.values())
        if len(groups) < 2:
            continue
        traits: dict[str, set[str]] = {}
        for label, ids in groups.items():
            if len(ids) < NECESSARY_MIN:
                continue
            shared = set.intersection(*(forms[i] for i in ids))
            traits[label] = {t for t in shared
                             if (sum(t in forms[i] for i in sum(groups.values(), [])) / labelled) ** len(ids)
                             <= NECESSARY_CHANCE}
            ruled = [decide_by_rule(spec, texts[i], {}) for i in ids] if spec.rules else []
            if ruled and all(r is not None and label_of(r[1]) == label for r in ruled):
                traits[label].add(RULED)
        if not all(traits.get(label) for label in groups):  # rules may list only some ways to a label
            traits = {label: found - {RULED} for label, found in traits.items()}
        if any(traits.values()):
            out[path] = {label: sorted(found) for label, found in traits.items() if found}
    return out
