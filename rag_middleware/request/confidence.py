"""How sure an answer is, from what the pipeline saw while making it, in [0, 1].

- **token probability**, when the backend returns log-probabilities (both of ours do): per top-level field,
  the mean probability the model gave the tokens that write its value (keys and JSON punctuation, which
  the grammar writes, are left out), averaged over the fields (``value_probability``);
- **agreement**: for each voted field, the share of the neighbours' vote (curated examples and reviewed
  answers, weighted by similarity and trust) that the answer's value holds: 1 when every close neighbour
  says the same, 0 when none does;
- **familiarity**: the similarity of the nearest example or reviewed answer, mapped from [0.3, 0.9] to [0, 1];
- **attempts**: 1 on the first try, less for each repair turn the answer needed, 0 when none validated.

- **settled fields**: the share of the top-level fields the request's grammar admitted one value for (a rule,
  a named label, gloss words, a decided vote, grounding); a field left to the model is one whose vote record
  admitted no single value (``left_open``).

confidence = attempts x settled probability when the backend gave log-probabilities, else attempts x
mean(agreement, familiarity). The settled probability is the token probability with each settled field
counted as SETTLED plus the rest of its own probability: on our dev and fresh sets a settled field was right
0.88-0.96 of the time whatever the model's probability of it, a field left open 0.50-0.67 of the time
(benchmarks/RESULTS.md, 2026-12-03), so how many fields were left open says more than how sure the model
sounded. All parts are recorded and shown; ``review --order confidence`` shows the least certain first.
"""

from __future__ import annotations

import math
from typing import Any

from ..domains.paths import parse_path
from ..domains.votes import labels_at

__all__ = ["confidence", "left_open", "value_probability"]

ATTEMPT_FACTOR = {1: 1.0, 2: 0.7, 3: 0.5}
SETTLED = 0.9  # a settled field's floor in the settled probability (its token probability adds the rest)


def left_open(votes: list[dict[str, Any]]) -> set[str]:
    """The top-level fields the grammar left to the model: voted on, and no vote record of the field itself
    admitted a single value (open, or several values admitted)."""
    voted: dict[str, bool] = {}
    for vote in votes:
        path = parse_path(vote["path"])
        if len(path) == 1:
            voted[path[0]] = voted.get(path[0], False) or len(vote.get("allowed") or []) == 1
    return {field for field, settled in voted.items() if not settled}


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
               similarities: list[float], token_probability: float | None = None,
               logprobs: list[tuple[str, float]] | None = None) -> dict[str, Any]:
    """{"score", and each part} for one answer. ``logprobs``: the answer's tokens, read with the votes (the
    settled probability); ``token_probability``: a probability already read, used as it is."""
    if not valid:
        return {"score": 0.0, "attempts": 0.0}
    parts: dict[str, float] = {"attempts": ATTEMPT_FACTOR.get(attempts, 0.3)}
    settled = None
    if logprobs is not None:
        unsettled = left_open(votes)
        token_probability = value_probability(logprobs)
        settled = value_probability(logprobs, unsettled)
        if isinstance(output, dict) and output:
            parts["settled_fields"] = round(1 - len(unsettled & output.keys()) / len(output), 4)
    for name, value in (("agreement", agreement(output, votes)), ("familiarity", familiarity(similarities)),
                        ("token_probability", token_probability), ("settled_probability", settled)):
        if value is not None:
            parts[name] = round(value, 4)
    if token_probability is not None:
        evidence = [settled if settled is not None else token_probability]
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


def value_probability(logprobs: list[tuple[str, float]] | None, open_fields: set[str] | None = None
                      ) -> float | None:
    """The mean over top-level fields of the mean probability of the tokens that write each field's value (a
    field without a token of its own, an empty list, counts 0.5: unknown); None without log-probabilities or
    without a value token. With ``open_fields`` (``left_open``), the settled probability: every other field
    counts SETTLED plus (1 - SETTLED) times its own probability."""
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
    means = {key: sum(found) / len(found) if (found := per_field.get(key)) else 0.5 for key in dict.fromkeys(keys)}
    if open_fields is not None:
        means = {key: p if key in open_fields else SETTLED + (1 - SETTLED) * p for key, p in means.items()}
    return sum(means.values()) / len(means)
