"""The LLM backend Protocol and the request/response types every backend speaks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

__all__ = ["Completion", "GenerateRequest", "LLMBackend", "StreamChunk", "TokenProbe"]


class GenerateRequest(BaseModel):
    model: str
    messages: list[dict[str, Any]]
    prompt: str | None = None  # flat text for base models (rendered through completion.j2)
    json_schema: dict[str, Any] | None = None  # grammar / Ollama ``format``
    options: dict[str, Any] = Field(default_factory=dict)  # temperature, num_predict, num_ctx, seed, stop, ...
    keep_alive: str | int | None = None
    timeout: float | None = None  # seconds for this call


class Completion(BaseModel):
    text: str
    done_reason: Literal["stop", "length", "error"] | str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_ms: float = 0.0  # the call's wall time (queueing included)
    model: str = ""
    # the backend's own timings, when it gives them: prompt evaluation and generation, loading the model
    prompt_ms: float | None = None
    eval_ms: float | None = None
    load_ms: float = 0.0
    # (token, log-probability) of each generated token, when the backend gives them (the model's own, before
    # the grammar: a token the grammar forced may have had a low one)
    logprobs: list[tuple[str, float]] | None = None


class StreamChunk(BaseModel):
    text: str = ""
    done: bool = False
    completion: Completion | None = None  # set on the final chunk


@runtime_checkable
class LLMBackend(Protocol):
    name: str
    #: True when the model has no chat template and wants ``GenerateRequest.prompt``.
    flat_prompt: bool

    def count_tokens(self, text: str) -> int:
        """``text``'s length in this model's tokens, as the prompt budget counts them (the configured
        tokenizer: the model's own where the backend has it, else an estimate that errs on the long side)."""
        ...

    def generate(self, request: GenerateRequest) -> Completion: ...

    def stream(self, request: GenerateRequest) -> Iterator[StreamChunk]: ...

    def close(self) -> None: ...


@runtime_checkable
class TokenProbe(Protocol):
    """An optional capability of a backend (request/calibration.py): the likeliest next tokens after a request,
    as (token, log-probability) pairs, or None when this model or server cannot give them."""

    def next_tokens(self, request: GenerateRequest, top: int) -> list[tuple[str, float]] | None: ...
