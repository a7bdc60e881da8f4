"""LLM backends, chosen by name through :data:`LLM_BACKENDS`, and token counting for the prompt budget.

May import: the ground floor only (errors, config, records, options).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Completion, GenerateRequest, LLMBackend, StreamChunk, TokenProbe

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["LLM_BACKENDS", "Completion", "GenerateRequest", "LLMBackend", "StreamChunk", "TokenProbe", "make_backend"]


def _embedded(settings: Settings) -> LLMBackend:
    from .embedded import EmbeddedBackend

    return EmbeddedBackend(model_path=settings.llm.embedded_model_path,
                           num_ctx=settings.llm.num_ctx, threads=settings.llm.threads, model_name=settings.llm.model,
                           tokenizer=settings.llm.tokenizer)


def _ollama(settings: Settings) -> LLMBackend:
    from .ollama import OllamaBackend

    return OllamaBackend(host=settings.ollama_host, model=settings.llm.model, num_ctx=settings.llm.num_ctx,
                         keep_alive=settings.llm.keep_alive, timeout=settings.retry.request_timeout,
                         connect_timeout=settings.retry.connect_timeout, tokenizer=settings.llm.tokenizer)


LLM_BACKENDS = {"embedded": _embedded, "ollama": _ollama}


def make_backend(settings: Settings) -> LLMBackend:
    return LLM_BACKENDS[settings.llm.backend](settings)
