"""One augmented exchange, whatever the wire format: run the pipeline off the event loop, buffer validated
answers, stream free-text ones live, and turn failures into (status, message)."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ..llm.base import StreamChunk
from ..errors import RagMiddlewareError, RequestError
from ..options import ModelOptions
from ..request.pipeline import AskResult, Middleware
from ..records import new_id
from .gate import Meter, metered
from .routing import Router
from .wire import Usage, clip

__all__ = ["OPENWEBUI_IDS", "Answer", "Augmenter", "Exchange", "client_options", "failure_headers", "measured_usage",
           "openwebui_ids", "pull_stream", "refuse_images", "reply_headers", "usage_of"]

# the request headers Open WebUI sends with ENABLE_FORWARD_USER_INFO_HEADERS=true -> our keys
OPENWEBUI_IDS = {"x-openwebui-chat-id": "chat_id", "x-openwebui-message-id": "message_id",
                 "x-openwebui-user-id": "user_id"}

log = logging.getLogger("rag_middleware.server")

if TYPE_CHECKING:
    from starlette.requests import Request


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
    meter: Meter = field(default_factory=Meter)  # the request's model timings (started when it arrived)
    chat_ids: dict[str, str] = field(default_factory=dict)  # the chatbot's ids for this message (OPENWEBUI_IDS)


@dataclass
class Answer:
    text: str
    usage: Usage
    interaction_id: str
    valid: bool
    errors: list[str] = field(default_factory=list)


def measured_usage(meter: Meter, *, prompt_tokens: int, completion_tokens: int, done_reason: str = "stop",
                   interaction_id: str | None = None) -> Usage:
    """The usage of an answer: the tokens, and the durations the request's model calls reported."""
    d = meter.durations()
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_ns=d["total_duration"],
                 load_ns=d["load_duration"], prompt_ns=d["prompt_eval_duration"], eval_ns=d["eval_duration"],
                 done_reason=done_reason or "stop", interaction_id=interaction_id)


def _usage(result: AskResult, meter: Meter) -> Usage:
    last = result.attempts[-1] if result.attempts else None
    return measured_usage(meter, prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                          done_reason=last.done_reason if last and last.done_reason else "stop",
                          interaction_id=result.interaction_id)


def openwebui_ids(headers: Any) -> dict[str, str]:
    """Open WebUI's ids of the chat and message (and user) a request answers, from the headers it sends with
    ``ENABLE_FORWARD_USER_INFO_HEADERS=true``; recorded in the interaction's ``request["openwebui"]``."""
    return {key: headers[name][:200] for name, key in OPENWEBUI_IDS.items() if headers.get(name)}


