"""The OpenAI side: POST /v1/chat/completions (SSE or not), GET /v1/models and GET /v1/models/{id}."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..errors import RagMiddlewareError
from ..options import ModelOptions
from ..llm.base import StreamChunk
from .augment import Exchange, failure_headers, measured_usage, openwebui_ids, refuse_images, reply_headers, usage_of
from .context import ServerContext, plain_completion, plain_stream
from .gate import Meter
from .routing import Route, system_text
from .upstream import Rename
from .wire import (
    OpenAIChatRequest,
    Usage,
    clip,
    openai_chunk,
    openai_completion,
    openai_error,
    read_json_object,
    split_text,
    sse,
    validated,
)

__all__ = ["chat_completions", "error_response", "model", "models"]


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse(openai_error(message, status), status_code=status)


def _options(body: OpenAIChatRequest) -> ModelOptions:
    return ModelOptions(temperature=body.temperature, top_p=body.top_p, seed=body.seed,
                        num_predict=body.max_completion_tokens or body.max_tokens, stop=body.stop)


def _asked_format(body: OpenAIChatRequest) -> bool:
    kind = body.response_format.get("type") if isinstance(body.response_format, dict) else body.response_format
    return kind not in (None, "", "text")


def _sse_answer(model: str, text: str, usage: Usage, include_usage: bool) -> list[bytes]:
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    events = [sse(openai_chunk(cid, model, delta={"role": "assistant", "content": ""}))]
    events += [sse(openai_chunk(cid, model, delta={"content": piece})) for piece in split_text(text) if piece]
    events.append(sse(openai_chunk(cid, model, finish_reason="length" if usage.done_reason == "length" else "stop")))
    if include_usage:
        events.append(sse(openai_chunk(cid, model, usage=usage)))
    events.append(sse("[DONE]"))
    return events


async def _pass_through(ctx: ServerContext, request: Request, body: OpenAIChatRequest, data: dict[str, Any],
                        raw: bytes, messages: list[dict[str, Any]], route: Route, started: float) -> Response:
    if ctx.upstream is not None:
        if not route.virtual:
            return await ctx.upstream.forward(request, raw)  # the client's bytes, content arrays and all
        data["model"] = ctx.router.upstream_model(ctx.router.domain_of_model(body.model))
        return await ctx.upstream.forward(request, json.dumps(data).encode(), rename=Rename(data["model"], body.model))
    ctx.check_embedded_model(body.model)
    meter = Meter(background=route.background, started=started)
    if body.stream:
        chunks = await plain_stream(ctx, messages, _options(body), route, meter)
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        return StreamingResponse(_live(body.model, chunks, meter, include_usage, None), media_type="text/event-stream")
    completion = await plain_completion(ctx, messages, _options(body), route, meter)
    usage = measured_usage(meter, prompt_tokens=completion.prompt_tokens,
                           completion_tokens=completion.completion_tokens, done_reason=completion.done_reason)
    return JSONResponse(openai_completion(body.model, completion.text, usage))


async def _live(model: str, chunks: AsyncIterator[StreamChunk], meter: Meter, include_usage: bool,
                interaction_id: str | None) -> AsyncIterator[bytes]:
    """SSE events of an answer streamed live as the model produces it."""
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    yield sse(openai_chunk(cid, model, delta={"role": "assistant", "content": ""}))
    try:
        async for chunk in chunks:
            if chunk.done:
                usage = usage_of(chunk, meter, interaction_id)
                yield sse(openai_chunk(cid, model, finish_reason="length" if usage.done_reason == "length" else "stop"))
                if include_usage:
                    yield sse(openai_chunk(cid, model, usage=usage))
            elif chunk.text:
                yield sse(openai_chunk(cid, model, delta={"content": chunk.text}))
    except RagMiddlewareError as exc:
        yield sse(openai_error(exc.one_line(), exc.http_status))
        return
    yield sse("[DONE]")


async def chat_completions(request: Request) -> Response:
    started = time.perf_counter()
    ctx: ServerContext = request.app.state.ctx
    data, raw = await read_json_object(request)
    body = validated(OpenAIChatRequest, data)
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    route = ctx.router.resolve(model=body.model, header_domain=request.headers.get("x-rag-domain"),
                               texts=[m["content"] for m in messages if m["role"] == "user"], keep_alive=None,
                               system=system_text(messages))
    request.state.route = route
    if route.domain is None:
        return await _pass_through(ctx, request, body, data, raw, messages, route, started)
    refuse_images(body.model, [part for m in body.messages for part in m.other_parts()])
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    ex = Exchange(domain=route.domain, tenant=ctx.tenant_of(request), client_model=body.model,
                  messages=route.messages(messages), options=_options(body),
                  user=ctx.user_of(request, (body.model_extra or {}).get("user")), meter=Meter(started=started),
                  chat_ids=openwebui_ids(request.headers))
    headers = reply_headers(ctx.augmenter, request, ex, asked_format=_asked_format(body))
    if body.stream and ctx.augmenter.is_free_text(ex.domain):
        try:
            chunks = await ctx.augmenter.open_stream(ex)
        except RagMiddlewareError as exc:
            return JSONResponse(openai_error(exc.one_line(), exc.http_status), status_code=exc.http_status,
                                headers=await failure_headers(ctx.augmenter, ex))
        return StreamingResponse(_live(body.model, chunks, ex.meter, include_usage, ex.interaction_id),
                                 media_type="text/event-stream", headers=headers)
    try:
        answer = await ctx.augmenter.answer(ex)
    except RagMiddlewareError as exc:  # recorded under this id (if it got that far): say which record to read
        return JSONResponse(openai_error(exc.one_line(), exc.http_status), status_code=exc.http_status,
                            headers=await failure_headers(ctx.augmenter, ex))
    if not answer.valid:
        headers["X-RAG-Valid"] = "false"
    if body.stream:
        events = _sse_answer(body.model, answer.text, answer.usage, include_usage)

        async def buffered() -> AsyncIterator[bytes]:
            for event in events:
                yield event

        return StreamingResponse(buffered(), media_type="text/event-stream", headers=headers)
    return JSONResponse(openai_completion(body.model, answer.text, answer.usage), headers=headers)


def _virtual_entry(ctx: ServerContext, name: str) -> dict[str, Any]:
    created = int(ctx.router.modified_at(ctx.router.domain_of_model(name)).timestamp())
    return {"id": name, "object": "model", "created": created, "owned_by": "rag-middleware"}


async def models(request: Request) -> Response:
    ctx: ServerContext = request.app.state.ctx
    if ctx.upstream is not None:
        data = await ctx.upstream.models("/v1/models", "data")
    else:
        data = [{"id": ctx.settings.llm.model, "object": "model", "created": int(time.time()), "owned_by": "embedded"}]
    ours = [_virtual_entry(ctx, name) for name in ctx.router.virtual_models()]
    return JSONResponse({"object": "list", "data": ours + data})


async def model(request: Request) -> Response:
    """One model: ours described here, any other asked of the upstream (the embedded one described here)."""
    ctx: ServerContext = request.app.state.ctx
    name = request.path_params["model"]
    if ctx.router.domain_of_model(name) is not None:
        return JSONResponse(_virtual_entry(ctx, name))
    if ctx.upstream is not None:
        return await ctx.upstream.forward(request)
    if name == ctx.settings.llm.model:
        return JSONResponse({"id": name, "object": "model", "created": int(time.time()), "owned_by": "embedded"})
    return error_response(404, f"The model '{clip(name)}' does not exist")
