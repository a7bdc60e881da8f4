"""Admin routes: ``GET /rag/domains``, ``GET /rag/interactions/{id}`` and those of the learning loop,
``POST /rag/feedback``, ``GET /rag/stats`` and ``GET /rag/ab``; also the upstream's own admin calls (pull, push,
create, copy, delete), which the passthrough guards with the same check.

Who may call them (:func:`check_admin`):

* a token is configured (``server.admin_token``): a request with ``Authorization: Bearer <token>`` (the
  scheme in any case), from anywhere; 401 without it;
* no token, ``server.admin_open`` false (the default): loopback clients only; 403 for the others;
* no token, ``server.admin_open`` true: anyone.

Errors come back as ``{"error": ...}``: 404 for an unknown interaction, 422 for an edit that fails
validation (with ``errors``), 400 for a malformed body.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..analytics.ab import ab_report
from ..memory.db import connect
from ..errors import InvalidEditError, RagMiddlewareError, RequestError
from ..learning.feedback import Feedback, MemoryAccess, apply_feedback
from ..analytics.stats import load_rows, parse_since, read_stats
from ..config import ServerSettings
from .context import ServerContext
from .upstream import bearer
from .wire import clip, read_json_object, validated

__all__ = ["ACCESS_TEXT", "UPSTREAM_ADMIN", "access", "check_admin", "routes"]

# the upstream's admin calls: (method, path)
UPSTREAM_ADMIN = {("DELETE", "/api/delete"), ("POST", "/api/pull"), ("POST", "/api/push"), ("POST", "/api/create"),
                  ("POST", "/api/copy")}


class UnauthorizedError(RagMiddlewareError):
    http_status = 401

    def __init__(self) -> None:
        super().__init__("this admin route needs 'Authorization: Bearer <admin token>'")


class ForbiddenError(RagMiddlewareError):
    http_status = 403

    def __init__(self) -> None:
        super().__init__("admin routes are served to loopback clients only when no admin token is set "
                         "(set server.admin_token, or serve with --admin-open)")


ACCESS_TEXT = {
    "token": "admin routes need the admin token",
    "loopback": "no admin token: admin routes are served to loopback clients only (set server.admin_token, "
                "or --admin-open)",
    "open": "no admin token and admin_open: admin routes are served to every client",
}


def access(server: ServerSettings) -> str:
    """Who may call the admin routes: 'token', 'loopback' or 'open' (what the server says at start)."""
    return "token" if server.admin_token else ("open" if server.admin_open else "loopback")


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def check_admin(request: Request) -> None:
    """Raise unless the caller may use an admin route (the module's docstring says who may)."""
    server = request.app.state.ctx.settings.server
    mode = access(server)
    if mode == "token":
        given = bearer(request.headers.get("authorization", ""))
        if given is None or not hmac.compare_digest(given.encode(), server.admin_token.encode()):
            raise UnauthorizedError()
    elif mode == "loopback" and not _loopback(request.client.host if request.client else None):
        raise ForbiddenError()


async def domains(request: Request) -> Response:
    check_admin(request)
    ctx: ServerContext = request.app.state.ctx
    out = []
    for domain in await anyio.to_thread.run_sync(ctx.mw.domains.load_all):
        out.append({"name": domain.name, "model": f"{domain.name}:latest",
                    "upstream_model": ctx.router.upstream_model(domain.name), "free_text": domain.free_text,
                    "examples": len(domain.examples), "negatives": len(domain.negatives)})
    return JSONResponse({"domains": out, "template_version": ctx.mw.templates.version})


async def interaction(request: Request) -> Response:
    check_admin(request)
    ctx: ServerContext = request.app.state.ctx
    interaction_id = request.path_params["interaction_id"]
    found = await anyio.to_thread.run_sync(ctx.mw.journal.get, interaction_id)
    if found is None:
        return JSONResponse({"error": f"no interaction {clip(interaction_id)}"}, status_code=404)
    return Response(found.model_dump_json(), media_type="application/json")


async def feedback(request: Request) -> Response:
    """``{interaction_id, action, score?, edited_output?, reason?, reviewer?, notes?}``."""
    check_admin(request)
    ctx: ServerContext = request.app.state.ctx
    data, _ = await read_json_object(request)
    data = {k: v for k, v in data.items() if k not in ("created_at", "updated_at")}
    fb = validated(Feedback, data, what="feedback")
    try:
        result = await anyio.to_thread.run_sync(
            functools.partial(apply_feedback, MemoryAccess.of(ctx.mw), ctx.mw.domains, fb))
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
    check_admin(request)
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
    check_admin(request)
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
        Route("/rag/domains", domains, methods=["GET"]),
        Route("/rag/interactions/{interaction_id}", interaction, methods=["GET"]),
        Route("/rag/feedback", feedback, methods=["POST"]),
        Route("/rag/stats", stats, methods=["GET"]),
        Route("/rag/ab", ab, methods=["GET"]),
    ]
