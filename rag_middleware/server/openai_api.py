"""The OpenAI side: POST /v1/chat/completions (SSE or not) and GET /v1/models."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..errors import RagMiddlewareError
from .augment import Exchange, usage_of
from .context import ServerContext, plain_completion
from .wire import (
    OpenAIChatRequest,
    Usage,
    openai_chunk,
    openai_completion,
    openai_error,
    read_json_object,
    split_text,
    sse,
    validated,
)

__all__ = ["chat_completions", "error_response", "models"]


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse(openai_error(message, status), status_code=status)


def _options(body: OpenAIChatRequest) -> dict[str, Any]:
    options = {"temperature": body.temperature, "top_p": body.top_p, "seed": body.seed,
               "num_predict": body.max_completion_tokens or body.max_tokens,
               "stop": [body.stop] if isinstance(body.stop, str) else body.stop}
    return {k: v for k, v in options.items() if v is not None}


def _sse_answer(model: str, text: str, usage: Usage, include_usage: bool) -> list[bytes]:
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    events = [sse(openai_chunk(cid, model, delta={"role": "assistant", "content": ""}))]
    events += [sse(openai_chunk(cid, model, delta={"content": piece})) for piece in split_text(text) if piece]
    events.append(sse(openai_chunk(cid, model, finish_reason="length" if usage.done_reason == "length" else "stop")))
    if include_usage:
        events.append(sse(openai_chunk(cid, model, usage=usage)))
    events.append(sse("[DONE]"))
    return events


async def chat_completions(request: Request) -> Response:
    ctx: ServerContext = request.app.state.ctx
    data, raw = await read_json_object(request)
    body = validated(OpenAIChatRequest, data)
    messages = [{"role": m.role, "content": m.content if isinstance(m.content, str) else ""} for m in body.messages]
    route = ctx.router.resolve(model=body.model, header_domain=request.headers.get("x-rag-domain"),
                               texts=[m["content"] for m in messages if m["role"] == "user"], keep_alive=None)
    request.state.route = route
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    if route.domain is None:
        if ctx.upstream is not None:
            if route.virtual:
                data["model"] = ctx.router.upstream_model(ctx.router.domain_of_model(body.model))
                raw = json.dumps(data).encode()
            return await ctx.upstream.forward(request, raw)
        completion = await plain_completion(ctx, messages, _options(body))
        usage = Usage(prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
                      done_reason=completion.done_reason)
        if body.stream:
            return Response(b"".join(_sse_answer(body.model, completion.text, usage, include_usage)),
                            media_type="text/event-stream")
        return JSONResponse(openai_completion(body.model, completion.text, usage))

    ex = Exchange(domain=route.domain, tenant=ctx.tenant_of(request), client_model=body.model, messages=messages,
                  options=_options(body), user=ctx.user_of(request, (body.model_extra or {}).get("user")))
    headers = {"X-RAG-Interaction-Id": ex.interaction_id}
    if body.stream and ctx.augmenter.is_free_text(ex.domain):
        chunks = await ctx.augmenter.open_stream(ex)
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"

        async def live() -> AsyncIterator[bytes]:
            yield sse(openai_chunk(cid, body.model, delta={"role": "assistant", "content": ""}))
            try:
                async for chunk in chunks:
                    if chunk.done:
                        usage = usage_of(chunk)
                        yield sse(openai_chunk(cid, body.model,
                                               finish_reason="length" if usage.done_reason == "length" else "stop"))
                        if include_usage:
                            yield sse(openai_chunk(cid, body.model, usage=usage))
                    elif chunk.text:
                        yield sse(openai_chunk(cid, body.model, delta={"content": chunk.text}))
            except RagMiddlewareError as exc:
                yield sse(openai_error(exc.one_line(), exc.http_status))
                return
            yield sse("[DONE]")

        return StreamingResponse(live(), media_type="text/event-stream", headers=headers)
    try:
        answer = await ctx.augmenter.answer(ex)
    except RagMiddlewareError as exc:  # recorded under this id: tell the client which record to look at
        return JSONResponse(openai_error(exc.one_line(), exc.http_status), status_code=exc.http_status,
                            headers=headers)
    if not answer.valid:
        headers["X-RAG-Valid"] = "false"
    if body.stream:
        events = _sse_answer(body.model, answer.text, answer.usage, include_usage)

        async def buffered() -> AsyncIterator[bytes]:
            for event in events:
                yield event

        return StreamingResponse(buffered(), media_type="text/event-stream", headers=headers)
    return JSONResponse(openai_completion(body.model, answer.text, answer.usage), headers=headers)


async def models(request: Request) -> Response:
    ctx: ServerContext = request.app.state.ctx
    if ctx.upstream is not None:
        data = await ctx.upstream.models("/v1/models", "data")
    else:
        data = [{"id": ctx.settings.llm.model, "object": "model", "created": int(time.time()), "owned_by": "embedded"}]
    ours = [{"id": name, "object": "model", "created": int(time.time()), "owned_by": "rag-middleware"}
            for name in ctx.router.virtual_models()]
    return JSONResponse({"object": "list", "data": ours + data})
