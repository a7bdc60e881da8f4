"""Scoring any domain on a labelled set: ``domains eval`` and the benchmarks share this.

A set is JSON lines ``{id, messages | question, expected, domain?}``. Each item is answered by
``Middleware.ask`` in one or more modes; each answer is scored per top-level field of the expected object:

- field accuracy: the share of top-level fields equal to the expected ones (lists compare as multisets:
  the order of filters or items does not count; objects compare key by key, recursively);
- exact: every field right; valid: the answer passed validation (an invalid answer is wrong on every field);
- wrong but valid: valid answers with at least one wrong field, reported apart (the constraint tax).

Modes (memory and learning off, so no item can influence another):

==========  ================================================================================================
baseline    the schema only: grammar from the schema, no examples, negatives, CoT, repair or mechanisms; 1 attempt
examples    curated examples and negatives, no declarative mechanisms; 1 attempt
full        the domain's defaults: examples, negatives, grounding, derived fields, votes, hardening; 3 attempts
==========  ================================================================================================
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..request.ask import Switches
from ..errors import RagMiddlewareError, RequestError

__all__ = ["MODES", "Mode", "canonical", "confusion", "load_set", "question_of", "run_item", "score", "summarize"]


@dataclass(frozen=True)
class Mode:
    name: str
    switches: Switches
    max_attempts: int
    description: str


_OFF = dict(memory=False, cot=False, repair=False, guide=False, ground=False, derive=False, vote=False, harden=False,
            calibrate=False)
MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("baseline", Switches(examples=False, negatives=False, **_OFF), 1, "schema only, 1 attempt"),
    Mode("examples", Switches(examples=True, negatives=True, **_OFF), 1, "examples + negatives, 1 attempt"),
    Mode("full", Switches(memory=False), 3, "domain defaults and every mechanism, 3 attempts"),
    Mode("full-memory", Switches(), 3, "full, with the memory store (reviewed answers)"),
    Mode("no-vote", Switches(memory=False, vote=False), 3, "full without label votes (ablation)"),
    Mode("no-ground", Switches(memory=False, ground=False), 3, "full without grounding (ablation)"),
    Mode("no-derive", Switches(memory=False, derive=False), 3, "full without derived fields (ablation)"),
    Mode("no-calibrate", Switches(memory=False, calibrate=False), 3, "full without label calibration (ablation)"),
    Mode("declarative", Switches(memory=False, hooks=False), 3,
         "full with the domain's Python hooks off: what domain.yaml declares, and nothing else"),
)}


def load_set(path: Path, *, domain: str | None = None) -> list[dict[str, Any]]:
    """Items of a JSONL set; errors name the line. ``domain`` is filled in where an item has none."""
    items = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise RequestError(f"cannot read {path}: {exc.strerror or exc}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RequestError(f"{path}:{n}: invalid JSON ({exc.msg})") from None
        if not isinstance(item, dict) or "expected" not in item or not ("messages" in item or "question" in item):
            raise RequestError(f"{path}:{n}: each item needs expected and messages (or question)")
        item.setdefault("id", f"line-{n}")
        if domain and not item.get("domain"):
            item["domain"] = domain
        items.append(item)
    if not items:
        raise RequestError(f"{path}: no items")
    return items


def question_of(item: dict[str, Any]) -> str:
    if "question" in item:
        return str(item["question"])
    return [m for m in item["messages"] if m.get("role") == "user"][-1]["content"]


def canonical(value: Any) -> Any:
    """A form where equal answers are equal: lists become sorted multisets, numbers compare by value."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), canonical(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("__list__", tuple(sorted((canonical(v) for v in value), key=repr)))
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def score(expected: Any, output: Any, valid: bool) -> dict[str, bool]:
    """Per top-level field of ``expected``: is the output's equal?"""
    if not isinstance(expected, dict):
        return {"(answer)": bool(valid) and canonical(expected) == canonical(output)}
    if not valid or not isinstance(output, dict):
        return {k: False for k in expected}
    return {k: canonical(expected[k]) == canonical(output.get(k)) for k in expected}


