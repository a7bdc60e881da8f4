"""Shared fakes: a scripted LLM whose queue of outputs can force bad JSON, and a deterministic embedder."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from rag_middleware import Middleware, load_settings
from rag_middleware.llm.base import Completion, GenerateRequest, StreamChunk
from rag_middleware.errors import TransportError
from rag_middleware.learning.export import export_finetune
from rag_middleware.learning.feedback import MemoryAccess, apply_feedback
from rag_middleware.llm.tokens import ApproxTokenCounter

ROOT = Path(__file__).resolve().parents[1]


def mw_feedback(mw, fb, **kw):
    """``apply_feedback`` with the middleware's memory and domains."""
    return apply_feedback(MemoryAccess.of(mw), mw.domains, fb, **kw)


def mw_export(mw, opts, **kw):
    """``export_finetune`` with the middleware's memory, domains, templates and context size."""
    return export_finetune(MemoryAccess.of(mw), opts, domains=mw.domains, templates=mw.templates,
                           num_ctx=mw.settings.llm.num_ctx, **kw)


class HashEmbedder:
    """Deterministic bag-of-words embedder: texts sharing words are similar, identical texts identical."""

    name = "hash-bow-64"
    dim = 64

    def __init__(self) -> None:
        self.calls = 0
        self.texts_encoded = 0

    def encode(self, texts):
        self.calls += 1
        self.texts_encoded += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9_]+", text.lower()):
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0 if (h >> 8) % 2 else -1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm else out[i]
            if not norm:
                out[i, 0] = 1.0
        return out


class FakeLLM:
    """Scripted model. ``enqueue`` outputs (str, or an Exception to raise); each call pops one and records
    the request it was given. When the queue is empty it answers ``default``."""

    name = "fake"
    model = "fake-model"

    def __init__(self, *, flat_prompt: bool = False, default: str = "{}") -> None:
        self.flat_prompt = flat_prompt
        self.default = default
        self.queue: deque = deque()
        self.requests: list[GenerateRequest] = []

    def enqueue(self, *outputs) -> FakeLLM:
        self.queue.extend(outputs)
        return self

    def _next(self, request: GenerateRequest):
        self.requests.append(request.model_copy(deep=True))
        item = self.queue.popleft() if self.queue else self.default
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, Completion):
            return item
        return Completion(text=item, done_reason="stop", prompt_tokens=100, completion_tokens=len(item) // 4,
                          model=self.model)

    def count_tokens(self, text: str) -> int:
        return ApproxTokenCounter().count(text)

    def generate(self, request: GenerateRequest) -> Completion:
        return self._next(request)

    def stream(self, request: GenerateRequest) -> Iterator[StreamChunk]:
        completion = self._next(request)
        for i in range(0, len(completion.text), 8):
            yield StreamChunk(text=completion.text[i : i + 8])
        yield StreamChunk(done=True, completion=completion)

    def close(self) -> None:
        pass


def copy_project(root: Path) -> Path:
    """A copy of the shipped knowledge base and prompts under ``root``, so a test may edit them."""
    shutil.copytree(ROOT / "knowledge_base", root / "knowledge_base")
    shutil.copytree(ROOT / "prompts", root / "prompts")
    return root


def project_settings(root: Path):
    """Settings for a copied project: its data dir, knowledge base and prompts; retries without backoff."""
    return load_settings(data_dir=root / "data", knowledge_base=root / "knowledge_base",
                         prompts_dir=root / "prompts", retry={"backoff_initial": 0.0, "backoff_max": 0.0})


def fake_middleware(settings, backend, embedder=None) -> Middleware:
    """A Middleware on the scripted model, the hash embedder and approximate token counts."""
    return Middleware(settings, backend=backend, embedder=embedder or HashEmbedder(),
                      token_counter=ApproxTokenCounter())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path)


@pytest.fixture
def settings(project: Path):
    return project_settings(project)


@pytest.fixture
def fake_llm() -> FakeLLM:
    return FakeLLM()


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def mw(settings, fake_llm, embedder):
    m = fake_middleware(settings, fake_llm, embedder)
    yield m
    m.close()


@pytest.fixture
def cli_project(project: Path, monkeypatch) -> Path:
    """The temp project as the working directory, with no RAG_MW_* settings leaking in from the environment."""
    monkeypatch.chdir(project)
    for var in list(os.environ):
        if var.startswith("RAG_MW_"):
            monkeypatch.delenv(var)
    return project


def use_cli_backend(monkeypatch, make_backend: Callable[[], object]) -> None:
    """Every Middleware the CLI builds answers with ``make_backend()``, the hash embedder and approx counts."""
    from rag_middleware.cli.context import CliState

    def middleware(self: CliState, **extra):
        return Middleware(self.settings(**extra), backend=make_backend(), embedder=HashEmbedder(),
                          token_counter=ApproxTokenCounter())

    monkeypatch.setattr(CliState, "middleware", middleware)


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.02):
    """Poll ``predicate`` until it returns something truthy, and return that; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not reached within {timeout:g}s")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``rag-middleware ARGV`` in-process: (exit code, stdout, stderr)."""
    from rag_middleware.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return (0 if info.value.code is None else info.value.code), out, err


__all__ = ["FakeLLM", "HashEmbedder", "TransportError", "copy_project", "fake_middleware", "project_settings",
           "run_cli", "use_cli_backend", "wait_for"]
