"""The Ollama side: POST /api/chat and /api/generate, augmented or passed through."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..errors import RagMiddlewareError, RequestError
from .augment import Exchange, failure_headers, measured_usage, openwebui_ids, refuse_images, reply_headers, usage_of
from .context import ServerContext, plain_completion, plain_stream
from .gate import Meter
from .routing import Route, system_text
from .upstream import Rename
from .wire import (
    OllamaChatRequest,
    OllamaGenerateRequest,
    ndjson,
    now_rfc3339,
    ollama_final,
    ollama_piece,
    read_json_object,
    split_text,
    validated,
)

__all__ = ["chat", "error_response", "generate"]

NDJSON = "application/x-ndjson"


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request, model: type) -> tuple[Any, bytes]:
    data, raw = await read_json_object(request)
    if "model" not in data and "name" in data:  # the legacy field name
        data["model"] = data["name"]
    return validated(model, data), raw


def _load_reply(kind: str, model: str, route: Route) -> JSONResponse:
    content = {"message": {"role": "assistant", "content": ""}} if kind == "chat" else {"response": ""}
    return JSONResponse({"model": model, "created_at": now_rfc3339(), **content, "done": True,
                         "done_reason": "unload" if route.unload else "load"})


async def _pass_through(ctx: ServerContext, request: Request, kind: str, body: Any, raw: bytes,
                        messages: list[dict[str, Any]], route: Route, started: float) -> Response:
    empty = not any(m["content"].strip() for m in messages)
    if route.virtual and empty and not (route.unload and ctx.upstream is not None):
        return _load_reply(kind, body.model, route)  # a load: nothing to do upstream for a virtual model
    if ctx.upstream is None:  # the embedded upstream answers plain requests itself
        ctx.check_embedded_model(body.model)
        if empty:
            return _load_reply(kind, body.model, route)
        meter = Meter(background=route.background, started=started)
        if body.stream:
            chunks = await plain_stream(ctx, messages, body.options, route, meter)

            async def live() -> AsyncIterator[bytes]:
                try:
                    async for chunk in chunks:
                        if chunk.done:
                            yield ndjson(ollama_final(kind, body.model, "", usage_of(chunk, meter)))
                        elif chunk.text:
                            yield ndjson(ollama_piece(kind, body.model, chunk.text))
                except RagMiddlewareError as exc:
                    yield ndjson({"error": exc.one_line()})

            return StreamingResponse(live(), media_type=NDJSON)
        completion = await plain_completion(ctx, messages, body.options, route, meter)
        usage = measured_usage(meter, prompt_tokens=completion.prompt_tokens,
                               completion_tokens=completion.completion_tokens, done_reason=completion.done_reason)
        return JSONResponse(ollama_final(kind, body.model, completion.text, usage))
    if not route.virtual:
        return await ctx.upstream.forward(request, raw)
    # upstream does not know our virtual model: name the model that answers the domain, and back
    data = json.loads(raw)
    data["model"] = ctx.router.upstream_model(ctx.router.domain_of_model(body.model))
    data.pop("name", None)
    return await ctx.upstream.forward(request, json.dumps(data).encode(), rename=Rename(data["model"], body.model))


async def _augmented(ctx: ServerContext, request: Request, kind: str, ex: Exchange, body: Any) -> Response:
    headers = reply_headers(ctx.augmenter, request, ex, asked_format=body.format not in (None, ""))
    if body.stream and ctx.augmenter.is_free_text(ex.domain):
        try:
            chunks = await ctx.augmenter.open_stream(ex)
        except RagMiddlewareError as exc:
            return JSONResponse({"error": exc.one_line()}, status_code=exc.http_status,
                                headers=await failure_headers(ctx.augmenter, ex))

        async def live() -> AsyncIterator[bytes]:
            try:
                async for chunk in chunks:
                    if chunk.done:
                        yield ndjson(ollama_final(kind, ex.client_model, "", usage_of(chunk, ex.meter,
                                                                                      ex.interaction_id)))
                    elif chunk.text:
                        yield ndjson(ollama_piece(kind, ex.client_model, chunk.text))
            except RagMiddlewareError as exc:
                yield ndjson({"error": exc.one_line()})

        return StreamingResponse(live(), media_type=NDJSON, headers=headers)
    try:
        answer = await ctx.augmenter.answer(ex)
    except RagMiddlewareError as exc:  # recorded under this id (if it got that far): say which record to read
        return JSONResponse({"error": exc.one_line()}, status_code=exc.http_status,
                            headers=await failure_headers(ctx.augmenter, ex))
    if not answer.valid:
        headers["X-RAG-Valid"] = "false"
    if body.stream:
        async def buffered() -> AsyncIterator[bytes]:
            for piece in split_text(answer.text):
                yield ndjson(ollama_piece(kind, ex.client_model, piece))
            yield ndjson(ollama_final(kind, ex.client_model, "", answer.usage))

        return StreamingResponse(buffered(), media_type=NDJSON, headers=headers)
    return JSONResponse(ollama_final(kind, ex.client_model, answer.text, answer.usage), headers=headers)


async def chat(request: Request) -> Response:
    started = time.perf_counter()
    ctx: ServerContext = request.app.state.ctx
    body, raw = await read_body(request, OllamaChatRequest)
    messages = [{"role": m.role, "content": m.content or ""} for m in body.messages]
    route = ctx.router.resolve(model=body.model, header_domain=request.headers.get("x-rag-domain"),
                               texts=[m["content"] for m in messages if m["role"] == "user"],
                               keep_alive=body.keep_alive, system=system_text(messages))
    request.state.route = route
    if route.domain is None:
        return await _pass_through(ctx, request, "chat", body, raw, messages, route, started)
    refuse_images(body.model, ["images"] * sum(bool(m.images) for m in body.messages))
    ex = Exchange(domain=route.domain, tenant=ctx.tenant_of(request), client_model=body.model,
                  messages=route.messages(messages), options=body.options, user=ctx.user_of(request),
                  meter=Meter(started=started), chat_ids=openwebui_ids(request.headers))
    return await _augmented(ctx, request, "chat", ex, body)


async def generate(request: Request) -> Response:
    started = time.perf_counter()
    ctx: ServerContext = request.app.state.ctx
    body, raw = await read_body(request, OllamaGenerateRequest)
    if body.raw and (body.system or body.template):
        raise RequestError("raw mode does not take system or template")
    prompt = body.prompt or ""
    messages = ([{"role": "system", "content": body.system}] if body.system else []) + [
        {"role": "user", "content": prompt}]
    route = ctx.router.resolve(model=body.model, header_domain=request.headers.get("x-rag-domain"), texts=[prompt],
                               keep_alive=body.keep_alive, system=body.system or "")
    request.state.route = route
    if route.domain is None:
        return await _pass_through(ctx, request, "generate", body, raw, messages, route, started)
    refuse_images(body.model, ["images"] if body.images else [])
    ex = Exchange(domain=route.domain, tenant=ctx.tenant_of(request), client_model=body.model,
                  messages=route.messages(messages), options=body.options, user=ctx.user_of(request),
                  meter=Meter(started=started), chat_ids=openwebui_ids(request.headers))
    return await _augmented(ctx, request, "generate", ex, body)
