"""Necessary traits: what the examples of a label (nearly) all have, so that a request without it is not voted that
label.

A label can be written in one form only: each example email closes with a sign-off, each chat message is one
line, each agent's note of a call opens the way the field's declared rule for "phone" reads. Neighbours close in
topic do not see the form, and vote "email" for a one-line chat message. A label's necessary traits are learnt
from the examples that carry it (at least NECESSARY_MIN), where NECESSARY_SHARE of them have it:

- a form term (message_form.py), where that many having it by chance is unlikely (its share among all the
  field's examples to the power of their number is at most NECESSARY_CHANCE);
- ``RULED``: the field's declared rules give that label, so where none fires it is none;
  only on a field written wholly by its form, where every label has a necessary trait. Where some label has
  none, the rules may list only some of the ways to theirs (ticket_routing's urgent priority: the rules name
  smoke and fraud, the examples of a takeover they do not name are urgent too).

The vote then leaves out the labels whose traits the request lacks (votes.py: ``lacking``), unless
that would leave nothing to vote on. The traits are learnt with the field's judgement (judgement.reliability),
from the same examples, and shown in it as ``necessary``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from .message_form import form_terms
from .paths import Path
from .spec import VoteSpec
from .rule_match import decide_by_rule
from .votes import RULED, label_of, labels_at

__all__ = ["NECESSARY_CHANCE", "NECESSARY_MIN", "NECESSARY_SHARE", "necessary_traits"]

NECESSARY_MIN = 4  # examples of a label before what they share is taken as necessary
NECESSARY_SHARE = 0.9  # of them, the share that must have it: a reviewed answer or two written otherwise (a
# call note no rule reads) do not unlearn what the rest show
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
            found = labels_at(answer, path)
            if len(found) == 1:
                groups[found[0]].append(i)
        labelled = sum(len(ids) for ids in groups.values())
        if len(groups) < 2:
            continue
        everywhere = Counter(t for ids in groups.values() for i in ids for t in forms[i])
        traits: dict[str, set[str]] = {}
        for label, ids in groups.items():
            if len(ids) < NECESSARY_MIN:
                continue
            held = Counter(t for i in ids for t in forms[i])
            traits[label] = {t for t, n in held.items() if n >= NECESSARY_SHARE * len(ids)
                             and (everywhere[t] / labelled) ** n <= NECESSARY_CHANCE}
            ruled = [decide_by_rule(spec, texts[i], {}) for i in ids] if spec.rules else []
            if ruled and sum(r is not None and label_of(r[1]) == label for r in ruled) >= NECESSARY_SHARE * len(ids):
                traits[label].add(RULED)
        if not all(traits.get(label) for label in groups):  # rules may list only some ways to a label
            traits = {label: found - {RULED} for label, found in traits.items()}
        if any(traits.values()):
            out[path] = {label: sorted(found) for label, found in traits.items() if found}
    return out
