"""Label calibration: a small model leans towards some labels whatever the request says.

Given a grammar that admits several labels of a field, the 270M model answers "auto" for a vase knocked over
in a shop, a stroke in intensive care and a camera ruined on a beach: its first-token probability for "auto"
is high before it has read the request at all. Contextual calibration (Zhao et al., 2021) divides that lean
out. For each top-level label field whose grammar still admits two or more labels, in answer order:

1. the model's next-token probabilities after the prompt and the answer so far, up to the field's value;
2. the same, with the request replaced by a content-free one ("N/A");
3. the ratio of 1 to 2 is how much the request raises each admitted label; times the label's share of the
   field's vote (votes.py: the nearest curated examples and reviewed answers, smoothed so that a label no
   neighbour holds keeps a tenth of an even share), it is the label's posterior, and the best is chosen. The
   vote is the prior the neighbours give and the ratio the evidence the model reads in the request: on
   their own, the ratio follows probability differences of a few hundredths on the labels the model finds
   alike, and the vote cannot read the request.

When a chosen label differs from the answer's, the answer is generated again with those labels fixed (the
grammar admits them alone), so every other field is conditioned on them. A field is left alone when its
labels cannot be told apart by their first token, when the backend cannot give next-token probabilities, or
when its labels are no kinds (glosses.label_kinds: levels, a yes or no, a field with a default label for a
request that says nothing; there the content-free answer is that default, not a lean to divide out). Each
decision is recorded on the attempt (``Attempt.calibration``), so ``--explain`` and the replay report show it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from ..llm import GenerateRequest, LLMBackend, TokenProbe

__all__ = ["CONTENT_FREE", "Calibration", "calibrate", "calibrated", "eligible_fields", "fixed", "label_probabilities"]

CONTENT_FREE = "N/A"
TOP_TOKENS = 20
PRIOR_SMOOTHING = 0.1  # of one vote, spread evenly over the admitted labels


@dataclass(frozen=True)
class Calibration:
    """One field's decision: the model's and the content-free probabilities of each admitted label."""

    field: str
    answered: Any
    chosen: Any
    model: dict[str, float]
    content_free: dict[str, float]
    vote: dict[str, float] | None = None  # the smoothed vote prior over the admitted labels, when there was a vote

    def record(self) -> dict[str, Any]:
        return {"path": "/" + self.field, "answered": self.answered, "chosen": self.chosen,
                "changed": self.chosen != self.answered,
                "model": {k: round(v, 4) for k, v in self.model.items()},
                "content_free": {k: round(v, 4) for k, v in self.content_free.items()},
                **({"vote": {k: round(v, 4) for k, v in self.vote.items()}} if self.vote else {})}


def eligible_fields(schema: dict[str, Any], declared: dict[str, Any], kinds: set[str]) -> dict[str, list[Any]]:
    """Top-level fields (in answer order) whose grammar admits two or more labels of the domain's own: an enum
    of strings declared in the output schema (``declared``: its properties), not values grounded in the
    request, on a field whose labels are kinds (``kinds``: glosses.label_kinds; not levels, not a field with a
    default label, not a yes or no)."""
    out: dict[str, list[Any]] = {}
    for name, node in (schema.get("properties") or {}).items():
        labels = node.get("enum") if isinstance(node, dict) else None
        if not labels or len(labels) < 2 or name not in kinds:
            continue
        own = set((declared.get(name) or {}).get("enum") or [])
        if all(isinstance(v, str) for v in labels) and set(labels) <= own and _distinct_firsts(labels):
            out[name] = list(labels)
    return out


def _distinct_firsts(labels: list[Any]) -> bool:
    """No label is a prefix of another ("high" and "highest" share every first token)."""
    words = [_shown(v) for v in labels]
    return not any(a != b and b.startswith(a) for a in words for b in words)


def _shown(value: Any) -> str:
    return json.dumps(value).strip('"')


def label_probabilities(top: list[tuple[str, float]], labels: list[Any]) -> dict[str, float] | None:
    """Each label's share of the next-token probability: the tokens that begin exactly one label (whitespace
    aside) count for it. A label no listed token begins gets half the least listed probability. None when no
    listed token begins any label (the model wanted something else entirely: nothing to calibrate)."""
    shown = {_shown(v): v for v in labels}
    mass = dict.fromkeys(shown, 0.0)
    for token, logprob in top:
        piece = token.strip()
        owners = [w for w in shown if piece and w.startswith(piece)]
        if len(owners) == 1:
            mass[owners[0]] += math.exp(logprob)
    if not any(mass.values()):
        return None
    floor = min(math.exp(lp) for _, lp in top) / 2
    found = {w: (m if m > 0 else floor) for w, m in mass.items()}
    total = sum(found.values())
    return {w: m / total for w, m in found.items()}


def vote_prior(scores: dict[str, float] | None, labels: list[Any]) -> dict[str, float] | None:
    """The vote's shares of the admitted labels, renormalised and smoothed (``PRIOR_SMOOTHING``); None without a
    vote on the field or when no admitted label holds any of it."""
    shares = {_shown(v): float((scores or {}).get(_shown(v), 0.0)) for v in labels}
    total = sum(shares.values())
    if total <= 0:
        return None
    even = PRIOR_SMOOTHING / len(shares)
    return {w: (s / total + even) / (1 + PRIOR_SMOOTHING) for w, s in shares.items()}


def _content_free(request: GenerateRequest, question: str) -> GenerateRequest | None:
    """The request with the question (its last occurrence) replaced by a content-free one; None when the
    question is not found as written (a template that rewrites it)."""
    if request.prompt is not None:
        at = request.prompt.rfind(question)
        if at < 0:
            return None
        prompt = request.prompt[:at] + CONTENT_FREE + request.prompt[at + len(question):]
        return request.model_copy(update={"prompt": prompt})
    messages = [dict(m) for m in request.messages]
    for message in reversed(messages):
        if message.get("role") == "user":
            at = message.get("content", "").rfind(question)
            if at < 0:
                return None
            message["content"] = message["content"][:at] + CONTENT_FREE + message["content"][at + len(question):]
            return request.model_copy(update={"messages": messages})
    return None


def _continued(request: GenerateRequest, head: str, deadline: float | None) -> GenerateRequest:
    """The request with the answer begun: appended to a flat prompt, or as an assistant turn to continue; its
    timeout what is left of the call's deadline."""
    update: dict[str, Any] = {"options": {**request.options, "temperature": 0.0, "num_predict": 1}, "json_schema": None}
    if deadline is not None:
        update["timeout"] = max(0.1, min(request.timeout or math.inf, deadline - time.perf_counter()))
    if request.prompt is not None:
        return request.model_copy(update={**update, "prompt": request.prompt + head})
    turn = {"role": "assistant", "content": head}
    return request.model_copy(update={**update, "messages": [*request.messages, turn]})


