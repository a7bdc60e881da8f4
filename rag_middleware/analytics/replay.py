"""Offline replay: stored conversations or a dataset, through today's templates, examples and model.

Each item is answered with ``Middleware.ask`` (memory read-only unless ``learn``), compared with its
expected output or its recorded output, and appended to ``results.jsonl`` at once, so an interrupted replay
keeps what it finished and a rerun with the same output directory resumes. ``summary.json`` aggregates the
rows and, against a baseline run, lists regressions, improvements and unchanged items.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from ..request.ask import Switches
from ..errors import RagMiddlewareError
from ..request.pipeline import Middleware
from .report_items import diff_values

__all__ = ["ReplayItem", "ReplayOptions", "diff_values", "load_items", "run_replay", "summarize"]


class ReplayItem(BaseModel):
    id: str
    domain: str | None = None
    tenant: str | None = None
    messages: list[dict[str, Any]]
    expected: Any = None
    recorded: Any = None  # store: the output recorded then (the baseline when nothing is expected)
    recorded_selected: list[str] = Field(default_factory=list)
    recorded_template_version: str = ""
    as_of: datetime | None = None
    exclude_ids: list[str] = Field(default_factory=list)


class ReplayOptions(BaseModel):
    domain: str | None = None
    tenant: str | None = None
    switches: Switches = Switches()
    max_attempts: int | None = None
    learn: bool = False

    model_config = {"arbitrary_types_allowed": True}


def _file_items(path: Path) -> Iterator[tuple[int, ReplayItem | None, str]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                item = ReplayItem.model_validate(json.loads(raw))
                if not any(m.get("role") == "user" for m in item.messages):
                    raise ValueError("messages have no user turn")
                yield lineno, item, ""
            except (json.JSONDecodeError, ValidationError, ValueError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc).splitlines()[0]
                yield lineno, None, f"line {lineno}: {reason}"


def _store_items(mw: Middleware, *, domain: str | None, tenant: str | None, since: datetime | None,
                 until: datetime | None, limit: int | None) -> list[ReplayItem]:
    """Recorded interactions, oldest first; each replays with memory as it stood before it was recorded."""
    rows = mw.journal.list(domain=domain, tenant=tenant, since=since, until=until, limit=limit or 1_000_000)
    items = []
    for row in reversed(rows):
        given = row.request.get("input")
        messages = given if isinstance(given, list) else [{"role": "user", "content": row.question}]
        items.append(ReplayItem(
            id=row.id, domain=row.domain, tenant=row.tenant, messages=messages, recorded=row.output,
            recorded_selected=[s.id for s in row.selected], recorded_template_version=row.template_version,
            as_of=row.created_at, exclude_ids=[row.id],
        ))
    return items


def load_items(source: str, mw: Middleware, *, domain: str | None = None, tenant: str | None = None,
               since: datetime | None = None, until: datetime | None = None,
               limit: int | None = None) -> tuple[list[ReplayItem], list[str]]:
    """(items, skipped-line messages). SOURCE is a JSONL file or ``store:``."""
    if source.strip() == "store:":
        return _store_items(mw, domain=domain, tenant=tenant, since=since, until=until, limit=limit), []
    path = Path(source)
    if not path.is_file():
        raise RagMiddlewareError(f"replay source {source} is neither a file nor 'store:'")
    items, skipped = [], []
    for _, item, error in _file_items(path):
        if item is None:
            skipped.append(error)
            continue
        if (domain and item.domain not in (None, domain)) or (tenant and item.tenant not in (None, tenant)):
            continue
        items.append(item)
        if limit and len(items) >= limit:
            break
    return items, skipped


def _row(item: ReplayItem, mw: Middleware, opts: ReplayOptions) -> dict[str, Any]:
    domain = item.domain or opts.domain
    row: dict[str, Any] = {"id": item.id, "domain": domain, "output": None, "valid": False, "attempts": 0,
                           "errors": [], "latency_ms": 0.0, "prompt_tokens": 0, "completion_tokens": 0,
                           "selected": [], "template_version": "", "match": None, "diff": [],
                           "recorded_selected": item.recorded_selected,
                           "recorded_template_version": item.recorded_template_version,
                           "request": item.messages,
                           "expected": item.expected if item.expected is not None else item.recorded}
    started = time.perf_counter()
    if not domain:
        row["errors"] = ["no domain: give the item a domain or pass --domain"]
        return row
    try:
        result = mw.ask(item.messages, domain=domain, tenant=item.tenant or opts.tenant, as_of=item.as_of,
                        exclude_ids=frozenset(item.exclude_ids), learn=opts.learn, switches=opts.switches,
                        max_attempts=opts.max_attempts, raise_on_invalid=False, replay_of=item.id)
    except RagMiddlewareError as exc:
        row["errors"] = [exc.one_line()]
        row["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return row
    last = result.attempts[-1] if result.attempts else None
    row.update(
        output=result.output if result.valid else None, valid=result.valid, attempts=len(result.attempts),
        errors=last.errors if last and not result.valid else [],
        raw_output=last.raw_output if last and not result.valid else "",
        latency_ms=round(result.timings_ms.get("total", 0), 1),
        prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
        selected=[s.id for s in result.selected] + [n.id for n in result.negatives],
        template_version=result.template_version, interaction_id=result.interaction_id,
        first_try_valid=result.first_try_valid, confidence=result.confidence,
        votes=last.votes if last else [], repairs=last.repairs if last else [],
        calibration=last.calibration if last else [],
    )
    reference = item.expected if item.expected is not None else item.recorded
    if reference is not None:
        row["match"] = row["output"] == reference
        row["diff"] = diff_values(reference, row["output"])
        row["compared_with"] = "expected" if item.expected is not None else "recorded"
        if isinstance(reference, dict):
            out = row["output"] if isinstance(row["output"], dict) else {}
            row["fields"] = {k: out.get(k) == v for k, v in reference.items()}
    return row


def read_results(out: Path) -> list[dict[str, Any]]:
    path = out / "results.jsonl"
    if not path.exists():
        return []
    rows = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(raw))
        except json.JSONDecodeError:
            break  # a line cut short by an interruption: everything after it is redone
    return rows


def run_replay(mw: Middleware, items: list[ReplayItem], out: Path, opts: ReplayOptions, *,
               on_item: Callable[[dict[str, Any], bool], None] | None = None) -> list[dict[str, Any]]:
    """Answer every item not already in ``out/results.jsonl``; append each row as soon as it is done."""
    out.mkdir(parents=True, exist_ok=True)
    done = read_results(out)
    (out / "results.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in done),
                                       encoding="utf-8")  # drops a torn last line
    finished = {r["id"] for r in done}
    with (out / "results.jsonl").open("a", encoding="utf-8") as fh:
        for item in items:
            if item.id in finished:
                if on_item:
                    on_item({"id": item.id}, True)
                continue
            row = _row(item, mw, opts)
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            done.append(row)
            finished.add(item.id)
            if on_item:
                on_item(row, False)
    return done


def _passed(row: dict[str, Any]) -> bool:
    return bool(row.get("match")) if row.get("match") is not None else bool(row.get("valid"))


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 1)


def summarize(rows: list[dict[str, Any]], *, skipped: list[str], baseline: list[dict[str, Any]] | None = None,
              label: str = "") -> dict[str, Any]:
    n = len(rows)
    latencies = [r["latency_ms"] for r in rows if r.get("latency_ms")]
    compared = [r for r in rows if r.get("match") is not None]
    summary: dict[str, Any] = {
        "label": label, "items": n, "skipped_lines": len(skipped), "skipped": skipped,
        **_validity(rows),
        "compared": len(compared),
        "match_rate": _rate(compared, "match") if compared else None,
        "mean_attempts": round(statistics.mean(r["attempts"] for r in rows), 3) if n else 0.0,
        "latency_ms": {"p50": _pct(latencies, 0.5), "p95": _pct(latencies, 0.95)},
        "tokens": {"prompt": sum(r.get("prompt_tokens", 0) for r in rows),
                   "completion": sum(r.get("completion_tokens", 0) for r in rows)},
        "field_accuracy": _field_accuracy(rows),
        "attempts_histogram": _attempts_histogram(rows),
    }
    if baseline is not None:
        summary["baseline"] = _against_baseline(rows, baseline)
    return summary


def _validity(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Items that failed with an error, items answered validly, and the valid and first-try-valid rates."""
    return {"item_errors": sum(1 for r in rows if r.get("errors") and not r.get("valid")),
            "valid": sum(1 for r in rows if r.get("valid")),
            "valid_rate": _rate(rows, "valid"),
            "first_try_valid_rate": _rate(rows, "first_try_valid")}


