"""``rag-middleware domains``: tools for domain authors (eval here; scaffolding and checks beside it)."""

from __future__ import annotations

import subprocess
import tempfile
from datetime import datetime, UTC
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ..errors import ConfigError
from .context import CliState, console, err_console

__all__ = ["app"]

app = typer.Typer(help="Author, check and evaluate domains (knowledge_base/<name>/).", no_args_is_help=True)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


@app.command("eval")
def eval_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="the domain"),
    dataset: Path = typer.Argument(..., help="JSONL: {id, messages | question, expected}"),
    modes: str = typer.Option("baseline,examples,full", "--modes", help="comma-separated: baseline, examples, full"),
    out: Path | None = typer.Option(None, "--out", help="report directory (default benchmarks/out/eval-…)"),
    limit: int = typer.Option(0, "--limit", help="only the first N items"),
    backend: str | None = typer.Option(None, "--backend", help="embedded | ollama"),
    model: str | None = typer.Option(None, "--model", help="upstream model name (ollama)"),
) -> None:
    """Score a domain on a labelled set, per mode: valid, field accuracy, exact, per field, confusion tables,
    a chart. Runs on a fresh data dir with memory and learning off."""
    from ..analytics.evaluation import MODES, enum_fields, load_set, run_set
    from ..analytics.eval_report import write_eval

    state: CliState = ctx.obj
    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in MODES]
    if unknown or not chosen:
        raise ConfigError(f"--modes: unknown mode(s) {', '.join(unknown) or '(none)'}; choose from "
                          f"{', '.join(MODES)}")
    items = load_set(dataset, domain=name)
    items = [i for i in items if i.get("domain") == name][: limit or None]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = _commit()
    out = out or Path("benchmarks/out") / f"eval-{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    with tempfile.TemporaryDirectory(prefix="rag-mw-eval-") as tmp:
        mw = state.middleware(**{"data_dir": Path(tmp), "learn": False, "llm.backend": backend, "llm.model": model})
        with mw:
            domain = mw.domains.get(name)  # an unknown domain fails here, before any model call
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("valid {task.fields[valid]} exact {task.fields[exact]}"), TimeRemainingColumn())
            with Progress(*columns, console=err_console) as progress:
                tasks = {m: progress.add_task(m, total=len(items), valid=0, exact=0) for m in chosen}

                def step(mode, row) -> None:
                    t = progress.tasks[tasks[mode.name]]
                    progress.update(tasks[mode.name], advance=1, valid=t.fields["valid"] + int(row["valid"]),
                                    exact=t.fields["exact"] + int(row["exact"]))

                rows = run_set(mw, items, [MODES[m] for m in chosen], on_item=step)
            summaries = write_eval(out, domain=name, set_name=dataset.name, stamp=f"{stamp} · commit {commit}",
                                   rows=rows, enums=enum_fields(domain.validator.json_schema()
                                                                if domain.validator else None),
                                   meta={"domain": name, "set": str(dataset), "modes": chosen, "commit": commit,
                                         "date": stamp, "backend": mw.backend.name})
    table = Table(title=f"{name} · {dataset.name} · {stamp} · {commit}")
    fields = sorted({f for s in summaries.values() for f in s.get("per_field", {})})
    for col in ("mode", "n", "valid", "field acc", "exact", "wrong-valid", "attempts", "p50 ms", *fields):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for mode, s in summaries.items():
        table.add_row(mode, str(s["n"]), f"{s['valid_rate']:.3f}", f"{s['field_accuracy']:.3f}", f"{s['exact']:.3f}",
                      f"{s['wrong_but_valid']:.3f}", f"{s['mean_attempts']:.2f}", f"{s['p50_ms']:.0f}",
                      *[f"{s['per_field'].get(f, 0.0):.2f}" for f in fields])
    console.print(table)
    console.print(f"report: {out / 'report.md'} · chart: {out / 'chart.png'} · rows: {out / 'results.json'}")


@app.command("new")
def new_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="the new domain's name (lowercase letters, digits, underscores)"),
    schema: Path | None = typer.Option(None, "--schema", help="a JSON Schema file, copied as output.schema.json"),
    model: str | None = typer.Option(None, "--model", help="a pydantic model: package.module:Class or file.py:Class"),
) -> None:
    """Scaffold knowledge_base/NAME/: domain.yaml (every declarative section as a comment), the schema or
    model, empty examples.jsonl and negatives.jsonl. Without --schema or --model, a starter schema."""
    from ..domains.scaffolding import scaffold

    state: CliState = ctx.obj
    made = scaffold(state.settings().knowledge_base, name, schema=schema, model=model)
    console.print(f"created {made.path}/: {', '.join(made.files)}", markup=False)
    console.print("next steps:")
    for n, step in enumerate(made.next_steps, 1):
        console.print(f"  {n}. {step}", markup=False)


def _near(where: str) -> str:
    """A path relative to the working directory when it is under it."""
    try:
        return str(Path(where).resolve().relative_to(Path.cwd().resolve())) if where else where
    except ValueError:
        return where


@app.command("check")
def check_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="the domain"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    threshold: float = typer.Option(0.9, "--threshold", min=0.0, max=1.0,
                                    help="cosine from which two questions count as near duplicates"),
    no_embed: bool = typer.Option(False, "--no-embed", help="skip the near-duplicate check (no embedding model)"),
) -> None:
    """Find invalid examples (every one, with file and line), enum values no example covers, near-duplicate
    questions with different answers, derived fields that disagree with their map. Exit 1 on any problem."""
    import json

    from ..domains.authoring import check_domain

    state: CliState = ctx.obj
    report = check_domain(state.settings().knowledge_base / name, threshold=threshold, near_duplicates=not no_embed)
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=1))
    else:
        table = Table(title=f"{name}: {report.examples} examples, {report.negatives} negatives, "
                            f"{len(report.problems)} problem(s)", title_justify="left")
        for col in ("kind", "where", "id", "problem"):
            table.add_column(col, overflow="fold")
        for p in report.problems:
            table.add_row(Text(p.kind), Text(_near(p.where)), Text(p.id), Text(p.message))
        if report.problems:
            console.print(table)
        else:
            console.print(f"{name}: {report.examples} examples, {report.negatives} negatives, no problems")
        for note in report.notes:
            console.print(f"note: {note}", markup=False)
    if not report.ok:
        raise typer.Exit(1)
