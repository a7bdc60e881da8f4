"""The ``rag-middleware`` command. One module per command group; errors become one line and an exit code.

May import: every package (it is the top floor).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from ..errors import RagMiddlewareError
from .context import CliState, err_console

__all__ = ["app", "main"]

app = typer.Typer(
    name="rag-middleware",
    help="Retrieval-augmented few-shot prompting, validated JSON and replay for small local LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", help="TOML settings file (default: RAG_MW_CONFIG or ./rag-middleware.toml)"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="where records and memory live"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log what happens"),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    overrides = {"data_dir": data_dir} if data_dir else {}
    ctx.obj = CliState(config=config, overrides=overrides)


def _register() -> None:
    from . import ab, ask, demo, domains, export, feedback, memory, prompts, replay, review, serve, stats, tune

    ask.register(app)
    demo.register(app)
    replay.register(app)
    serve.register(app)
    app.add_typer(prompts.app, name="prompts")
    app.add_typer(memory.app, name="memory")
    feedback.register(app)
    review.register(app)
    stats.register(app)
    app.add_typer(export.app, name="export")
    app.add_typer(ab.app, name="ab")
    app.add_typer(domains.app, name="domains")
    tune.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Usage errors are click's (usage line, exit 2); our errors become one line and their exit code."""
    try:
        app(args=argv, standalone_mode=True)
    except RagMiddlewareError as exc:
        err_console.print(f"[red]error:[/red] {exc.one_line()}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
