"""Implied votes: a voted field's label that the examples always pair with a sibling field's label ("count" has
no measured field: ``{"func": "count", "field": null}``).

Each voted field is voted on by its own neighbours, and the neighbours of "how many 503s" that have an
aggregate measure a field (response_bytes, latency_ms); the vote on ``field`` does not know that ``func`` is
``count``. implied_labels.py does this for a list's items; here it is done for the voted fields of one object:
per pair of voted fields of one nested object (A, B; not a record's top-level fields, which are separate
traits), a label ``a`` of A implies ``b`` of B when at least IMPLY_MIN of the examples with ``a`` have ``b``
and at least IMPLY_SHARE of them do (learnt with the fields' judgement, from the same examples, reviewed
answers included). A null implies nothing: a vote gives it where the request names nothing.

Where B's labels are so lopsided that the pairs could be chance ("avg" with no group in 3 of 3, where half of
all groups are none), nothing is learnt: the pairs must be at most IMPLY_CHANCE likely by chance.

In a request, once the votes are gated, a field whose vote admits only ``a`` sets B's vote to admit only ``b``,
unless B's own vote is surer than A's (a clear winner against a split vote), or the request's words decided it
(a rule, a label it names, gloss words, a quiet default: "avg latency per endpoint" names its group), or two
implications disagree; the record says which field implied it.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from .implied_labels import IMPLY_MIN, IMPLY_SHARE
from .paths import Path
from .spec import VoteSpec
from .votes import ABSENT, label_of, labels_at

__all__ = ["IMPLY_CHANCE", "implied_votes", "learn_implications"]

IMPLY_CHANCE = 0.1  # how unlikely the pairs must be by chance, given how often B has that label at all


def learn_implications(answers: list[Any], specs: dict[Path, VoteSpec]) -> dict[Path, dict[str, list[Any]]]:
    """``{A: {a: [B shown, b, paired, seen], ...}}`` for the voted fields' labels that imply a sibling's."""
    # the keys of one nested object say one thing together (an aggregate's function and measure); a record's own
    # fields are separate traits, whose pairings in a few dozen examples are chance (priority high, negative)
    fields = [p for p, s in specs.items() if not s.per_clause and not s.presence and "*" not in p and len(p) > 1]
    counts: dict[tuple[Path, str, Path], Counter[str]] = {}
    for answer in answers:
        found = {p: labels_at(answer, p) for p in fields}
        for a_path, own in found.items():
            for b_path, other in found.items():
                # a null is no value: left null where the request names none, it says nothing of the siblings
                if (a_path != b_path and a_path[:-1] == b_path[:-1] and len(own) == 1 and len(other) == 1
                        and own[0] != ABSENT):
                    counts.setdefault((a_path, own[0], b_path), Counter())[other[0]] += 1
    everywhere: dict[tuple[Path, Path], Counter[str]] = {}  # B's labels where A has one
    for (a_path, _, b_path), seen in counts.items():
        everywhere.setdefault((a_path, b_path), Counter()).update(seen)
    out: dict[Path, dict[str, list[Any]]] = {}
    for (a_path, label, b_path), seen in sorted(counts.items()):
        implied, paired = seen.most_common(1)[0]
        total = sum(seen.values())
        base = everywhere[(a_path, b_path)]
        chance = (base[implied] / sum(base.values())) ** paired  # all ``paired`` carrying it at its share of B
        if paired >= IMPLY_MIN and paired >= IMPLY_SHARE * total and chance <= IMPLY_CHANCE:
            out.setdefault(a_path, {})[label] = ["/" + "/".join(b_path), implied, paired, total]
    return out


def _value(label: str) -> Any:
    """The value a vote label stands for ("null" is None, "3" is 3, a string label itself)."""
    try:
        return json.loads(label) if label in ("null", "true", "false") or label.lstrip("-")[:1].isdigit() else label
    except ValueError:
        return label


def _said(vote: dict[str, Any]) -> bool:
    """Whether the request's own words decided a vote: a declared rule, a label it names, gloss words, or the
    quiet default of a field whose examples are null where no word of it is written."""
    return bool(vote.get("rule") or vote.get("mention") or vote.get("gloss") is not None
                or (vote.get("reason") and vote.get("allowed")))


def _top(vote: dict[str, Any]) -> float:
    """How sure a vote is of its value: its winner's share, or 1 where the request's words or a clear winner
    decided it."""
    if _said(vote) or vote.get("decided"):
        return 1.0
    return max((float(s) for s in (vote.get("scores") or {}).values()), default=0.0)


def implied_votes(votes: list[dict[str, Any]], judged: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``votes`` with each field a decided sibling implies (``judged``: per field, its ``implies``) admitting
    only the implied label."""
    wanted: dict[str, set[str]] = {}
    by: dict[str, str] = {}
    sure = {vote["path"]: _top(vote) for vote in votes}
    said = {vote["path"] for vote in votes if _said(vote)}
    for vote in votes:
        allowed = vote.get("allowed") or []
        rules = (judged.get(vote["path"]) or {}).get("implies") or {}
        if len(allowed) == 1 and (label := label_of(allowed[0])) in rules:
            target, implied, paired, seen = rules[label]
            # a surer vote keeps its own, and so does one the request's words decided ("avg latency per endpoint")
            if sure[vote["path"]] >= sure.get(target, 0.0) and target not in said:
                wanted.setdefault(target, set()).add(implied)
                by[target] = f"{vote['path']} {label}: the examples pair it with {implied} ({paired} of {seen})"
    out = []
    for vote in votes:
        labels = wanted.get(vote["path"])
        if labels and len(labels) == 1 and not vote.get("rule"):
            label = next(iter(labels))
            if (vote.get("allowed") or [None, None]) != [_value(label)]:
                vote = {**vote, "allowed": [_value(label)], "confident": True, "implied": by[vote["path"]]}
        out.append(vote)
    return out
