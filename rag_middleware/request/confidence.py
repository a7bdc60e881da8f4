"""How sure an answer is, from what the pipeline saw while making it, in [0, 1].

- **token probability**, when the backend returns log-probabilities (both of ours do): per top-level field,
  the mean probability the model gave the tokens that write its value (keys and JSON punctuation, which
  the grammar writes, are left out), averaged over the fields (``value_probability``);
- **agreement**: for each voted field, the share of the neighbours' vote (curated examples and reviewed
  answers, weighted by similarity and trust) that the answer's value holds: 1 when every close neighbour
  says the same, 0 when none does;
- **familiarity**: the similarity of the nearest example or reviewed answer, mapped from [0.3, 0.9] to [0, 1];
- **attempts**: 1 on the first try, less for each repair turn the answer needed, 0 when none validated.

confidence = attempts x token probability when the backend gave one, else attempts x mean(agreement,
familiarity). All parts are recorded and shown. Measured on the claims_intake and listing_search dev sets
(benchmarks/RESULTS.md, 2026-12-02): field accuracy rose with every quartile of the token probability on
both; with agreement or familiarity mixed in it did not (familiarity fell as accuracy rose: a question close
to an example is often one whose small difference the model misses). ``review --order confidence`` shows the
least certain first.
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
    if token_probability is not None:
        evidence = [token_probability]
    else:
        evidence = [v for k, v in parts.items() if k in ("agreement", "familiarity")]
    score = parts["attempts"] * (sum(evidence) / len(evidence) if evidence else 0.5)
    return {"score": round(score, 4), **parts}


def _value_owners(text: str) -> tuple[list[str | None], list[str]]:
    """Per character of a JSON object's text, the top-level key whose value it writes (None for keys, quotes
    and punctuation)."""
    owners: list[str | None] = [None] * len(text)
    keys: list[str] = []  # the top-level keys, in order
    depth, current, i = 0, None, 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            j, escaped = i + 1, False
            while j < len(text) and (escaped or text[j] != '"'):
                escaped = not escaped and text[j] == "\\"
                j += 1
            if text[j + 1 :].lstrip().startswith(":"):  # a key
                if depth == 1:
                    current = text[i + 1 : j]
                    keys.append(current)
            else:  # a string value: its characters, not its quotes
                owners[i + 1 : min(j, len(text))] = [current] * (min(j, len(text)) - i - 1)
            i = j + 1
            continue
        depth += (ch in "{[") - (ch in "}]")
        if not (ch.isspace() or ch in "{}[],:"):
            owners[i] = current
        i += 1
    return owners, keys


def value_probability(logprobs: list[tuple[str, float]] | None) -> float | None:
    """The mean over top-level fields of the mean probability of the tokens that write each field's value (a
    field without a token of its own, an empty list, counts 0.5: unknown); None without log-probabilities or
    without a value token."""
    if not logprobs:
        return None
    owners, keys = _value_owners("".join(token for token, _ in logprobs))
    per_field: dict[str, list[float]] = {}
    at = 0
    for token, logprob in logprobs:
        for key in {o for o in owners[at : at + len(token)] if o is not None}:
            per_field.setdefault(key, []).append(math.exp(logprob))
        at += len(token)
    if not per_field:
        return None
    means = [sum(found) / len(found) if (found := per_field.get(key)) else 0.5 for key in dict.fromkeys(keys)]
    return sum(means) / len(means)
