"""One augmented exchange, whatever the wire format: run the pipeline off the event loop, buffer validated
answers, stream free-text ones live, and turn failures into (status, message)."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ..backends.llm.base import StreamChunk
from ..errors import AttemptsExhaustedError, RagMiddlewareError, RequestError
from ..options import ModelOptions
from ..pipeline import AskResult, Middleware
from ..records import new_id
from .routing import Router
from .wire import Usage, clip

__all__ = ["Answer", "Augmenter", "Exchange", "client_options", "failure_headers", "refuse_images", "reply_headers"]

log = logging.getLogger("rag_middleware.server")

if TYPE_CHECKING:
    from starlette.requests import Request

    from .context import ServerContext


def client_options(options: ModelOptions | None) -> dict[str, Any]:
    """The client's sampling options, honoured for free-text domains (schema'd domains keep their tuned ones)."""
    return options.sampling() if options is not None else {}


@dataclass
class Exchange:
    domain: str
    tenant: str | None
    client_model: str
    messages: list[dict[str, Any]]
    options: ModelOptions | None = None
    interaction_id: str = field(default_factory=new_id)
    user: str | None = None  # keeps an A/B-tested domain's variant sticky


@dataclass
class Answer:
    text: str
    usage: Usage
    interaction_id: str
    valid: bool
    errors: list[str] = field(default_factory=list)


def _usage(result: AskResult) -> Usage:
    last = result.attempts[-1] if result.attempts else None
    return Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                 total_ns=int(result.timings_ms.get("total", 0) * 1e6),
                 generate_ns=int(result.timings_ms.get("generate", 0) * 1e6),
                 done_reason=(last.done_reason if last and last.done_reason else "stop"))


class InvalidAnswerError(RagMiddlewareError):
    http_status = 422


class Augmenter:
    def __init__(self, mw: Middleware, router: Router, *, on_invalid: str) -> None:
        self.mw = mw
        self.router = router
        self.on_invalid = on_invalid

    def is_free_text(self, domain: str) -> bool:
        return self.mw.domains.get(domain).free_text

    async def recorded(self, interaction_id: str) -> bool:
        """Whether the interaction was recorded (a request refused before the pipeline started was not)."""
        return await anyio.to_thread.run_sync(self.mw.journal.get, interaction_id) is not None

    async def answer(self, ex: Exchange) -> Answer:
        """The validated (or free-text) answer, computed in full before anything is sent."""
        dom = self.mw.domains.get(ex.domain)
        call = functools.partial(
            self.mw.ask, ex.messages, domain=ex.domain, tenant=ex.tenant, raise_on_invalid=False,
            model=self.router.upstream_model(ex.domain), interaction_id=ex.interaction_id, user=ex.user,
            options=client_options(ex.options) if dom.free_text else None,
        )
        result = await anyio.to_thread.run_sync(call)
        if not result.valid:
            errors = result.attempts[-1].errors if result.attempts else []
            if self.on_invalid != "best_candidate":
                raise InvalidAnswerError(
                    f"no valid answer after {len(result.attempts)} attempt(s); failing fields: {'; '.join(errors)}")
            return Answer(text=result.text, usage=_usage(result), interaction_id=result.interaction_id, valid=False,
                          errors=errors)
        text = result.output if isinstance(result.output, str) else json.dumps(result.output, ensure_ascii=False)
        return Answer(text=text, usage=_usage(result), interaction_id=result.interaction_id, valid=True)

    async def open_stream(self, ex: Exchange) -> AsyncIterator[StreamChunk]:
        """A free-text answer streamed live. The first chunk is fetched before this returns, so a failure
        before the first byte can still get its real status."""
        gen = self.mw.stream(ex.messages, domain=ex.domain, tenant=ex.tenant, model=self.router.upstream_model(ex.domain),
                             interaction_id=ex.interaction_id, options=client_options(ex.options), user=ex.user)
        sentinel = object()

        async def pull() -> Any:
            return await anyio.to_thread.run_sync(next, gen, sentinel)

        try:
            first = await pull()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(gen.close)
            raise

        async def rest() -> AsyncIterator[StreamChunk]:
            item = first
            try:
                while item is not sentinel:
                    yield item
                    item = await pull()
            finally:
                with anyio.CancelScope(shield=True):  # the client may be gone: still end upstream and record
                    await anyio.to_thread.run_sync(gen.close)

        return rest()


def refuse_images(model: str, parts: list[str]) -> None:
    """An augmented request answers text: images (or audio, files) would be dropped silently, so they are refused."""
    if parts:
        raise RequestError(f"{clip(model)} answers text only and cannot take {', '.join(sorted(set(parts)))}; "
                           "send the request without them, or to a multimodal model")


def reply_headers(ctx: ServerContext, request: Request, ex: Exchange, *, asked_format: bool) -> dict[str, str]:
    """The headers of an augmented answer: the interaction's id; ``X-RAG-Format`` when the client asked for a
    format (the domain's own schema was used, or a free-text domain ignored it); ``X-RAG-Input-Cleaned`` when
    lone surrogates of the request were replaced (also logged, with the id of the record that holds the text)."""
    headers = {"X-RAG-Interaction-Id": ex.interaction_id}
    if asked_format:
        headers["X-RAG-Format"] = "ignored: free-text domain" if ctx.augmenter.is_free_text(ex.domain) else (
            "domain schema: the request's format was replaced by the domain's output schema")
    replaced = getattr(request.state, "replaced_surrogates", 0)
    if replaced:
        headers["X-RAG-Input-Cleaned"] = f"{replaced} lone surrogate(s) replaced by U+FFFD"
        log.warning(json.dumps({"event": "input_cleaned", "interaction_id": ex.interaction_id,
                                "lone_surrogates": replaced}))
    return headers


async def failure_headers(ctx: ServerContext, ex: Exchange) -> dict[str, str]:
    """The id of a failed exchange is only given when it names a record (a request refused before the
    pipeline started has none)."""
    return {"X-RAG-Interaction-Id": ex.interaction_id} if await ctx.augmenter.recorded(ex.interaction_id) else {}


def usage_of(chunk: StreamChunk) -> Usage:
    c = chunk.completion
    if c is None:
        return Usage()
    return Usage(prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                 total_ns=int(c.duration_ms * 1e6), generate_ns=int(c.duration_ms * 1e6), done_reason=c.done_reason)
