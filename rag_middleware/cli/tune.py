"""``rag-middleware tune --domain D``: cross-validated search of a domain's selection and vote settings;
the winner goes live as an override in the data dir when a paired test says it is no worse."""

from __future__ import annotations

import json
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import ConfigError
from .context import CliState, console, err_console

__all__ = ["register"]


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def trials_table(result: dict[str, Any]) -> Table:
    t = Table(title=f"tune {result['domain']} · {result['items']['search']} items · {len(result['folds'])} folds",
              title_justify="left")
    for col in ("#", "setting", "field acc", "exact", "valid", "calls", ""):
        t.add_column(col, justify="left" if col in ("setting", "") else "right", overflow="fold")
    for trial in result["trials"]:
        mark = " ".join(m for m, on in (("current", trial["current"]), ("winner", trial["winner"])) if on)
        t.add_row(str(trial["n"]), trial["label"], _fmt(trial["accuracy"]), _fmt(trial["exact"]),
                  _fmt(trial["valid"]), str(trial["calls"]), mark)
    return t


def decision_lines(result: dict[str, Any], version: str | None, dry_run: bool) -> list[str]:
    d = result["decision"]
    lines = []
    if d.get("test"):
        lines.append(f"paired comparison on {d['on']}: {d['test']}; current exact-only {d['worse']}, "
                     f"winner exact-only {d['better']}, p = {d['p_value']:.4f}")
    verdict = d["reason"]
    if d.get("promote"):
        verdict += (" (dry run: nothing written)" if dry_run else f"; live override {version}")
    lines.append(f"decision: {verdict}")
    return lines + [f"note: {n}" for n in result.get("notes", [])]


def report_markdown(result: dict[str, Any], lines: list[str], stamp: str) -> str:
    head = ["#", "setting", "field acc", "exact", "valid", "calls", ""]
    out = [f"# tune {result['domain']} (tenant {result['tenant']})", "", stamp, "",
           f"Items: {result['items']['search']} in the search ({result['items']['curated']} curated, "
           f"{result['items']['reviewed']} reviewed available), {len(result['folds'])} folds by id hash; "
           f"{result['calls']} model calls of a budget of {result['options']['budget']}; "
           f"search stopped: {result['stopped']}.", "",
           "Current: `" + json.dumps(result["start"]) + "` (a null vote knob: each voted path keeps its own)", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in result["trials"]:
        mark = " ".join(m for m, on in (("current", t["current"]), ("winner", t["winner"])) if on)
        out.append(f"| {t['n']} | {t['label']} | {t['accuracy']:.3f} | {t['exact']:.3f} | {t['valid']:.3f} | "
                   f"{t['calls']} | {mark} |")
    out += ["", "## Decision", "", *[f"- {line}" for line in lines], "",
            "Override patch: `" + json.dumps(result["patch"]) + "`", "",
            "Each item is answered with its fold held out (curated examples, negatives and memory records), on the "
            "domain learnt from the other folds' examples only. "
            "Decoding is deterministic, so a setting's answers are computed once and reused by the paired test."]
    if result["decision"].get("test") and not result["items"]["decision"]:
        out += ["", "Without enough reviewed answers the paired test reuses the answers the winner was chosen on: "
                "it guards against promoting a worse setting, but the winner's score is optimistic. Review answers "
                "(8 or more) for a fresh decision set."]
    return "\n".join(out) + "\n"


def write_chart(path: Path, result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    trials = result["trials"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(trials) + 3), 4.2))
    xs = list(range(len(trials)))
    colours = ["tab:green" if t["winner"] else "tab:gray" if t["current"] else "tab:blue" for t in trials]
    ax.bar(xs, [t["accuracy"] for t in trials], color=colours)
    (line,) = ax.plot(xs, [t["exact"] for t in trials], "o-", color="tab:orange")
    ax.set_xticks(xs, [t["label"] for t in trials], rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("cross-validated score")
    ax.set_title(f"tune {result['domain']}: every setting tried", fontsize=10)
    ax.legend([Patch(color="tab:gray"), Patch(color="tab:blue"), Patch(color="tab:green"), line],
              ["field accuracy: current", "field accuracy: tried", "field accuracy: winner", "exact"],
              loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tune_cmd(
    ctx: typer.Context,
    domain: str = typer.Option(..., "--domain", "-d", help="the domain to tune"),
    budget: int = typer.Option(96, "--budget", min=1, help="most model calls to make (~10 min at 6 s a call)"),
    items: int = typer.Option(24, "--items", min=2, help="most items to replay per setting"),
    folds: int = typer.Option(3, "--folds", min=2, max=10, help="cross-validation folds (by id hash)"),
    tenant: str | None = typer.Option(None, "--tenant", help="whose reviewed answers (default tenant)"),
    max_attempts: int = typer.Option(1, "--max-attempts", min=1, max=10, help="attempts per item"),
    test: str = typer.Option("mcnemar", "--test", help="mcnemar (exact match) or bootstrap (field accuracy)"),
    alpha: float = typer.Option(0.05, "--alpha", min=0.0001, max=0.5, help="significance level of the test"),
    out: Path | None = typer.Option(None, "--out", help="report dir (default <data_dir>/tune/<domain>-<stamp>)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="report only: never write the live override"),
) -> None:
    """Choose k, fetch_k, mmr_lambda, negatives_k, CoT and the vote margin/decide/min_similarity by cross-validated
    replay over the domain's curated examples and reviewed answers; promote the winner as an override in the
    data dir when a paired test says it is no worse."""
    from ..learning.tune import TuneOptions, promote, run_tune

    if test not in ("mcnemar", "bootstrap"):
        raise ConfigError(f"--test {test!r}: choose mcnemar or bootstrap")
    state: CliState = ctx.obj
    settings = state.settings()
    options = TuneOptions(tenant=tenant, folds=folds, budget=budget, items=items, max_attempts=max_attempts,
                          test=test, alpha=alpha)
    now = datetime.now(UTC)
    out = out or settings.data_dir / "tune" / f"{domain}-{now:%Y%m%d-%H%M%S}"
    with state.middleware() as mw:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("model calls"),
                   TimeElapsedColumn(), TextColumn("[dim]{task.fields[setting]}"))
        with Progress(*columns, console=err_console) as progress:
            task = progress.add_task(f"tune {domain}", total=budget, setting="")

            def on_call(calls: int, label: str) -> None:
                progress.update(task, advance=calls, setting=label)

            result = run_tune(mw, domain=domain, options=options, on_call=on_call)
    version = None if dry_run else promote(settings.data_dir, result)
    result["live_version"] = version
    result["dry_run"] = dry_run
    lines = decision_lines(result, version, dry_run)
    stamp = f"{now:%Y-%m-%d %H:%M UTC}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune.json").write_text(json.dumps({**result, "date": stamp}, indent=1, default=str), encoding="utf-8")
    (out / "report.md").write_text(report_markdown(result, lines, stamp), encoding="utf-8")
    write_chart(out / "chart.png", result)
    console.print(trials_table(result))
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)
    console.print(f"report: {out / 'report.md'} · chart: {out / 'chart.png'} · data: {out / 'tune.json'}",
                  markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_cmd)