async def pull_stream(gen: Iterator[StreamChunk], meter: Meter) -> AsyncIterator[StreamChunk]:
    """A blocking chunk iterator as an async one, each chunk pulled in a worker thread under ``meter``; the
    first is fetched before this returns (a failure before the first byte still gets its real status). The
    iterator is closed at the end, also when the client went away."""
    sentinel = object()

    async def pull() -> Any:
        with metered(meter):
            return await anyio.to_thread.run_sync(next, gen, sentinel)

    async def close() -> None:
        close_gen = getattr(gen, "close", None)
        if close_gen is not None:
            with anyio.CancelScope(shield=True):  # the client may be gone: still end upstream (and record)
                await anyio.to_thread.run_sync(close_gen)

    try:
        first = await pull()
    except BaseException:
        await close()
        raise

    async def rest() -> AsyncIterator[StreamChunk]:
        item = first
        try:
            while item is not sentinel:
                yield item
                item = await pull()
        finally:
            await close()

    return rest()


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
        try:
            with metered(ex.meter):
                result = await anyio.to_thread.run_sync(call)
        finally:
            await self.note_ids(ex)  # failed answers too: they are what a thumbs down points at
        if not result.valid:
            errors = result.attempts[-1].errors if result.attempts else []
            if self.on_invalid != "best_candidate":
                raise InvalidAnswerError(
                    f"no valid answer after {len(result.attempts)} attempt(s); failing fields: {'; '.join(errors)}")
            return Answer(text=result.text, usage=_usage(result, ex.meter), interaction_id=result.interaction_id,
                          valid=False, errors=errors)
        text = result.output if isinstance(result.output, str) else json.dumps(result.output, ensure_ascii=False)
        return Answer(text=text, usage=_usage(result, ex.meter), interaction_id=result.interaction_id, valid=True)

    async def note_ids(self, ex: Exchange) -> None:
        """Add the chatbot's ids to the recorded interaction (written again: the journal replaces by id)."""
        if not ex.chat_ids:
            return

        def note() -> None:
            interaction = self.mw.journal.get(ex.interaction_id)
            if interaction is not None:
                interaction.request["openwebui"] = dict(ex.chat_ids)
                self.mw.journal.write(interaction)

        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(note)
            except RagMiddlewareError as exc:  # the answer stands; only the ids are missing from its record
                log.warning(json.dumps({"event": "chat_ids_not_recorded", "interaction_id": ex.interaction_id,
                                        "error": exc.one_line()}))

    async def open_stream(self, ex: Exchange) -> AsyncIterator[StreamChunk]:
        """A free-text answer streamed live. The first chunk is fetched before this returns, so a failure
        before the first byte can still get its real status."""
        gen = self.mw.stream(ex.messages, domain=ex.domain, tenant=ex.tenant,
                             model=self.router.upstream_model(ex.domain), interaction_id=ex.interaction_id,
                             options=client_options(ex.options), user=ex.user)
        chunks = await pull_stream(gen, ex.meter)

        async def noted() -> AsyncIterator[StreamChunk]:
            try:
                async for chunk in chunks:
                    yield chunk
            finally:
                await chunks.aclose()  # the stream is recorded when it closes
                await self.note_ids(ex)

        return noted()


def refuse_images(model: str, parts: list[str]) -> None:
    """An augmented request answers text: images (or audio, files) would be dropped silently, so they are refused."""
    if parts:
        raise RequestError(f"{clip(model)} answers text only and cannot take {', '.join(sorted(set(parts)))}; "
                           "send the request without them, or to a multimodal model")


def reply_headers(augmenter: Augmenter, request: Request, ex: Exchange, *, asked_format: bool) -> dict[str, str]:
    """The headers of an augmented answer: the interaction's id; ``X-RAG-Format`` when the client asked for a
    format (the domain's own schema was used, or a free-text domain ignored it); ``X-RAG-Input-Cleaned`` when
    lone surrogates of the request were replaced (also logged, with the id of the record that holds the text)."""
    headers = {"X-RAG-Interaction-Id": ex.interaction_id}
    if asked_format:
        headers["X-RAG-Format"] = "ignored: free-text domain" if augmenter.is_free_text(ex.domain) else (
            "domain schema: the request's format was replaced by the domain's output schema")
    replaced = getattr(request.state, "replaced_surrogates", 0)
    if replaced:
        headers["X-RAG-Input-Cleaned"] = f"{replaced} lone surrogate(s) replaced by U+FFFD"
        log.warning(json.dumps({"event": "input_cleaned", "interaction_id": ex.interaction_id,
                                "lone_surrogates": replaced}))
    return headers


async def failure_headers(augmenter: Augmenter, ex: Exchange) -> dict[str, str]:
    """The id of a failed exchange is only given when it names a record (a request refused before the
    pipeline started has none)."""
    return {"X-RAG-Interaction-Id": ex.interaction_id} if await augmenter.recorded(ex.interaction_id) else {}


def usage_of(chunk: StreamChunk, meter: Meter, interaction_id: str | None = None) -> Usage:
    """The usage of a streamed answer, from its final chunk."""
    c = chunk.completion
    if c is None:
        return measured_usage(meter, prompt_tokens=0, completion_tokens=0, interaction_id=interaction_id)
    return measured_usage(meter, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                          done_reason=c.done_reason, interaction_id=interaction_id)
