"""``rag-middleware export finetune``: approved and edited interactions as a PII-masked fine-tuning set."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import RequestError
from ..learning.export import ExportOptions, MemoryAccess, export_finetune
from .context import CliState, console

__all__ = ["app"]

app = typer.Typer(help="Export data sets.", no_args_is_help=True)


@app.command("finetune")
def finetune(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="output directory"),
    fmt: str = typer.Option("chat", "--format", help="chat | prompt-completion"),
    domain: str | None = typer.Option(None, "--domain"),
    tenant: str | None = typer.Option(None, "--tenant", help="only this tenant's interactions"),
    min_score: int | None = typer.Option(None, "--min-score", min=1, max=5, help="only feedback scored this or more"),
    min_confidence: float | None = typer.Option(None, "--min-confidence", min=0.0, max=1.0,
                                                   help="only answers the model gave with this confidence or more"),
    holdout: float = typer.Option(0.1, "--holdout", min=0.0, max=0.9, help="fraction held out, per domain"),
    with_examples: bool = typer.Option(False, "--with-examples", help="keep the few-shot turns in the prompt"),
    near_dup: float = typer.Option(0.95, "--near-dup-threshold", min=0.5, max=1.0),
) -> None:
    """train.jsonl + holdout.jsonl + export_report.json from reviewed interactions (PII masked)."""
    if fmt not in ("chat", "prompt-completion"):
        raise RequestError(f"--format must be chat or prompt-completion, not {fmt!r}")
    opts = ExportOptions(out=out, format=fmt, domain=domain, tenant=tenant, min_score=min_score,
                         min_confidence=min_confidence, holdout=holdout,
                         with_examples=with_examples, near_dup_threshold=near_dup)
    state: CliState = ctx.obj
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with state.middleware() as mw, Progress(*columns, console=console) as progress:
        report = export_finetune(MemoryAccess.of(mw), opts, domains=mw.domains, templates=mw.templates,
                                 num_ctx=mw.settings.llm.num_ctx, progress=progress)
    counts, quality = report["counts"], report["quality"]
    lines = [
        f"fine-tuning export in {out}: train {counts['train']}, holdout {counts['holdout']}",
        f"candidates (approved or edited): {counts['candidates']}; invalid completions left out: {counts['invalid']}",
        "skipped: " + (", ".join(f"{reason} {n}" for reason, n in counts["skipped"].items()) or "none"),
        f"duplicates removed: {report['duplicates_removed']['exact']} exact, "
        f"{report['duplicates_removed']['near']} near",
        "PII masked: " + (", ".join(f"{k} {v}" for k, v in report["pii"]["hits_by_type"].items() if v) or "none"),
        f"tokens (approx.): prompts {report['tokens']['prompt_total']}, completions "
        f"{report['tokens']['completion_total']}",
        f"quality score: {quality['score']}/100",
    ]
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)
    for d in quality["deductions"]:
        console.print(f"  -{d['points']}: {d['reason']}", markup=False, soft_wrap=True)
