"""``rag-middleware demo``: answer a few requests on the embedded defaults and show what happened."""

from __future__ import annotations

import typer
from rich.rule import Rule

from ..errors import AttemptsExhaustedError
from .context import CliState, console
from .explain import dumps, show_attempts, show_selection

__all__ = ["register"]

DEMO_REQUESTS = [
    ("data_ops", "Columns: region, product, units, price\nTotal units per region, shown as a pie chart."),
    ("data_ops", "Columns: customer, email, signup_date, plan\n"
                 "Remove duplicate rows, then sort by signup_date, newest first."),
    ("data_ops", "Columns: city, temperature, date\nKeep only rows where temperature is above 30."),
    ("assistant", "What is the difference between a mean and a median?"),
]


def demo(ctx: typer.Context) -> None:
    """Answer a few requests with the packaged models: retrieval, selection, validation, recording."""
    state: CliState = ctx.obj
    console.print("Loading the packaged MiniLM embedder and Gemma 3 270M (first run assembles the model file)…")
    with state.middleware() as mw:
        valid = 0
        for domain, request in DEMO_REQUESTS:
            console.print(Rule(f"[bold]{domain}[/bold]"))
            console.print(request, markup=False)
            try:
                result = mw.ask(request, domain=domain)
            except AttemptsExhaustedError as exc:
                show_attempts(exc.attempts)
                console.print(f"[red]no valid answer[/red]: {exc.one_line()}")
                continue
            valid += 1
            show_selection(result.selected, result.negatives)
            show_attempts(result.attempts)
            console.print(dumps(result.output) if not isinstance(result.output, str) else result.output, markup=False)
            console.print(f"[dim]interaction {result.interaction_id} · template {result.template_version} · "
                          f"{result.timings_ms.get('total', 0):.0f} ms[/dim]")
        console.print(Rule())
        console.print(f"{valid}/{len(DEMO_REQUESTS)} answered; records in {mw.settings.db_path}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
