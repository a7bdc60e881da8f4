"""The drop-in Ollama-compatible server (and OpenAI-compatible endpoints), as a Starlette app."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, UTC
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..config import Settings
from ..errors import RagMiddlewareError
from ..llm import make_backend
from ..request.pipeline import Middleware
from . import admin, ollama_api, openai_api
from .augment import Augmenter
from .context import ServerContext
from .gate import GatedBackend, PriorityGate
from .routing import Router
from .upstream import EMBEDDED, HttpUpstream
from .warm import Warmup
from .wire import clip, now_rfc3339, read_json_object

__all__ = ["create_app"]

log = logging.getLogger("rag_middleware.server")
EMBEDDED_VERSION = "0.12.0"  # what /api/version says when there is no Ollama behind us
EMBEDDED_DETAILS = {"format": "gguf", "family": "gemma3", "parameter_size": "270M", "quantization_level": "Q4_K_M"}
ERROR_LIMIT = 2000  # characters of an error text; what it echoes of the request is clipped before, this is a net
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def _error(request: Request, status: int, message: str) -> JSONResponse:
    message = clip(message, ERROR_LIMIT)
    if request.url.path.startswith("/v1/"):
        return openai_api.error_response(status, message)
    return ollama_api.error_response(status, message)


async def _on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RagMiddlewareError)
    return _error(request, exc.http_status, exc.one_line())


async def root(request: Request) -> Response:
    return PlainTextResponse("Ollama is running")


async def version(request: Request) -> Response:
    ctx: ServerContext = request.app.state.ctx
    if ctx.upstream is None:
        return JSONResponse({"version": EMBEDDED_VERSION})
    return await ctx.upstream.forward(request)


async def tags(request: Request) -> Response:
    ctx: ServerContext = request.app.state.ctx
    if ctx.upstream is not None:
        models = await ctx.upstream.models("/api/tags", "models")
    else:
        name = ctx.settings.llm.model
        models = [{"name": name, "model": name, "modified_at": now_rfc3339(), "size": 0, "digest": "",
                   "details": EMBEDDED_DETAILS}]
    ours = []
    for name in ctx.router.virtual_models():
        domain = name.split(":")[0]
        stamp = ctx.router.modified_at(domain)
        ours.append({"name": name, "model": name, "modified_at": stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "size": 0,
                     "digest": "",
                     "details": {"format": "rag-middleware", "family": "rag", "families": ["rag"],
                                 "parameter_size": "", "quantization_level": "",
                                 "parent_model": ctx.router.upstream_model(domain)}})
    return JSONResponse({"models": ours + models})


async def show(request: Request) -> Response:
    """/api/show for one of our models describes the upstream model that answers it (chatbots ask before use)."""
    ctx: ServerContext = request.app.state.ctx
    data, raw = await read_json_object(request)
    name = str(data.get("model") or data.get("name") or "")
    domain = ctx.router.domain_of_model(name)
    if ctx.upstream is None:
        ctx.check_embedded_model(name)
        return JSONResponse({"modelfile": "", "parameters": "", "template": "{{ .Prompt }}",
                             "details": EMBEDDED_DETAILS, "model_info": {}, "capabilities": ["completion"],
                             "modified_at": now_rfc3339()})
    if domain is not None:
        data["model"] = ctx.router.upstream_model(domain)
        data.pop("name", None)
        raw = json.dumps(data).encode()
    return await ctx.upstream.forward(request, raw)


async def running(request: Request) -> Response:
    """/api/ps: the upstream's loaded models; with the embedded upstream, the embedded model (in-process)."""
    ctx: ServerContext = request.app.state.ctx
    if ctx.upstream is not None:
        return await ctx.upstream.forward(request)
    name = ctx.settings.llm.model
    until = (datetime.now(UTC) + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return JSONResponse({"models": [{"name": name, "model": name, "size": 0, "digest": "", "details": EMBEDDED_DETAILS,
                                     "expires_at": until, "size_vram": 0, "context_length": ctx.settings.llm.num_ctx}]})


async def passthrough(request: Request) -> Response:
    ctx: ServerContext = request.app.state.ctx
    if (request.method, "/" + request.url.path.strip("/")) in admin.UPSTREAM_ADMIN:
        admin.check_admin(request)  # pull, push, create, copy, delete: the upstream's admin calls
    if ctx.upstream is None:
        return _error(request, 501, f"{clip(request.url.path)} needs an Ollama upstream; this server answers with "
                                    "the embedded model")
    return await ctx.upstream.forward(request)


async def rag_unknown(request: Request) -> Response:
    """/rag/ is ours: a path there that is no route is 404 (405 for a route's other methods), never passed on."""
    for route in request.app.routes:
        if route.path.startswith("/rag/") and route.matches(request.scope)[0] == Match.PARTIAL:
            return _error(request, 405, f"{request.method} is not allowed on {clip(request.url.path)}")
    return _error(request, 404, f"no route {clip(request.url.path)}")


async def health(request: Request) -> Response:
    ctx: ServerContext = request.app.state.ctx
    checks: dict[str, Any] = {}
    if ctx.upstream is not None:
        checks["upstream"] = await ctx.upstream.health()
    else:
        checks["upstream"] = {"ok": True, "url": EMBEDDED, "latency_ms": 0.0, "detail": "in-process model"}
        if ctx.gate is not None:
            checks["upstream"]["queue"] = ctx.gate.status()  # user calls waiting or running, a background one

    def timed(fn) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            detail = fn()
            ok = True
        except Exception as exc:  # noqa: BLE001 - health reports, never raises
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        return {"ok": ok, "latency_ms": round((time.perf_counter() - started) * 1000, 2), "detail": detail}

    ping = getattr(ctx.mw.store, "ping", None)  # a remote store answers one cheap call, not a count per tenant
    checks["store"] = await anyio.to_thread.run_sync(
        lambda: timed(ping if callable(ping) else lambda: f"{ctx.mw.store.count()} records"))
    outbox = getattr(ctx.mw.store, "status", None)  # a remote store's local outbox: writes not yet delivered
    if callable(outbox):
        checks["store"]["outbox"] = await anyio.to_thread.run_sync(outbox)
    checks["embedder"] = await anyio.to_thread.run_sync(
        lambda: timed(lambda: f"{ctx.mw.embedder.name}, dim {ctx.mw.embedder.probe()}"))
    checks["templates"] = await anyio.to_thread.run_sync(ctx.templates_health)  # a refused edit shows here
    status = "ok" if all(c["ok"] for c in checks.values()) else "degraded"
    warm = request.app.state.warmup  # per-domain caches filled at start (server.warm); never degrades the status
    return JSONResponse({"status": status, "version": __version__, **checks,
                         "warm": warm is not None and warm.done})


class AccessLog:
    """One structured log line per request: method, path, status, duration, route (why, the domain, the
    background task's name), interaction id.
    Headers (auth) and bodies (images, prompts) are never logged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        interaction_id = ""

        async def capture(message: Message) -> None:
            nonlocal status, interaction_id
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers", []):
                    if key.lower() == b"x-rag-interaction-id":
                        interaction_id = value.decode()
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            if log.isEnabledFor(logging.INFO):
                route = scope.get("state", {}).get("route")
                log.info(json.dumps({
                    "event": "request", "method": scope["method"], "path": scope["path"], "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                    "domain": getattr(route, "domain", None), "route": getattr(route, "reason", None),
                    "task": getattr(route, "task", None),
                    "interaction_id": interaction_id or None,
                }))


def create_app(settings: Settings, *, middleware: Middleware | None = None) -> Starlette:
    """Build the app. ``settings.server.upstream`` is an Ollama URL or 'embedded'."""
    upstream_url = settings.server.upstream or settings.ollama_host
    embedded = upstream_url == EMBEDDED
    if middleware is None:
        llm = {"backend": "embedded"} if embedded else {"backend": "ollama", "ollama_host": upstream_url}
        mw_settings = settings.model_copy(update={"llm": settings.llm.model_copy(update=llm)})
        # every model call through the gate (the embedded model: user requests first) and timed
        backend = GatedBackend(make_backend(mw_settings), PriorityGate() if embedded else None)
        middleware = Middleware(mw_settings, backend=backend)
    upstream = None if embedded else HttpUpstream(upstream_url, timeout=settings.server.upstream_timeout,
                                                  connect_timeout=settings.retry.connect_timeout,
                                                  admin_token=settings.server.admin_token)
    router = Router(settings, middleware.domains)
    ctx = ServerContext(settings=settings, mw=middleware, router=router,
                        augmenter=Augmenter(middleware, router, on_invalid=settings.server.on_invalid),
                        upstream=upstream, upstream_label=EMBEDDED if embedded else upstream.base_url,
                        gate=getattr(middleware.backend, "gate", None))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        mode = admin.access(settings.server)
        log.info(json.dumps({"event": "start", "upstream": ctx.upstream_label, "domains": router.virtual_models(),
                             "admin": mode, "admin_detail": admin.ACCESS_TEXT[mode]}))
        warmup = app.state.warmup = Warmup(middleware) if settings.server.warm else None
        if warmup is not None:
            warmup.start()  # in a thread: start-up and requests never wait for it
        try:
            yield
        finally:
            if warmup is not None:  # ends after the domain in hand, before the store and embedder are closed
                await anyio.to_thread.run_sync(warmup.stop, settings.server.shutdown_timeout)
            if upstream is not None:
                await upstream.aclose()
            middleware.close()  # every record is already written: each request writes before it answers
            log.info(json.dumps({"event": "stop"}))

    routes = [
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/api/version", version, methods=["GET", "HEAD"]),
        Route("/api/tags", tags, methods=["GET"]),
        Route("/api/chat", ollama_api.chat, methods=["POST"]),
        Route("/api/generate", ollama_api.generate, methods=["POST"]),
        Route("/api/show", show, methods=["POST"]),
        Route("/api/ps", running, methods=["GET"]),
        Route("/v1/chat/completions", openai_api.chat_completions, methods=["POST"]),
        Route("/v1/models", openai_api.models, methods=["GET"]),
        Route("/v1/models/{model:path}", openai_api.model, methods=["GET"]),
        Route("/rag/health", health, methods=["GET"]),
        *admin.routes(),  # /rag/domains, /rag/interactions/{id}, /rag/feedback, /rag/stats, /rag/ab
        Route("/rag/{path:path}", rag_unknown, methods=ALL_METHODS),
        Route("/{path:path}", passthrough, methods=ALL_METHODS),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={RagMiddlewareError: _on_error})
    app.state.ctx = ctx
    app.state.warmup = None  # set at start when server.warm
    app.add_middleware(AccessLog)
    return app
