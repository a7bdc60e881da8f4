"""What every handler needs, built once per app: the pipeline, the router, the upstream.

Building the context turns on guarded hot reload of the prompt templates: the files are stat'ed at most
every ``TEMPLATE_CHECK_SECONDS``; an edit that passes the lint goes live for the next request, one with lint
errors is refused (the last good version stays live) and shows in ``/rag/health`` and the log.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from starlette.requests import Request

from ..llm.base import Completion, GenerateRequest, StreamChunk
from ..config import Settings
from ..errors import RequestError, TemplateError
from ..templating.lint import errors_only, lint_snapshot
from ..options import ModelOptions
from ..request.pipeline import Middleware
from ..request.route import TENANT_RE
from ..templating.engine import TemplateSnapshot
from .augment import Augmenter, client_options, pull_stream
from .gate import Meter, PriorityGate, metered
from .routing import Route, Router
from .upstream import HttpUpstream
from .wire import clip

__all__ = ["TEMPLATE_CHECK_SECONDS", "ModelNotFoundError", "ServerContext", "plain_completion", "plain_options",
           "plain_stream", "task_stub"]


class ModelNotFoundError(RequestError):
    http_status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f'model "{clip(name)}" not found, try pulling it first')


def _tagged(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"

TEMPLATE_CHECK_SECONDS = 0.5


@dataclass
class ServerContext:
    settings: Settings
    mw: Middleware
    router: Router
    augmenter: Augmenter
    upstream: HttpUpstream | None  # None: the embedded model is the upstream
    upstream_label: str
    gate: PriorityGate | None = field(default=None)  # the embedded model's queue, user requests first

    def __post_init__(self) -> None:
        self.mw.templates.watch(validator=self.lint_templates, check_interval=TEMPLATE_CHECK_SECONDS)
        # load and lint now: a broken set is logged at start, not at a request; augmented requests answer with
        # the error and /rag/health shows it
        with contextlib.suppress(TemplateError):
            self.mw.templates.current()

    def lint_templates(self, snapshot: TemplateSnapshot) -> list[str]:
        return errors_only(lint_snapshot(snapshot, self.mw.domains))

    def templates_health(self) -> dict[str, Any]:
        started = time.perf_counter()
        status = self.mw.templates.status()
        rejected = status["rejected"]
        if rejected is None:
            detail = f"version {status['version']} live since {status['live_since']}"
        else:
            detail = (f"edit {rejected['version'] or '(unreadable)'} refused, serving "
                      f"{status['version'] or 'nothing'}: " + "; ".join(rejected["problems"][:5]))
        return {"ok": status["ok"], "latency_ms": round((time.perf_counter() - started) * 1000, 2), "detail": detail,
                "version": status["version"], "rejected": rejected}

    def tenant_of(self, request: Request) -> str | None:
        """The tenant header, checked here so that a bad one is refused before the pipeline (and no record)."""
        tenant = request.headers.get(self.settings.server.tenant_header) or None
        if tenant is not None and not TENANT_RE.match(tenant):
            raise RequestError(f"{self.settings.server.tenant_header} {clip(tenant)!r} must match "
                               "[A-Za-z0-9_-]{1,64}")
        return tenant

    def check_embedded_model(self, name: str) -> None:
        """With the embedded upstream, a request that is not augmented must name the embedded model (or one of
        ours): 400 without a model, 404 for any other, as Ollama answers."""
        if not name:
            raise RequestError("model is required")
        if self.router.domain_of_model(name) is None and _tagged(name) != _tagged(self.settings.llm.model):
            raise ModelNotFoundError(name)

    @staticmethod
    def user_of(request: Request, body_user: Any = None) -> str | None:
        """Who asks, for sticky A/B variants: ``X-RAG-User``, else ``X-RAG-Session``, else the OpenAI ``user``."""
        found = request.headers.get("x-rag-user") or request.headers.get("x-rag-session") or body_user
        return str(found)[:200] if found else None


HISTORY_USER = re.compile(r"<chat_history>\s*USER:\s*(?P<text>.*?)(?:\n[A-Z]+:|</chat_history>)", re.S)
TITLE_WORDS = 5


def plain_options(ctx: ServerContext, options: ModelOptions | None, route: Route) -> dict[str, Any]:
    """Ollama's defaults for a plain request, the client's options on top. Unless the client asks for a positive
    num_predict (Open WebUI's ``max_tokens``), it is ``server.plain_num_predict``: Ollama's -1 runs to the end
    of the context, minutes on a small CPU model. A background task's num_predict is then capped by
    ``server.background_num_predict``."""
    opts: dict[str, Any] = {"temperature": 0.8, "num_predict": -1, "stop": ["\nRequest:"], **client_options(options)}
    plain = ctx.settings.server.plain_num_predict
    asked = opts.get("num_predict")
    if plain >= 0 and (asked is None or int(asked) <= 0):
        opts["num_predict"] = plain
    cap = ctx.settings.server.background_num_predict
    if route.background and cap >= 0:
        asked = opts.get("num_predict")
        opts["num_predict"] = cap if asked is None or asked < 0 else min(int(asked), cap)
    return opts


def task_stub(ctx: ServerContext, route: Route, messages: list[dict[str, Any]]) -> str | None:
    """A title or tags task answered without the model (``server.background_stub``, embedded upstream only),
    in the JSON Open WebUI parses: the first words of the chat's first user message, no tags."""
    if not (ctx.settings.server.background_stub and ctx.upstream is None and route.task in ("title", "tags")):
        return None
    if route.task == "tags":
        return json.dumps({"tags": []})
    last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    found = HISTORY_USER.search(last)
    words = (found["text"] if found else "").split()
    return json.dumps({"title": " ".join(words[:TITLE_WORDS]) or "New chat"}, ensure_ascii=False)


def _plain_request(ctx: ServerContext, messages: list[dict[str, Any]], options: ModelOptions | None,
                   route: Route) -> GenerateRequest:
    prompt = ctx.mw.assembler.flatten_plain(messages)
    return GenerateRequest(model=ctx.settings.llm.model, messages=messages, prompt=prompt,
                           options=plain_options(ctx, options, route))


async def plain_completion(ctx: ServerContext, messages: list[dict[str, Any]], options: ModelOptions | None,
                           route: Route, meter: Meter) -> Completion:
    """A request for no domain, answered by the embedded model (there is no Ollama to pass it to)."""
    stub = task_stub(ctx, route, messages)
    if stub is not None:
        return Completion(text=stub, model=ctx.settings.llm.model, prompt_ms=0.0, eval_ms=0.0)
    request = _plain_request(ctx, messages, options, route)
    with metered(meter):
        return await anyio.to_thread.run_sync(functools.partial(ctx.mw.backend.generate, request))


async def plain_stream(ctx: ServerContext, messages: list[dict[str, Any]], options: ModelOptions | None,
                       route: Route, meter: Meter) -> AsyncIterator[StreamChunk]:
    """The same, streamed live as the model produces it; the first chunk is fetched before this returns."""
    stub = task_stub(ctx, route, messages)
    if stub is not None:
        done = Completion(text=stub, model=ctx.settings.llm.model, prompt_ms=0.0, eval_ms=0.0)
        chunks: Iterator[StreamChunk] = iter([StreamChunk(text=stub), StreamChunk(done=True, completion=done)])
    else:
        chunks = ctx.mw.backend.stream(_plain_request(ctx, messages, options, route))
    return await pull_stream(chunks, meter)
