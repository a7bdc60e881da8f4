"""The Ollama backend, through the official ``ollama`` client. Its errors are mapped to ours here."""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from typing import Any

import httpx

from ..errors import BackendError, RagMiddlewareError, TransportError, UpstreamResponseError, UpstreamUnavailableError
from .base import Completion, GenerateRequest, StreamChunk
from .ollama_format import for_ollama
from .tokens import LazyTokenCounter

__all__ = ["OllamaBackend"]


def _one_line(value: object) -> str:
    return " ".join(str(value).split()) or "(no detail)"


class OllamaBackend:
    name = "ollama"
    flat_prompt = False

    def __init__(self, *, host: str, model: str, num_ctx: int, keep_alive: str | int | None = None,
                 timeout: float = 120.0, connect_timeout: float = 5.0, tokenizer: str = "auto") -> None:
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
        # token log-probabilities (request/confidence.py), when the installed client can ask for them
        self._logprobs = "logprobs" in inspect.signature(ollama.Client.chat).parameters
        self._top_logprobs = "top_logprobs" in inspect.signature(ollama.Client.chat).parameters  # calibration
        # Ollama has no tokenize endpoint: 'auto' is the estimate, unless a tokenizer file is configured
        self._tokens = LazyTokenCounter(tokenizer)

    def count_tokens(self, text: str) -> int:
        return self._tokens.count(text)

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
            kwargs["format"] = for_ollama(request.json_schema)
            if not stream and self._logprobs:  # Ollama 0.12.11+ and its client 0.6.1+; older servers ignore it
                kwargs["logprobs"] = True
        keep_alive = request.keep_alive if request.keep_alive is not None else self.keep_alive
        if keep_alive is not None:
            kwargs["keep_alive"] = keep_alive
        return kwargs

    def _translate(self, exc: Exception) -> RagMiddlewareError:
        """Every exception of the client (ollama, httpx, a malformed answer) as one of ours, on one line."""
        if isinstance(exc, RagMiddlewareError):
            return exc
        if isinstance(exc, self._ollama.ResponseError):
            status = int(getattr(exc, "status_code", 500) or 500)
            error = _one_line(exc.error)
            if status < 100:  # an error inside a streamed answer: no HTTP status
                return UpstreamResponseError(f"ollama at {self.host} reported: {error}", status_code=502)
            message = f"ollama at {self.host} answered {status}: {error}"
            if status >= 500 or status in (408, 429):
                return TransportError(message)
            return UpstreamResponseError(message, status_code=status)
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            return TransportError(f"ollama at {self.host} timed out")
        if isinstance(exc, ConnectionError | httpx.ConnectError | httpx.NetworkError):
            return UpstreamUnavailableError(self.host)
        if isinstance(exc, httpx.HTTPError):
            return TransportError(f"ollama at {self.host}: {_one_line(exc)}")
        # the client refused the request (RequestError), or the answer was not what Ollama sends
        return BackendError(f"ollama at {self.host}: {type(exc).__name__}: {_one_line(exc)}")

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
            logprobs=[(str(getattr(t, "token", "")), float(t.logprob)) for t in found
                      if isinstance(getattr(t, "logprob", None), int | float)]
            if (found := getattr(resp, "logprobs", None)) else None,
        )

    def generate(self, request: GenerateRequest) -> Completion:
        start = time.perf_counter()
        return self._chat(request, self._kwargs(request, stream=False), lambda resp: self._completion(resp, start))

    def _chat(self, request: GenerateRequest, kwargs: dict[str, Any], read: Any) -> Any:
        """One non-streamed chat call, its answer ``read``; every error translated at the boundary."""
        client, one_off = self._client_for(request)
        try:
            return read(client.chat(**kwargs))
        except Exception as exc:  # noqa: BLE001 - translated at the boundary
            raise self._translate(exc) from None
        finally:
            if one_off:
                client._client.close()

    def next_tokens(self, request: GenerateRequest, top: int) -> list[tuple[str, float]] | None:
        """The ``top`` likeliest next tokens after the request's messages (the last, an assistant turn, is
        continued), with their log-probabilities; None when the client or the server cannot give them."""
        if not self._top_logprobs:
            return None
        kwargs = {**self._kwargs(request, stream=False), "logprobs": True, "top_logprobs": top}
        kwargs["options"] = {**kwargs["options"], "num_predict": 1}
        kwargs.pop("format", None)
        found = self._chat(request, kwargs, lambda resp: getattr(resp, "logprobs", None))
        first = getattr(found[0], "top_logprobs", None) if found else None
        return [(str(t.token), float(t.logprob)) for t in first] if first else None

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
        except Exception as exc:  # noqa: BLE001 - translated at the boundary (ours pass through)
            raise self._translate(exc) from None
        finally:
            if parts is not None:
                parts.close()  # closing early (the caller went away) ends the upstream request
            if one_off:
                client._client.close()

    def close(self) -> None:
        self._client._client.close()
