"""``rag-middleware replay``: stored conversations or a dataset through today's prompts and model."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..request.ask import Switches
from ..errors import ConfigError
from ..analytics.replay import ReplayOptions, load_items, read_results, run_replay, summarize
from ..analytics.report import write_reports
from ..templating.versions import resolve_template_dir
from .context import CliState, console, err_console

__all__ = ["register"]


def _when(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"not an ISO date/time: {value}", param_hint=name) from None


def replay(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="a JSONL file, or 'store:' for the recorded interactions"),
    out: Path | None = typer.Option(None, "--out", help="output dir (default: <data_dir>/replays/<timestamp>)"),
    domain: str | None = typer.Option(None, "--domain"),
    tenant: str | None = typer.Option(None, "--tenant"),
    limit: int | None = typer.Option(None, "--limit", min=1),
    since: str | None = typer.Option(None, "--since", help="ISO time (store:)"),
    until: str | None = typer.Option(None, "--until", help="ISO time (store:)"),
    template_set: str | None = typer.Option(None, "--template-set", help="a prompts dir, a label or a version"),
    backend: str | None = typer.Option(None, "--backend", help="embedded | ollama"),
    model: str | None = typer.Option(None, "--model"),
    no_memory: bool = typer.Option(False, "--no-memory"),
    no_examples: bool = typer.Option(False, "--no-examples"),
    no_negatives: bool = typer.Option(False, "--no-negatives"),
    no_cot: bool = typer.Option(False, "--no-cot"),
    max_attempts: int | None = typer.Option(None, "--max-attempts", min=1, max=10),
    learn: bool = typer.Option(False, "--learn", help="let validated answers enter memory (off: read-only)"),
    baseline: Path | None = typer.Option(None, "--baseline", help="an earlier replay's output dir"),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression"),
) -> None:
    """Replay items, compare with expected or recorded outputs (and a baseline run), write a report."""
    state: CliState = ctx.obj
    prompts_dir = resolve_template_dir(state.settings(), template_set) if template_set else None
    baseline_rows = None
    if baseline is not None:
        baseline_rows = read_results(baseline)
        if not baseline_rows:
            raise ConfigError(f"--baseline {baseline} has no results.jsonl")
    mw = state.middleware(**{"prompts_dir": prompts_dir, "llm.backend": backend, "llm.model": model})
    with mw:
        items, skipped = load_items(source, mw, domain=domain, tenant=tenant, since=_when(since, "--since"),
                                    until=_when(until, "--until"), limit=limit)
        for line in skipped:
            err_console.print(f"[yellow]skipped[/yellow] {line}", highlight=False)
        out = out or mw.settings.data_dir / "replays" / datetime.now().strftime("%Y%m%dT%H%M%S")
        opts = ReplayOptions(domain=domain, tenant=tenant, max_attempts=max_attempts, learn=learn,
                             switches=Switches(memory=not no_memory, examples=not no_examples,
                                               negatives=not no_negatives, cot=False if no_cot else None))
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=err_console) as progress:
            task = progress.add_task("replaying", total=len(items))

            def step(row: dict, resumed: bool) -> None:
                if row.get("errors") and not row.get("valid") and not resumed:
                    progress.console.print(f"[red]{row['id']}[/red]: {'; '.join(row['errors'])[:200]}",
                                           highlight=False)
                progress.advance(task)

            rows = run_replay(mw, items, out, opts, on_item=step)
        summary = summarize(rows, skipped=skipped, baseline=baseline_rows, label=str(out.name))
        summary["template_version"] = mw.templates.version
        summary["source"] = source
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    _, html_path = write_reports(out, summary, rows, baseline=baseline_rows)
    match = "-" if summary["match_rate"] is None else f"{summary['match_rate']:.1%}"
    console.print(f"{summary['items']} items · valid {summary['valid_rate']:.1%} · first-try "
                  f"{summary['first_try_valid_rate']:.1%} · match {match} · mean attempts {summary['mean_attempts']} "
                  f"· skipped lines {summary['skipped_lines']}")
    if "baseline" in summary:
        c = summary["baseline"]["counts"]
        console.print(f"against the baseline: {c['regressions']} regressions, {c['improvements']} improvements, "
                      f"{c['unchanged']} unchanged")
    console.print(f"report: {html_path}")
    if fail_on_regression and summary.get("baseline", {}).get("counts", {}).get("regressions"):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
