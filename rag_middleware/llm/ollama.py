"""The Ollama backend, through the official ``ollama`` client. Its errors are mapped to ours here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx

from ..errors import BackendError, TransportError, UpstreamResponseError, UpstreamUnavailableError
from .base import Completion, GenerateRequest, StreamChunk

__all__ = ["OllamaBackend"]


class OllamaBackend:
    name = "ollama"
    flat_prompt = False
    gguf_path = None

    def __init__(self, *, host: str, model: str, num_ctx: int, keep_alive: str | int | None = None,
                 timeout: float = 120.0, connect_timeout: float = 5.0) -> None:
        try:
            import ollama
        except ImportError:
            raise BackendError("the ollama backend needs the 'ollama' package") from None
        self._ollama = ollama
        self.host = host
        self.model = model
        self.num_ctx = num_ctx
        self.keep_alive = keep_alive
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._client = ollama.Client(host=host, timeout=httpx.Timeout(timeout, connect=connect_timeout))

    def _client_for(self, request: GenerateRequest):
        """The shared client, or a one-off client when this call has less time left than the default."""
        if request.timeout is None or request.timeout >= self.timeout:
            return self._client, False
        limit = httpx.Timeout(request.timeout, connect=min(self.connect_timeout, request.timeout))
        return self._ollama.Client(host=self.host, timeout=limit), True

    def _kwargs(self, request: GenerateRequest, *, stream: bool) -> dict[str, Any]:
        options = {k: v for k, v in request.options.items() if v is not None}
        options.setdefault("num_ctx", self.num_ctx)
        kwargs: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in request.messages],
            "options": options,
            "stream": stream,
        }
        if request.json_schema is not None:
            kwargs["format"] = request.json_schema
        keep_alive = request.keep_alive if request.keep_alive is not None else self.keep_alive
        if keep_alive is not None:
            kwargs["keep_alive"] = keep_alive
        return kwargs

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, self._ollama.ResponseError):
            status = int(getattr(exc, "status_code", 500) or 500)
            message = f"ollama at {self.host} answered {status}: {exc.error}"
            if status >= 500 or status in (408, 429):
                return TransportError(message)
            return UpstreamResponseError(message, status_code=status)
        if isinstance(exc, httpx.TimeoutException):
            return TransportError(f"ollama at {self.host} timed out")
        if isinstance(exc, (ConnectionError, httpx.ConnectError, httpx.NetworkError)):
            return UpstreamUnavailableError(self.host)
        if isinstance(exc, httpx.HTTPError):
            return TransportError(f"ollama at {self.host}: {exc}")
        return exc

    @staticmethod
    def _completion(resp: Any, start: float) -> Completion:
        done_reason = getattr(resp, "done_reason", None) or "stop"
        prompt_ns, eval_ns = getattr(resp, "prompt_eval_duration", None), getattr(resp, "eval_duration", None)
        timings = {} if prompt_ns is None or eval_ns is None else {  # Ollama's own figures, when it gives them
            "prompt_ms": prompt_ns / 1e6, "eval_ms": eval_ns / 1e6,
            "load_ms": (getattr(resp, "load_duration", None) or 0) / 1e6}
        return Completion(**timings,
            text=resp.message.content or "",
            done_reason="length" if done_reason == "length" else done_reason,
            prompt_tokens=int(getattr(resp, "prompt_eval_count", 0) or 0),
            completion_tokens=int(getattr(resp, "eval_count", 0) or 0),
            duration_ms=(time.perf_counter() - start) * 1000,
            model=resp.model or "",
        )

    def generate(self, request: GenerateRequest) -> Completion:
        start = time.perf_counter()
        client, one_off = self._client_for(request)
        try:
            resp = client.chat(**self._kwargs(request, stream=False))
        except Exception as exc:  # noqa: BLE001 - translated at the boundary
            raise self._translate(exc) from None
        finally:
            if one_off:
                client._client.close()
        return self._completion(resp, start)

    def stream(self, request: GenerateRequest) -> Iterator[StreamChunk]:
        start = time.perf_counter()
        text: list[str] = []
        client, one_off = self._client_for(request)
        parts = None
        try:
            parts = client.chat(**self._kwargs(request, stream=True))
            for part in parts:
                piece = part.message.content or ""
                if piece:
                    text.append(piece)
                    yield StreamChunk(text=piece)
                if part.done:
                    final = self._completion(part, start)
                    final.text = "".join(text)
                    yield StreamChunk(done=True, completion=final)
                    return
            raise TransportError(f"ollama at {self.host} ended the stream without a done chunk")
        except TransportError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._translate(exc) from None
        finally:
            if parts is not None:
                parts.close()  # closing early (the caller went away) ends the upstream request
            if one_off:
                client._client.close()

    def close(self) -> None:
        self._client._client.close()
