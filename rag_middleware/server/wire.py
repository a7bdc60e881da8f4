"""Wire formats: Ollama and OpenAI request models, response builders, NDJSON and SSE framing."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import datetime, UTC
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import RequestError
from ..options import ModelOptions

__all__ = [
    "ECHO_LIMIT",
    "ChatMessage",
    "ContentPart",
    "OllamaChatRequest",
    "OllamaGenerateRequest",
    "OpenAIChatRequest",
    "OpenAIMessage",
    "Usage",
    "clip",
    "ndjson",
    "now_rfc3339",
    "ollama_final",
    "ollama_piece",
    "openai_chunk",
    "openai_completion",
    "openai_error",
    "read_json_object",
    "sse",
    "split_text",
    "validated",
]

M = TypeVar("M", bound=BaseModel)


ECHO_LIMIT = 80  # characters of the request an error text repeats
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads already joined the valid pairs


def clip(value: object, limit: int = ECHO_LIMIT) -> str:
    """``value`` as an error text may echo it: at most ``limit`` characters, the cut said."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _clean(value: Any, count: list[int]) -> Any:
    if isinstance(value, str):
        cleaned, n = _LONE_SURROGATE.subn("\ufffd", value)
        count[0] += n
        return cleaned
    if isinstance(value, list):
        return [_clean(v, count) for v in value]
    if isinstance(value, dict):
        return {_clean(k, count): _clean(v, count) for k, v in value.items()}
    return value


async def read_json_object(request: Any) -> tuple[dict[str, Any], bytes]:
    """A request's body as a JSON object, with its raw bytes; a RequestError (400) names what is wrong.

    Lone surrogates (``"\\ud800"``, valid JSON but no text: nothing can encode them) become U+FFFD; how many
    were replaced is left in ``request.state.replaced_surrogates`` for the handler to say so."""
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except json.JSONDecodeError as exc:
        raise RequestError(f"invalid JSON body: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise RequestError(f"invalid JSON body: not UTF-8 (byte {exc.start})") from None
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object")
    count = [0]
    data = _clean(data, count)
    request.state.replaced_surrogates = count[0]
    return data, raw


def validated(model: type[M], data: dict[str, Any], *, what: str = "request") -> M:
    """``model`` from ``data``; a RequestError naming the first bad field otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(map(str, err["loc"]))
        raise RequestError(f"invalid {what}: {where + ': ' if where else ''}"
                           f"{err['msg'].removeprefix('Value error, ')}") from None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | None = ""
    images: list[str] | None = None


class ContentPart(BaseModel):
    """One part of an OpenAI message's content array: ``{"type": "text", "text": ...}``, an image, ..."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[ContentPart] | None = ""

    def text(self) -> str:
        """The content as text: the text parts of an array joined by newlines."""
        if isinstance(self.content, list):
            return "\n".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""

    def other_parts(self) -> list[str]:
        """The types of the parts that are not text (images, audio, files)."""
        return [p.type for p in self.content if p.type != "text"] if isinstance(self.content, list) else []


class OllamaChatRequest(BaseModel):
    """POST /api/chat. Unknown fields are kept (and passed through untouched)."""

    model_config = ConfigDict(extra="allow")
    model: str = ""
    messages: list[ChatMessage] = Field(default_factory=list)
    stream: bool = True  # Ollama streams when the field is absent
    format: Any = None
    options: ModelOptions | None = None
    keep_alive: Any = None


class OllamaGenerateRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = ""
    prompt: str | None = ""
    system: str | None = None
    stream: bool = True
    raw: bool | None = None
    template: str | None = None
    images: list[str] | None = None
    format: Any = None
    options: ModelOptions | None = None
    keep_alive: Any = None


class OpenAIChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[OpenAIMessage]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    response_format: Any = None


class Usage(BaseModel):
    """Token counts and Ollama's durations (integer nanoseconds) of one answer: the model's own timings
    for prompt evaluation and generation, queueing excluded; total is the request's wall time."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_ns: int = 0
    load_ns: int = 0
    prompt_ns: int = 0
    eval_ns: int = 0
    done_reason: str = "stop"
    interaction_id: str | None = None  # an augmented answer's record, also in the OpenAI usage object

    def openai(self) -> dict[str, Any]:
        usage: dict[str, Any] = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                                 "total_tokens": self.prompt_tokens + self.completion_tokens}
        if self.interaction_id:
            usage["rag_interaction_id"] = self.interaction_id  # Open WebUI keeps usage with the message
        return usage


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ndjson(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def sse(obj: dict[str, Any] | str) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def split_text(text: str, size: int = 24) -> list[str]:
    """Pieces of an already-validated answer, for clients that asked for a stream."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _content(kind: str, text: str) -> dict[str, Any]:
    return {"message": {"role": "assistant", "content": text}} if kind == "chat" else {"response": text}


def ollama_piece(kind: str, model: str, text: str) -> dict[str, Any]:
    return {"model": model, "created_at": now_rfc3339(), **_content(kind, text), "done": False}


def ollama_final(kind: str, model: str, text: str, usage: Usage) -> dict[str, Any]:
    """The one done:true object: done_reason and the summed metrics (integer nanoseconds)."""
    final = {
        "model": model, "created_at": now_rfc3339(), **_content(kind, text), "done": True,
        "done_reason": usage.done_reason,
        "total_duration": max(usage.total_ns, usage.load_ns + usage.prompt_ns + usage.eval_ns),
        "load_duration": usage.load_ns, "prompt_eval_count": usage.prompt_tokens,
        "prompt_eval_duration": usage.prompt_ns, "eval_count": usage.completion_tokens,
        "eval_duration": usage.eval_ns,
    }
    if usage.interaction_id:
        final["rag_interaction_id"] = usage.interaction_id
    return final


def _finish_reason(done_reason: str) -> str:
    return "length" if done_reason == "length" else "stop"


def openai_completion(model: str, text: str, usage: Usage, completion_id: str | None = None) -> dict[str, Any]:
    return {
        "id": completion_id or f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
        "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": _finish_reason(usage.done_reason)}],
        "usage": usage.openai(),
    }


def openai_chunk(completion_id: str, model: str, *, delta: dict[str, Any] | None = None,
                 finish_reason: str | None = None, usage: Usage | None = None) -> dict[str, Any]:
    chunk: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                             "model": model, "choices": []}
    if usage is not None:
        chunk["usage"] = usage.openai()
    else:
        chunk["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason}]
    return chunk


def openai_error(message: str, status: int, *, kind: str | None = None) -> dict[str, Any]:
    default = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               422: "invalid_response_error", 502: "upstream_error", 503: "upstream_error", 504: "timeout_error"}
    return {"error": {"message": message, "type": kind or default.get(status, "server_error"), "param": None,
                      "code": None}}
