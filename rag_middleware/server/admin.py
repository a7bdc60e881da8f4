"""Admin routes of the learning loop: ``POST /rag/feedback`` and ``GET /rag/stats`` (and ``GET /rag/ab``).

All of them take ``Authorization: Bearer <server.admin_token>`` when a token is configured. Errors come back
as ``{"error": ...}``: 404 for an unknown interaction, 422 for an edit that fails validation (with
``errors``), 400 for a malformed body.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..abtest import ab_report
from ..db import connect
from ..errors import InvalidEditError, RequestError
from ..feedback import Feedback, apply_feedback
from ..stats import load_rows, parse_since, read_stats
from .context import ServerContext
from .wire import read_json_object, validated

__all__ = ["routes"]


def _check_admin(request: Request) -> None:
    from .app import _admin  # the one bearer-token check (app.py imports this module)

    _admin(request)


async def feedback(request: Request) -> Response:
    """``{interaction_id, action, score?, edited_output?, reason?, reviewer?, notes?}``."""
    _check_admin(request)
    ctx: ServerContext = request.app.state.ctx
    data, _ = await read_json_object(request)
    data = {k: v for k, v in data.items() if k not in ("created_at", "updated_at")}
    fb = validated(Feedback, data, what="feedback")
    try:
        result = await anyio.to_thread.run_sync(functools.partial(apply_feedback, ctx.mw, fb))
    except InvalidEditError as exc:
        return JSONResponse({"error": exc.one_line(), "errors": exc.errors}, status_code=exc.http_status)
    return JSONResponse({
        "interaction_id": fb.interaction_id, "reviewer": fb.reviewer, "action": fb.action,
        "replaced": result.replaced, "effective": result.effective,
        "memory": {"id": result.memory.id, "kind": result.memory.kind, "status": result.memory.status,
                   "source": result.memory.source},
    })


async def stats(request: Request) -> Response:
    """``?by=domain|template|model|day|variant&since=ISO&domain=D``: the same numbers as ``rag-middleware stats``."""
    _check_admin(request)
    ctx: ServerContext = request.app.state.ctx
    q = request.query_params
    since = parse_since(q.get("since"))
    domain = q.get("domain") or None
    if domain:
        await anyio.to_thread.run_sync(ctx.mw.domains.get, domain)
    out = await anyio.to_thread.run_sync(functools.partial(read_stats, ctx.settings.db_path, by=q.get("by") or None,
                                                           since=since, domain=domain))
    return JSONResponse(out)


async def ab(request: Request) -> Response:
    """``?domain=D``: the A/B comparison of the domain's template-set variants."""
    _check_admin(request)
    ctx: ServerContext = request.app.state.ctx
    name = request.query_params.get("domain") or ""
    if not name:
        raise RequestError("give ?domain=<domain>")

    def run() -> dict[str, Any]:
        dom = ctx.mw.domains.get(name)
        conn = connect(ctx.settings.db_path)
        try:
            return ab_report(load_rows(conn, domain=dom.name), domain=dom.name, declared=dom.spec.variants)
        finally:
            conn.close()

    return JSONResponse(await anyio.to_thread.run_sync(run))


def routes() -> list[Route]:
    return [
        Route("/rag/feedback", feedback, methods=["POST"]),
        Route("/rag/stats", stats, methods=["GET"]),
        Route("/rag/ab", ab, methods=["GET"]),
    ]