def calibrate(backend: LLMBackend, request: GenerateRequest, question: str, output: dict[str, Any],
              fields: dict[str, list[Any]], votes: dict[str, dict[str, float]] | None = None,
              deadline: float | None = None) -> list[Calibration]:
    """The decisions for ``fields`` (``eligible_fields``) of ``output``, the answer ``request`` produced. Fields
    are taken in the grammar's order, each conditioned on the (calibrated) values before it. ``votes``: per
    field, the label vote's scores (the prior; without one the ratio decides alone). ``deadline`` (a
    ``time.perf_counter()`` instant): no probe starts after it, and each is given what is left; the fields
    not probed by then keep the answer's labels."""
    neutral = _content_free(request, question)
    order = list((request.json_schema or {}).get("properties") or {})
    if not isinstance(backend, TokenProbe) or neutral is None or not fields or not set(order) <= set(output):
        return []
    decisions: list[Calibration] = []
    head = "{"
    chosen = dict(output)
    for name in order:
        key = json.dumps(name) + ":"
        if name in fields and output[name] in fields[name]:
            if deadline is not None and time.perf_counter() >= deadline:
                break
            opening = key + ' "'  # string labels only (eligible_fields)
            seen = backend.next_tokens(_continued(request, head + opening, deadline), TOP_TOKENS)
            empty = backend.next_tokens(_continued(neutral, head + opening, deadline), TOP_TOKENS)
            model = label_probabilities(seen, fields[name]) if seen else None
            prior = label_probabilities(empty, fields[name]) if empty else None
            if model is not None and prior is not None:
                vote = vote_prior((votes or {}).get(name), fields[name])
                lean = {w: math.log(model[w] / prior[w]) + (math.log(vote[w]) if vote else 0.0) for w in model}
                best = max(model, key=lambda w: (lean[w], model[w]))
                value = next(v for v in fields[name] if _shown(v) == best)
                decisions.append(Calibration(name, output[name], value, model, prior, vote))
                chosen[name] = value
        head += key + " " + json.dumps(chosen[name], ensure_ascii=False) + ", "
    return decisions


def fixed(schema: dict[str, Any], decisions: list[Calibration]) -> dict[str, Any]:
    """The grammar with each changed field admitting its chosen label alone."""
    changed = {d.field: d.chosen for d in decisions if d.chosen != d.answered}
    properties = {name: ({**node, "enum": [changed[name]]} if name in changed else node)
                  for name, node in schema["properties"].items()}
    return {**schema, "properties": properties}


def calibrated(record: dict[str, Any]) -> str:
    """One calibration record (``Calibration.record``, or what became of the answer) as a line."""
    if "path" not in record:
        return (record.get("kept") or f"first answer: {record.get('answer', '')}")[:160]
    ratios = ", ".join(f"{k} {p:.2f}/{record['content_free'].get(k, 0):.2f}" for k, p in record["model"].items())
    verdict = f"{record['answered']} -> {record['chosen']}" if record["changed"] else f"{record['chosen']} kept"
    vote = record.get("vote")
    shares = "; vote: " + ", ".join(f"{k} {p:.2f}" for k, p in vote.items()) if vote else ""
    return f"{record['path']}: {verdict} (probability with the request / without it: {ratios}{shares})"
