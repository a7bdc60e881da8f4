"""How sure an answer is, from what the pipeline saw while making it, in [0, 1].

- **agreement**: for each voted field, the share of the neighbours' vote (curated examples and reviewed
  answers, weighted by similarity and trust) that the answer's value holds: 1 when every close neighbour
  says the same, 0 when none does;
- **familiarity**: the similarity of the nearest example or reviewed answer (a question unlike anything
  seen is a guess), mapped from [0.3, 0.9] to [0, 1];
- **attempts**: 1 on the first try, less for each repair turn the answer needed, 0 when none validated;
- **log-probabilities**, when a backend returns them: the mean token probability (none of ours does yet).

confidence = attempts x mean(agreement, familiarity[, token probability]). Recorded on every interaction;
``review --order confidence`` shows the least certain first.
"""

from __future__ import annotations

from typing import Any

from ..domains.votes import labels_at

__all__ = ["confidence"]

ATTEMPT_FACTOR = {1: 1.0, 2: 0.7, 3: 0.5}


def agreement(output: Any, votes: list[dict[str, Any]]) -> float | None:
    shares = []
    for vote in votes:
        if not vote.get("scores"):
            continue
        path = tuple(vote["path"].strip("/").split("/"))
        found = labels_at(output, path, bool(vote.get("presence")))
        label = found[0] if len(found) == 1 else None
        shares.append(float(vote["scores"].get(label, 0.0)) if label is not None else 0.0)
    return sum(shares) / len(shares) if shares else None


def familiarity(similarities: list[float]) -> float | None:
    if not similarities:
        return None
    return min(1.0, max(0.0, (max(similarities) - 0.3) / 0.6))


def confidence(*, valid: bool, output: Any, attempts: int, votes: list[dict[str, Any]],
               similarities: list[float], token_probability: float | None = None) -> dict[str, Any]:
    """{"score", and each part} for one answer."""
    if not valid:
        return {"score": 0.0, "attempts": 0.0}
    parts: dict[str, float] = {"attempts": ATTEMPT_FACTOR.get(attempts, 0.3)}
    for name, value in (("agreement", agreement(output, votes)), ("familiarity", familiarity(similarities)),
                        ("token_probability", token_probability)):
        if value is not None:
            parts[name] = round(value, 4)
    evidence = [v for k, v in parts.items() if k != "attempts"]
    score = parts["attempts"] * (sum(evidence) / len(evidence) if evidence else 0.5)
    return {"score": round(score, 4), **parts}
