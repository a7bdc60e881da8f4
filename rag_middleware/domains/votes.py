"""Label votes: the nearest curated examples and reviewed answers vote on a field's value.

Each neighbour's weight is ``exp((similarity - best) / temperature)`` times its trust: curated examples 1,
reviewed answers ``reviewed_weight``, and a reviewed answer to a near-identical question
``near_identical_weight``. The values holding ``margin`` of the weight together (the winner alone when it
does; at most ``max_labels``) are what the grammar admits. A vote is recorded whole (scores, voters, the
decision), so ``--explain`` and the replay report can show why a value was chosen.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .paths import Path, values_at
from .spec import VoteSpec

__all__ = ["Neighbour", "field_votes", "REVIEWED_STATUSES"]

REVIEWED_STATUSES = ("approved",)  # approved and edited answers (an edit is stored approved)


@dataclass(frozen=True)
class Neighbour:
    id: str
    similarity: float
    answer: Any  # parsed answer
    trust: float  # 1 for curated, more for reviewed
    reviewed: bool = False


def _label(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return json.dumps(value)
    return None


def parse_answer(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def field_votes(neighbours: list[Neighbour], specs: dict[Path, VoteSpec]) -> list[dict[str, Any]]:
    """One vote record per (non per-clause) voted path."""
    out: list[dict[str, Any]] = []
    ranked = sorted(neighbours, key=lambda n: -n.similarity)
    for path, spec in specs.items():
        if spec.per_clause:
            continue
        shown = "/" + "/".join(path)
        voters = []
        originals: dict[str, Any] = {}
        for n in ranked:
            if n.similarity < spec.min_similarity:
                break
            found = [v for v in values_at(n.answer, path) if _label(v) is not None] if n.answer is not None else []
            if len(found) == 1:
                originals[_label(found[0])] = found[0]  # type: ignore[index]
                voters.append((n, _label(found[0])))
            if len(voters) >= spec.k:
                break
        record: dict[str, Any] = {"path": shown, "allowed": [], "scores": {}, "voters": [], "confident": False}
        if not voters:
            record["reason"] = "no neighbour close enough"
            out.append(record)
            continue
        best = voters[0][0].similarity
        scores: dict[str, float] = {}
        for n, label in voters:
            weight = math.exp((n.similarity - best) / spec.temperature) * n.trust
            scores[label] = scores.get(label, 0.0) + weight
            record["voters"].append({"id": n.id, "value": label, "similarity": round(n.similarity, 4),
                                     "weight": round(weight, 4), "reviewed": n.reviewed})
        total = sum(scores.values())
        ordered = sorted(scores.items(), key=lambda kv: -kv[1])
        record["scores"] = {k: round(v / total, 4) for k, v in ordered}
        held = 0.0
        allowed: list[str] = []
        for label, score in ordered[: spec.max_labels]:
            allowed.append(label)
            held += score / total
            if held >= spec.margin:
                break
        if held >= spec.margin:
            record["allowed"] = [originals[a] for a in allowed]
            record["confident"] = len(allowed) == 1
        else:
            record["reason"] = f"no {spec.max_labels} values hold {spec.margin:.0%} of the vote"
        out.append(record)
    return out


def margin_of(record: dict[str, Any]) -> float:
    """How far the winner is ahead of the runner-up, in vote share (1.0: unanimous; 0: a tie or no vote)."""
    scores = list(record.get("scores", {}).values())
    if not scores:
        return 0.0
    return scores[0] - (scores[1] if len(scores) > 1 else 0.0)
