"""``rag-middleware stats``: requests, validity, attempts, errors, approvals, latency, tokens and confidence,
with the failed and the least confident queries; ``stats --edits`` shows what the reviewers' edits teach
(edits.py) and ``--apply ID`` writes one suggestion as a new override version."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ..learning import edits as edit_mining
from ..domains import DomainRegistry
from ..analytics.stats import GROUPINGS, LIST_SIZE, parse_since, plot, read_stats
from .context import CliState, console

__all__ = ["register"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def table(stats: dict, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    keys = ["(all)"] + [g["key"] for g in stats.get("groups", [])]
    t.add_column("group", overflow="fold", min_width=min(24, max(map(len, keys))))
    for col in ("requests", "valid", "first try", "attempts", "reviewed", "approved", "rejected",
                "p50/p95 ms", "tokens", "confidence"):
        t.add_column(col, overflow="fold")
    rows = [("(all)", stats["overall"])] + [(g["key"], g) for g in stats.get("groups", [])]
    for key, m in rows:
        t.add_row(key, str(m["requests"]), _pct(m["valid_rate"]), _pct(m["first_try_valid_rate"]),
                  _num(m["mean_attempts"]), str(m["reviewed"]), _pct(m["approval_rate"]), _pct(m["rejection_rate"]),
                  f"{_num(m['latency_ms']['p50'])}/{_num(m['latency_ms']['p95'])}", _num(m["tokens_per_request"]),
                  "-" if m.get("mean_confidence") is None else f"{m['mean_confidence']:.2f}")
    return t


def error_lines(stats: dict) -> list[str]:
    rows = [("(all)", stats["overall"])] + [(g["key"], g) for g in stats.get("groups", [])]
    return [f"top validation error paths, {key}: " + ", ".join(f"{p} ({n})" for p, n in m["top_error_paths"])
            for key, m in rows if m["top_error_paths"]]


def query_tables(stats: dict) -> list[Table]:
    out = []
    if stats.get("failed"):
        t = Table(title="failed queries (newest first)", title_justify="left")
        for col in ("id", "domain", "status", "attempts", "question"):
            t.add_column(col, overflow="fold")
        for q in stats["failed"]:
            t.add_row(q["id"], q["domain"], q["status"], str(q["attempts"]), q["question"])
        out.append(t)
    if stats.get("low_confidence"):
        t = Table(title="lowest-confidence answers (review these first: review --order confidence)",
                  title_justify="left")
        for col in ("id", "domain", "confidence", "feedback", "question"):
            t.add_column(col, overflow="fold")
        for q in stats["low_confidence"]:
            t.add_row(q["id"], q["domain"], f"{q['confidence']:.2f}", q["feedback"] or "-", q["question"])
        out.append(t)
    return out


def edit_tables(report: dict) -> list[Table]:
    out = []
    for d in report["domains"]:
        if d["free_text"]:
            t = Table(title=f"{d['domain']}: what {d['edits']} edits add and remove", title_justify="left")
            for col in ("what", "most frequent (times)"):
                t.add_column(col, overflow="fold")
            for key in ("added_words", "removed_words", "added_sentences", "removed_sentences"):
                t.add_row(key.replace("_", " "), "; ".join(f"{item} ({n})" for item, n in d[key]) or "-")
        else:
            t = Table(title=f"{d['domain']}: fields changed by {d['edits']} edits", title_justify="left")
            for col in ("field", "edits", "from -> to (times)"):
                t.add_column(col, overflow="fold")
            for f in d["fields"]:
                t.add_row(f["path"], str(f["edits"]),
                          "; ".join(f"{c['from']} -> {c['to']} ({c['count']})" for c in f["changes"]))
        out.append(t)
    if report["suggestions"]:
        t = Table(title=f"suggestions (patterns seen {report['min_count']}+ times)", title_justify="left")
        for col in ("#", "id", "domain", "kind", "support", "applied", "suggestion"):
            t.add_column(col, overflow="fold")
        for s in report["suggestions"]:
            t.add_row(str(s["n"]), s["id"], s["domain"], s["kind"], str(s["support"]), "yes" if s["applied"] else "",
                      s["title"])
        out.append(t)
    return out


def _edits(settings, *, domain: str | None, apply_id: str | None, min_count: int, as_json: bool) -> None:
    registry = DomainRegistry(settings.knowledge_base, overrides=settings.data_dir / "overrides")
    if apply_id is not None:
        done = edit_mining.apply(settings.db_path, domains=registry, overrides=registry.overrides,
                                 selector=apply_id, domain=domain, min_count=min_count)
        s = done["suggestion"]
        if as_json:
            console.print(json.dumps(done, ensure_ascii=False), markup=False, soft_wrap=True)
            return
        console.print(f"applied {s['id']} to {s['domain']}: {s['title']}", markup=False, soft_wrap=True)
        console.print(f"override version {done['version']} of {s['domain']} is live "
                      f"({settings.data_dir / 'overrides' / s['domain']})", markup=False, soft_wrap=True)
        return
    report = edit_mining.mine(settings.db_path, domains=registry, domain=domain, min_count=min_count)
    if as_json:
        console.print(json.dumps(report, ensure_ascii=False), markup=False, soft_wrap=True)
        return
    if not report["edits"]:
        console.print("no edits to learn from" + (f" in {domain}" if domain else ""), markup=False)
        return
    for t in edit_tables(report):
        console.print(t)
    if any(not s["applied"] for s in report["suggestions"]):
        scope = f" --domain {domain}" if domain else ""
        console.print(f"apply one: rag-middleware stats --edits --apply <#|id>{scope}", markup=False)


def stats(
    ctx: typer.Context,
    by: str | None = typer.Option(None, "--by", help=" | ".join(GROUPINGS)),
    since: str | None = typer.Option(None, "--since", help="ISO date or time"),
    domain: str | None = typer.Option(None, "--domain"),
    plot_file: Path | None = typer.Option(None, "--plot", metavar="FILE.png|FILE.html", help="trends per day"),
    as_json: bool = typer.Option(False, "--json"),
    top: int = typer.Option(LIST_SIZE, "--top", min=0, help="failed and low-confidence queries listed"),
    edits: bool = typer.Option(False, "--edits", help="what the reviewers' edits teach, with suggestions"),
    apply_id: str | None = typer.Option(None, "--apply", metavar="#|ID", help="with --edits: apply a suggestion"),
    min_count: int = typer.Option(2, "--min-count", min=1, help="with --edits: times a pattern must be seen"),
) -> None:
    """Numbers over the recorded interactions and their feedback (the same as GET /rag/stats)."""
    state: CliState = ctx.obj
    settings = state.settings()
    if edits or apply_id is not None:
        _edits(settings, domain=domain, apply_id=apply_id, min_count=min_count, as_json=as_json)
        return
    when = parse_since(since)
    if domain:
        DomainRegistry(settings.knowledge_base).get(domain)  # an unknown domain is an error, not zero rows
    result = read_stats(settings.db_path, by=by, since=when, domain=domain, list_size=top)
    if plot_file is not None:
        plot(result, plot_file)
    if as_json:
        console.print(json.dumps(result), markup=False, soft_wrap=True)
    else:
        console.print(table(result, "rag-middleware stats" + (f" since {since}" if since else "")
                            + (f" by {by}" if by else "")))
        for line in error_lines(result):
            console.print(line, markup=False)
        for t in query_tables(result):
            console.print(t)
    if plot_file is not None and not as_json:
        console.print(f"trend plot written to {plot_file}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)
