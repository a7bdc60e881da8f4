"""The embedded model's queue, user requests first, and the timings of each request's model calls.

One in-process model answers everyone, one request at a time. ``PriorityGate`` orders the calls: a background
task (a chat title, tags, follow-ups) waits while any user request is waiting or running, and runs alone; user
requests are not held back by each other (llama.cpp queues them). ``GatedBackend`` wraps the backend so every
model call, the pipeline's too, passes the gate with the priority of the request it serves (a context
variable: the worker threads that make the calls inherit it) and reports its timings to the request's
``Meter``, so the answer's ``prompt_eval_duration`` and ``eval_duration`` are the model's own figures, queueing
excluded.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..llm.base import Completion, GenerateRequest, StreamChunk

__all__ = ["GatedBackend", "Meter", "PriorityGate", "metered"]


class PriorityGate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._users = 0  # user calls waiting or running
        self._background = False  # a background call is running

    @contextlib.contextmanager
    def user(self) -> Iterator[None]:
        with self._cond:
            self._users += 1
            while self._background:  # a background call started first: it is capped, wait for its end
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def background(self) -> Iterator[None]:
        with self._cond:
            while self._users or self._background:
                self._cond.wait()
            self._background = True
        try:
            yield
        finally:
            with self._cond:
                self._background = False
                self._cond.notify_all()

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {"users": self._users, "background_running": self._background}


@dataclass
class Meter:
    """What one request's model calls took, from the backend's own timings where it gives them."""

    background: bool = False
    started: float = field(default_factory=time.perf_counter)
    wait_ms: float = 0.0  # queued at the gate
    load_ms: float = 0.0
    prompt_ms: float = 0.0
    eval_ms: float = 0.0
    calls: int = 0
    measured: bool = True  # every call came with the backend's timings

    def add(self, completion: Completion) -> None:
        self.calls += 1
        self.load_ms += completion.load_ms
        if completion.prompt_ms is None or completion.eval_ms is None:
            self.measured = False
            self.eval_ms += completion.duration_ms  # all we know: the call's duration
        else:
            self.prompt_ms += completion.prompt_ms
            self.eval_ms += completion.eval_ms

    def durations(self) -> dict[str, int]:
        """Ollama's duration fields, integer nanoseconds: total is the request's wall time here."""
        ns = 1_000_000
        total = int((time.perf_counter() - self.started) * 1000 * ns)
        load, prompt, evals = int(self.load_ms * ns), int(self.prompt_ms * ns), int(self.eval_ms * ns)
        return {"total_duration": max(total, load + prompt + evals), "load_duration": load,
                "prompt_eval_duration": prompt, "eval_duration": evals}


_meter: contextvars.ContextVar[Meter | None] = contextvars.ContextVar("rag_mw_meter", default=None)


@contextlib.contextmanager
def metered(meter: Meter) -> Iterator[Meter]:
    """Model calls made in this context (and in worker threads started from it) report to ``meter``."""
    token = _meter.set(meter)
    try:
        yield meter
    finally:
        _meter.reset(token)


class GatedBackend:
    """The backend, each call through the gate (when there is one) and reported to the request's meter."""

    def __init__(self, inner: Any, gate: PriorityGate | None) -> None:
        self.inner = inner
        self.gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # name, flat_prompt, model, ...

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)  # no model call: it does not queue at the gate

    @contextlib.contextmanager
    def _turn(self, meter: Meter | None) -> Iterator[None]:
        if self.gate is None:
            yield
            return
        queued = time.perf_counter()
        with self.gate.background() if meter is not None and meter.background else self.gate.user():
            if meter is not None:
                meter.wait_ms += (time.perf_counter() - queued) * 1000
            yield

    def generate(self, request: GenerateRequest) -> Completion:
        meter = _meter.get()
        with self._turn(meter):
            completion = self.inner.generate(request)
        if meter is not None:
            meter.add(completion)
        return completion

    def next_tokens(self, request: GenerateRequest, top: int) -> list[tuple[str, float]] | None:
        probe = getattr(self.inner, "next_tokens", None)
        if probe is None:
            return None
        with self._turn(_meter.get()):
            return probe(request, top)

    def stream(self, request: GenerateRequest) -> Iterator[StreamChunk]:
        meter = _meter.get()
        with self._turn(meter):
            for chunk in self.inner.stream(request):
                if chunk.done and chunk.completion is not None and meter is not None:
                    meter.add(chunk.completion)
                yield chunk

    def close(self) -> None:
        self.inner.close()