def _rate(rows: list[dict[str, Any]], key: str) -> float:
    """The share of ``rows`` whose ``key`` is truthy; 0.0 for no rows."""
    return round(sum(1 for r in rows if r.get(key)) / len(rows), 4) if rows else 0.0


def _attempts_histogram(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many rows took each number of attempts."""
    counts = Counter(r.get("attempts") for r in rows)
    return {str(a): counts[a] for a in sorted({r.get("attempts", 0) for r in rows})}


def _field_accuracy(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per top-level field of the reference answers: the share of rows that got it right."""
    fields: dict[str, list[bool]] = {}
    for r in rows:
        for key, ok in (r.get("fields") or {}).items():
            fields.setdefault(key, []).append(bool(ok))
    return {k: round(sum(v) / len(v), 4) for k, v in sorted(fields.items())}


def _against_baseline(rows: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> dict[str, Any]:
    """The baseline run's rates, and each item both runs answered as a regression, an improvement or unchanged."""
    then = {r["id"]: r for r in baseline}
    regressions, improvements, unchanged = [], [], []
    for r in rows:
        before = then.get(r["id"])
        if before is None:
            continue
        was, now = _passed(before), _passed(r)
        entry = {"id": r["id"], "diff": diff_values(before.get("output"), r.get("output")),
                 "selected_then": before.get("selected", []), "selected_now": r.get("selected", []),
                 "template_then": before.get("template_version", ""), "template_now": r.get("template_version", ""),
                 "errors_now": r.get("errors", [])}
        (regressions if was and not now else improvements if now and not was else unchanged).append(entry)
    judged = sum(1 for r in baseline if r.get("match") is not None)
    return {
        "items": len(then), "valid_rate": _rate(baseline, "valid"),
        "first_try_valid_rate": _rate(baseline, "first_try_valid"),
        "match_rate": round(sum(1 for r in baseline if r.get("match")) / max(1, judged), 4),
        "regressions": regressions, "improvements": improvements, "unchanged": [u["id"] for u in unchanged],
        "counts": {"regressions": len(regressions), "improvements": len(improvements), "unchanged": len(unchanged)},
    }
