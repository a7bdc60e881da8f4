"""``rag-middleware serve``: the drop-in Ollama-compatible server."""

from __future__ import annotations

import logging

import typer

from .context import CliState, err_console

__all__ = ["register"]


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="default 127.0.0.1"),
    port: int | None = typer.Option(None, "--port", help="default 11435"),
    upstream: str | None = typer.Option(None, "--upstream",
                                           help="Ollama URL, or 'embedded' (default: OLLAMA_HOST or local Ollama)"),
    default_domain: str | None = typer.Option(None, "--default-domain",
                                                 help="augment requests naming an upstream model with this domain"),
    admin_open: bool = typer.Option(False, "--admin-open",
                                    help="with no admin token, serve the admin routes (/rag/feedback, /rag/stats, "
                                         "upstream pull/delete, ...) to every client, not only to loopback ones"),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Serve Ollama's API (and /v1/chat/completions): domain models are augmented, the rest passes through."""
    import uvicorn

    from ..server import create_app
    from ..server.admin import ACCESS_TEXT, access

    state: CliState = ctx.obj
    settings = state.settings(**{"server.host": host, "server.port": port, "server.upstream": upstream,
                                 "server.default_domain": default_domain,
                                 "server.admin_open": True if admin_open else None})
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), format="%(message)s", force=True)
    app = create_app(settings)
    err_console.print(f"rag-middleware serving on http://{settings.server.host}:{settings.server.port} "
                      f"(upstream: {app.state.ctx.upstream_label}; "
                      f"models: {', '.join(app.state.ctx.router.virtual_models())})")
    err_console.print(ACCESS_TEXT[access(settings.server)])
    uvicorn.run(app, host=settings.server.host, port=settings.server.port, log_level=log_level,
                access_log=False, timeout_graceful_shutdown=int(settings.server.shutdown_timeout))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
