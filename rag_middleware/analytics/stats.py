"""Analytics over the interaction log and the feedback table.

:func:`load_rows` reads one light row per interaction straight from SQLite (the columns the journal writes
beside each record, so attempts' messages are never parsed); :func:`compute` aggregates them overall,
per group (domain, template, model, day or variant) and per day for trends, with the mean confidence of the
valid answers, the failed queries and the least confident answered ones. ``rag-middleware stats`` and
``GET /rag/stats`` both show what :func:`compute` returns; :func:`plot` draws the trend as a PNG
(matplotlib) or a self-contained HTML page (the replay report's SVG charts).
"""

from __future__ import annotations

import html
import json
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..memory.db import connect
from ..memory.interaction_log import interactions_where
from ..errors import RequestError, StoreError
from ..records import SUCCESS_STATUSES, iso

__all__ = ["GROUPINGS", "StatsRow", "compute", "load_rows", "percentile", "plot", "read_stats"]

GROUPINGS = ("domain", "template", "model", "day", "variant")
TOP_ERRORS = 5
LIST_SIZE = 10  # failed and low-confidence queries listed
QUESTION_CLIP = 100
_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.)")


@dataclass
class StatsRow:
    id: str
    created_at: str
    tenant: str
    domain: str
    status: str
    template: str
    model: str
    variant: str
    attempts: int
    latency_ms: float | None
    tokens: int
    errors: tuple[str, ...] = ()  # every attempt's validation error lines
    feedback: str | None = None  # the newest feedback action: approve | edit | reject
    confidence: float | None = None  # confidence.py (None: free text, or recorded before confidence existed)
    question: str = ""

    @property
    def valid(self) -> bool:
        return self.status in SUCCESS_STATUSES

    @property
    def first_try_valid(self) -> bool:
        return self.valid and self.attempts <= 1

    @property
    def day(self) -> str:
        return self.created_at[:10]

    def key(self, by: str) -> str:
        return {"domain": self.domain, "template": self.template, "model": self.model, "day": self.day,
                "variant": self.variant or "(none)"}[by]


def load_rows(conn: sqlite3.Connection, *, domain: str | None = None, tenant: str | None = None,
              since: datetime | None = None, until: datetime | None = None) -> list[StatsRow]:
    where, params = interactions_where(domain=domain, tenant=tenant, since=since, until=until, alias="i.")
    try:
        rows = conn.execute(
            "SELECT i.id, i.created_at, i.tenant, i.domain, i.status, i.template_version, i.model,"
            " i.variant, i.attempts, i.total_ms, i.prompt_tokens + i.completion_tokens, i.confidence, i.question"
            f" FROM interactions i{where} ORDER BY i.created_at", params).fetchall()
        errors: dict[str, list[str]] = {}
        for rid, line in conn.execute(
                "SELECT i.id, e.value FROM interactions i, json_each(i.body, '$.attempts') a,"
                f" json_each(a.value, '$.errors') e{where}", params):
            errors.setdefault(rid, []).append(str(line))
        feedback: dict[str, str] = {}
        for rid, action in conn.execute("SELECT interaction_id, action FROM feedback ORDER BY updated_at DESC"):
            feedback.setdefault(rid, action)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read interactions for stats: {exc}") from None
    return [StatsRow(id=r[0], created_at=r[1], tenant=r[2], domain=r[3], status=r[4], template=r[5], model=r[6],
                     variant=r[7] or "", attempts=int(r[8] or 0), latency_ms=r[9], tokens=int(r[10] or 0),
                     errors=tuple(errors.get(r[0], ())), feedback=feedback.get(r[0]),
                     confidence=None if r[11] is None else float(r[11]), question=r[12] or "") for r in rows]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def error_path(line: str) -> str:
    """``operations.0.type: must be one of ...`` -> ``operations.*.type`` (indexes folded together)."""
    path = line.split(": ", 1)[0].strip() if ": " in line else "(root)"
    return _INDEX.sub("*", path)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def metrics(rows: Sequence[StatsRow]) -> dict[str, Any]:
    n = len(rows)
    latencies = [r.latency_ms for r in rows if r.latency_ms is not None]
    reviewed = [r for r in rows if r.feedback]
    approved = sum(1 for r in reviewed if r.feedback in ("approve", "edit"))
    rejected = sum(1 for r in reviewed if r.feedback == "reject")
    paths = Counter(error_path(line) for r in rows for line in r.errors)
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    confident = [r.confidence for r in rows if r.valid and r.confidence is not None]
    return {
        "requests": n,
        "valid_rate": _rate(sum(r.valid for r in rows), n),
        "first_try_valid_rate": _rate(sum(r.first_try_valid for r in rows), n),
        "mean_attempts": round(sum(r.attempts for r in rows) / n, 3) if n else None,
        "top_error_paths": [[path, count] for path, count in paths.most_common(TOP_ERRORS)],
        "reviewed": len(reviewed),
        "approval_rate": _rate(approved, len(reviewed)),
        "rejection_rate": _rate(rejected, len(reviewed)),
        "latency_ms": {"p50": None if p50 is None else round(p50, 1), "p95": None if p95 is None else round(p95, 1)},
        "tokens_per_request": round(sum(r.tokens for r in rows) / n, 1) if n else None,
        "mean_confidence": round(sum(confident) / len(confident), 4) if confident else None,  # of valid answers
    }


