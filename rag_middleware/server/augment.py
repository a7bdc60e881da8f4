"""One augmented exchange, whatever the wire format: run the pipeline off the event loop, buffer validated
answers, stream free-text ones live, and turn failures into (status, message)."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from ..backends.llm.base import StreamChunk
from ..errors import AttemptsExhaustedError, RagMiddlewareError
from ..pipeline import AskResult, Middleware
from ..records import new_id
from .routing import Router
from .wire import Usage

__all__ = ["Answer", "Augmenter", "Exchange", "client_options"]

# client sampling options honoured for free-text domains; schema'd domains keep their tuned options
_CLIENT_OPTIONS = {"temperature", "top_p", "top_k", "min_p", "seed", "num_predict", "stop", "repeat_penalty"}


def client_options(options: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (options or {}).items() if k in _CLIENT_OPTIONS and v is not None}


@dataclass
class Exchange:
    domain: str
    tenant: str | None
    client_model: str
    messages: list[dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)
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


def usage_of(chunk: StreamChunk) -> Usage:
    c = chunk.completion
    if c is None:
        return Usage()
    return Usage(prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                 total_ns=int(c.duration_ms * 1e6), generate_ns=int(c.duration_ms * 1e6), done_reason=c.done_reason)
