"""How sure an answer is, from what the pipeline saw while making it, in [0, 1].

- **agreement**: for each voted field, the share of the neighbours' vote (curated examples and reviewed
  answers, weighted by similarity and trust) that the answer's value holds: 1 when every close neighbour
  says the same, 0 when none does;
- **familiarity**: the similarity of the nearest example or reviewed answer (a question unlike anything
  seen is a guess), mapped from [0.3, 0.9] to [0, 1];
- **attempts**: 1 on the first try, less for each repair turn the answer needed, 0 when none validated;
- **token probability**, when the backend returns log-probabilities (both of ours do): the mean probability
  the model gave the tokens of the answer's values (keys and JSON punctuation, which the grammar writes, are
  left out; ``value_probability``).

confidence = attempts x mean(agreement, familiarity[, token probability]). Recorded on every interaction;
``review --order confidence`` shows the least certain first.
"""

from __future__ import annotations

import math
from typing import Any

from ..domains.votes import labels_at

__all__ = ["confidence", "value_probability"]

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


def _value_chars(text: str) -> list[bool]:
    """Per character of a JSON text, whether it belongs to a value (not a key, quote or punctuation)."""
    marks = [False] * len(text)
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            j, escaped = i + 1, False
            while j < len(text) and (escaped or text[j] != '"'):
                escaped = not escaped and text[j] == "\\"
                j += 1
            rest = text[j + 1 :].lstrip()
            if not rest.startswith(":"):  # a string value: its characters, not its quotes
                for k in range(i + 1, min(j, len(text))):
                    marks[k] = True
            i = j + 1
            continue
        marks[i] = not (ch.isspace() or ch in "{}[],:")
        i += 1
    return marks


def value_probability(logprobs: list[tuple[str, float]] | None) -> float | None:
    """The mean probability of the tokens that write the answer's values; None without log-probabilities or
    without a value token."""
    if not logprobs:
        return None
    marks = _value_chars("".join(token for token, _ in logprobs))
    probabilities, at = [], 0
    for token, logprob in logprobs:
        if any(marks[at : at + len(token)]):
            probabilities.append(math.exp(logprob))
        at += len(token)
    return sum(probabilities) / len(probabilities) if probabilities else None