def clip(text: str, width: int = QUESTION_CLIP) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def query_lists(rows: Sequence[StatsRow], *, size: int = LIST_SIZE) -> dict[str, list[dict[str, Any]]]:
    """The newest failed queries, and the answered ones with the lowest confidence (lowest first)."""
    failed = [r for r in rows if not r.valid][::-1][:size]
    answered = sorted((r for r in rows if r.valid and r.confidence is not None),
                      key=lambda r: (r.confidence, r.created_at))[:size]
    return {
        "failed": [{"id": r.id, "domain": r.domain, "status": r.status, "created_at": r.created_at,
                    "attempts": r.attempts, "question": clip(r.question)} for r in failed],
        "low_confidence": [{"id": r.id, "domain": r.domain, "confidence": r.confidence, "created_at": r.created_at,
                            "feedback": r.feedback, "question": clip(r.question)} for r in answered],
    }


def compute(rows: Sequence[StatsRow], *, by: str | None = None, since: datetime | None = None,
            list_size: int = LIST_SIZE) -> dict[str, Any]:
    if by is not None and by not in GROUPINGS:
        raise RequestError(f"--by must be one of {', '.join(GROUPINGS)}, not {by!r}")
    out: dict[str, Any] = {"since": iso(since) if since else None, "by": by, "overall": metrics(rows)}
    if by:
        groups: dict[str, list[StatsRow]] = {}
        for row in rows:
            groups.setdefault(row.key(by), []).append(row)
        out["groups"] = [{"key": key, **metrics(members)} for key, members in sorted(groups.items())]
    days: dict[str, list[StatsRow]] = {}
    for row in rows:
        days.setdefault(row.day, []).append(row)
    out["trend"] = [{"day": day, **{k: v for k, v in metrics(members).items() if k != "top_error_paths"}}
                    for day, members in sorted(days.items())]
    out.update(query_lists(rows, size=list_size))
    return out


def read_stats(db_path: Path, *, by: str | None = None, since: datetime | None = None,
               domain: str | None = None, list_size: int = LIST_SIZE) -> dict[str, Any]:
    """Open the database, compute, close. What the CLI and the server call."""
    conn = connect(db_path)
    try:
        return compute(load_rows(conn, since=since, domain=domain), by=by, since=since, list_size=list_size)
    finally:
        conn.close()


def parse_since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(f"--since must be an ISO date or time (2026-01-31 or 2026-01-31T12:00:00Z), "
                           f"not {text!r}") from None


# -- plots ----------------------------------------------------------------------------------------------

def _series(trend: Iterable[dict[str, Any]], key: str, sub: str | None = None) -> list[float]:
    out = []
    for point in trend:
        value = point[key][sub] if sub else point[key]
        out.append(float(value) if value is not None else 0.0)
    return out


def plot(stats: dict[str, Any], path: Path) -> Path:
    """Trends per day: requests, valid and first-try valid rate, approval rate, latency p50/p95."""
    trend = stats["trend"]
    if not trend:
        raise RequestError("no interactions in the selected period; nothing to plot")
    suffix = path.suffix.lower()
    if suffix == ".png":
        _png(trend, path)
    elif suffix in (".html", ".htm"):
        _html(stats, path)
    else:
        raise RequestError(f"--plot needs a .png or .html file, not {path.name}")
    return path


def _png(trend: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    days = [p["day"] for p in trend]
    fig = Figure(figsize=(10, 8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 1, sharex=True)
    axes[0].bar(days, _series(trend, "requests"), color="#4C78A8")
    axes[0].set_ylabel("requests")
    for key, label in (("valid_rate", "valid"), ("first_try_valid_rate", "first-try valid"),
                       ("approval_rate", "approved (of reviewed)")):
        axes[1].plot(days, _series(trend, key), marker="o", label=label)
    axes[1].set_ylim(0, 1.05)
    axes[1].set_ylabel("rate")
    axes[1].legend(loc="lower left", fontsize=8)
    for sub in ("p50", "p95"):
        axes[2].plot(days, _series(trend, "latency_ms", sub), marker="o", label=f"latency {sub}")
    axes[2].set_ylabel("ms")
    axes[2].legend(loc="upper left", fontsize=8)
    axes[2].tick_params(axis="x", labelrotation=45)
    fig.suptitle("rag-middleware: trends per day")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


def _html(stats: dict[str, Any], path: Path) -> None:
    from .report import bar_chart

    trend = stats["trend"]
    days = [p["day"] for p in trend]
    charts = [
        bar_chart("Requests per day", days, {"requests": _series(trend, "requests")},
                  max_value=max(_series(trend, "requests")) or 1.0, percent=False),
        bar_chart("Validity and approval per day", days, {
            "valid": _series(trend, "valid_rate"), "first-try valid": _series(trend, "first_try_valid_rate"),
            "approved": _series(trend, "approval_rate")}),
        bar_chart("Latency per day (ms)", days, {"p50": _series(trend, "latency_ms", "p50"),
                                                 "p95": _series(trend, "latency_ms", "p95")},
                  max_value=max(_series(trend, "latency_ms", "p95")) or 1.0, percent=False),
    ]
    overall = json.dumps(stats["overall"], indent=2)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rag-middleware stats</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#222}}svg{{margin:8px 16px 8px 0;border:1px solid #eee}}
pre{{background:#f6f6f6;padding:8px}}</style></head><body>
<h1>rag-middleware stats{html.escape(' since ' + stats['since']) if stats.get('since') else ''}</h1>
<div class="charts">{''.join(charts)}</div>
<h2>Overall</h2><pre>{html.escape(overall)}</pre>
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