def run_item(mw: Any, item: dict[str, Any], mode: Mode, *, learn: bool = False,
             tenant: str | None = None) -> dict[str, Any]:
    """Answer one item in one mode and score it. Errors of the pipeline count as an invalid answer."""
    started = time.perf_counter()
    row: dict[str, Any] = {"id": item["id"], "mode": mode.name, "question": question_of(item),
                           "expected": item["expected"]}
    request = item.get("messages") or item["question"]
    try:
        result = mw.ask(request, domain=item["domain"], learn=learn, switches=mode.switches, tenant=tenant,
                        max_attempts=mode.max_attempts, raise_on_invalid=False)
    except RagMiddlewareError as exc:
        row.update(output=None, valid=False, attempts=len(getattr(exc, "attempts", None) or []) or 1,
                   exception=exc.one_line(), selected=[], votes=[], repairs=[], interaction_id="")
    else:
        last = result.attempts[-1] if result.attempts else None
        row.update(output=result.output, valid=result.valid, attempts=len(result.attempts),
                   selected=[{"id": s.id, "source": s.source, "status": s.status, "similarity": s.similarity}
                             for s in result.selected],
                   votes=last.votes if last else [], repairs=last.repairs if last else [],
                   calibration=last.calibration if last else [],
                   interaction_id=result.interaction_id, confidence=result.confidence,
                   confidence_parts=result.confidence_parts, logprobs=last.logprobs if last else None,
                   reviewed_sources=result.reviewed_sources,
                   raw_output=last.raw_output if last and not result.valid else "",
                   errors=last.errors if last else [])
    row["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    row["fields"] = score(item["expected"], row["output"], row["valid"])
    row["exact"] = all(row["fields"].values())
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    if not n:
        return {"n": 0}
    fields = sorted({f for r in rows for f in r["fields"]})
    lat = sorted(r["latency_ms"] for r in rows)
    valid = [r for r in rows if r["valid"]]
    return {
        "n": n,
        "valid_rate": round(len(valid) / n, 4),
        "field_accuracy": round(sum(sum(r["fields"].values()) / max(1, len(r["fields"])) for r in rows) / n, 4),
        "exact": round(sum(r["exact"] for r in rows) / n, 4),
        "wrong_but_valid": round(sum(not r["exact"] for r in valid) / n, 4),
        "mean_attempts": round(sum(r["attempts"] for r in rows) / n, 3),
        "p50_ms": lat[n // 2],
        "per_field": {f: round(sum(r["fields"].get(f, False) for r in rows) / n, 4) for f in fields},
        "by_confidence": by_confidence(rows),
    }


def by_confidence(rows: list[dict[str, Any]], *, buckets: int = 4) -> list[dict[str, Any]]:
    """Field accuracy per confidence bucket (equal-count buckets, lowest first): a meaningful confidence rises."""
    scored = sorted((r for r in rows if r.get("confidence") is not None), key=lambda r: r["confidence"])
    if len(scored) < buckets:
        return []
    out = []
    for b in range(buckets):
        part = scored[b * len(scored) // buckets : (b + 1) * len(scored) // buckets]
        if part:
            out.append({"bucket": b + 1, "n": len(part), "min": part[0]["confidence"], "max": part[-1]["confidence"],
                        "field_accuracy": round(sum(sum(r["fields"].values()) / max(1, len(r["fields"]))
                                                    for r in part) / len(part), 4),
                        "exact": round(sum(r["exact"] for r in part) / len(part), 4)})
    return out


def enum_fields(schema: dict[str, Any] | None) -> dict[str, list[Any]]:
    """Top-level fields whose schema is an enum (directly or in one branch of a union)."""
    out: dict[str, list[Any]] = {}
    if not schema:
        return out
    from ..domains.paths import inline_refs, schema_nodes

    flat = inline_refs(schema)
    for name in {k for node in [flat, *flat.get("anyOf", []), *flat.get("oneOf", [])] if isinstance(node, dict)
                 for k in (node.get("properties") or {})}:
        values: list[Any] = []
        for node in schema_nodes(flat, (name,)):
            for branch in [node, *node.get("anyOf", []), *node.get("oneOf", [])]:
                if isinstance(branch, dict):
                    values += [v for v in branch.get("enum", []) if v not in values]
        if values:
            out[name] = values
    return out


def confusion(rows: Iterable[dict[str, Any]], field: str) -> dict[str, Counter[str]]:
    """expected value -> Counter of the values answered (``(invalid)`` when there was no valid answer)."""
    table: dict[str, Counter[str]] = {}
    for r in rows:
        want = r["expected"].get(field) if isinstance(r["expected"], dict) else None
        got = r["output"].get(field) if r["valid"] and isinstance(r["output"], dict) else "(invalid)"
        table.setdefault(json.dumps(want) if not isinstance(want, str) else want, Counter())[
            json.dumps(got) if not isinstance(got, str) else got] += 1
    return table


def run_set(mw: Any, items: list[dict[str, Any]], modes: list[Mode], *,
            on_item: Callable[[Mode, dict[str, Any]], None] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every item in every mode, mode by mode; ``on_item`` is called after each (progress bars)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for mode in modes:
        rows = out.setdefault(mode.name, [])
        for item in items:
            rows.append(run_item(mw, item, mode))
            if on_item is not None:
                on_item(mode, rows[-1])
    return out
