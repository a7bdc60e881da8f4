"""``rag-middleware stats``: requests, validity, attempts, errors, approvals, latency and tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..domains import DomainRegistry
from ..stats import GROUPINGS, parse_since, plot, read_stats
from .context import CliState, console

__all__ = ["register"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def table(stats: dict, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("group", "requests", "valid", "first try", "attempts", "reviewed", "approved", "rejected",
                "p50/p95 ms", "tokens"):
        t.add_column(col, overflow="fold")
    rows = [("(all)", stats["overall"])] + [(g["key"], g) for g in stats.get("groups", [])]
    for key, m in rows:
        t.add_row(key, str(m["requests"]), _pct(m["valid_rate"]), _pct(m["first_try_valid_rate"]),
                  _num(m["mean_attempts"]), str(m["reviewed"]), _pct(m["approval_rate"]), _pct(m["rejection_rate"]),
                  f"{_num(m['latency_ms']['p50'])}/{_num(m['latency_ms']['p95'])}", _num(m["tokens_per_request"]))
    return t


def error_lines(stats: dict) -> list[str]:
    rows = [("(all)", stats["overall"])] + [(g["key"], g) for g in stats.get("groups", [])]
    return [f"top validation error paths, {key}: " + ", ".join(f"{p} ({n})" for p, n in m["top_error_paths"])
            for key, m in rows if m["top_error_paths"]]


def stats(
    ctx: typer.Context,
    by: Optional[str] = typer.Option(None, "--by", help=" | ".join(GROUPINGS)),
    since: Optional[str] = typer.Option(None, "--since", help="ISO date or time"),
    domain: Optional[str] = typer.Option(None, "--domain"),
    plot_file: Optional[Path] = typer.Option(None, "--plot", metavar="FILE.png|FILE.html", help="trends per day"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Numbers over the recorded interactions and their feedback (the same as GET /rag/stats)."""
    state: CliState = ctx.obj
    settings = state.settings()
    when = parse_since(since)
    if domain:
        DomainRegistry(settings.knowledge_base).get(domain)  # an unknown domain is an error, not zero rows
    result = read_stats(settings.db_path, by=by, since=when, domain=domain)
    if plot_file is not None:
        plot(result, plot_file)
    if as_json:
        console.print(json.dumps(result), markup=False, soft_wrap=True)
    else:
        console.print(table(result, "rag-middleware stats" + (f" since {since}" if since else "")
                            + (f" by {by}" if by else "")))
        for line in error_lines(result):
            console.print(line, markup=False)
    if plot_file is not None and not as_json:
        console.print(f"trend plot written to {plot_file}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)
