"""Token counting for the prompt budget, in the answering model's own tokens where we can get them.

- ``GGUFTokenCounter``: the tokenizer stored inside a GGUF file (the embedded Gemma), converted once with
  transformers and cached as ``tokenizer.json`` under the data dir, so later loads take milliseconds.
- ``HFTokenCounter``: any local Hugging Face tokenizer directory.
- ``ApproxTokenCounter``: a conservative characters-per-token estimate, for upstream models whose tokenizer
  is not available locally (Ollama has no tokenize endpoint).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import BackendError

__all__ = ["ApproxTokenCounter", "BackendTokenCounter", "GGUFTokenCounter", "HFTokenCounter", "LazyTokenCounter",
           "TokenCounter", "make_token_counter", "plain_backend"]


@runtime_checkable
class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class ApproxTokenCounter:
    """About 3 characters per token: errs on the side of fewer examples, never of overflow."""

    name = "approx"

    def __init__(self, chars_per_token: float = 3.0) -> None:
        self.chars_per_token = chars_per_token

    def count(self, text: str) -> int:
        return math.ceil(len(text) / self.chars_per_token) + 1


class HFTokenCounter:
    """A transformers tokenizer; counts are cached by text (prompts repeat the same examples)."""

    def __init__(self, tokenizer, name: str, *, cache_size: int = 20_000) -> None:
        self._tok = tokenizer
        self._plain = plain_backend(tokenizer)
        self._by_line = self._plain is not None and splits_at_newlines(self._plain)
        self.name = name
        self._cache: OrderedDict[str, int] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @classmethod
    def from_path(cls, path: str | Path) -> HFTokenCounter:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(path)), name=str(path))

    def count(self, text: str) -> int:
        with self._lock:
            if text in self._cache:
                self._cache.move_to_end(text)
                return self._cache[text]
        pieces = _LINES.findall(text) if self._by_line and len(text) >= BY_LINE_FROM else ()
        if len(pieces) > 1:
            # the tokenizer cuts at newlines itself (splits_at_newlines): the sum of the pieces' counts, which
            # come back from prompt to prompt (the system turn's lines, the examples'), and BPE on one long
            # piece costs more than on its parts (a 4,000-character prompt: 1.7 ms, its lines ~0.1 ms)
            n = sum(self.count(piece) for piece in pieces)
        elif self._plain is not None:  # a private copy that no call changes: safe without the lock
            n = len(self._plain.encode(text, add_special_tokens=False).ids)
        else:
            with self._lock:  # a Rust tokenizer shared across threads can raise "Already borrowed"
                n = len(self._tok(text, add_special_tokens=False)["input_ids"])
        with self._lock:
            self._cache[text] = n
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return n


def plain_backend(tokenizer: Any) -> Any | None:
    """A private copy of a fast tokenizer's Rust tokenizer, set up as ``tokenizer(text, add_special_tokens=False)``
    leaves it (no truncation, no padding, special tokens in the text recognised as transformers decides), so a
    count is the same without transformers' bookkeeping around each call (~60 us). None for a slow tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        return None
    try:
        plain = type(backend).from_str(backend.to_str())
        plain.no_truncation()
        plain.no_padding()
        plain.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
    except Exception:  # noqa: BLE001 - a tokenizer this does not know: counted through transformers
        return None
    return plain


BY_LINE_FROM = 256  # characters: a shorter text is counted whole
_LINES = re.compile(r"\n+|[^\n]+")
_CHAR_BY_CHAR = {"Replace", "Split", "Sequence"}  # normalisers and pre-tokenisers with no notion of a text's start


def splits_at_newlines(backend: Any) -> bool:
    """Whether the tokenizer cuts every text where a run of newlines starts and ends, and tokenizes the pieces
    on their own, so a text's count is the sum of its pieces' (Gemma's is such a tokenizer): a newline is an added
    token taken out of the text first (not normalised, not stripping its neighbours), no token joins a newline to
    anything else, and the normaliser and pre-tokeniser steps are ones that treat each piece alike."""
    try:
        spec = json.loads(backend.to_str())
    except Exception:  # noqa: BLE001 - a tokenizer that does not describe itself: counted whole
        return False

    def mixed(token: str) -> bool:
        return "\n" in token and token.strip("\n") != ""

    def plain(step: dict[str, Any] | None) -> bool:
        if step is None:
            return True
        inner = step.get("normalizers") or step.get("pretokenizers") or []
        return step.get("type") in _CHAR_BY_CHAR and all(plain(s) for s in inner)

    added = spec.get("added_tokens") or []
    newline = [a for a in added if a.get("content") == "\n"]
    vocab = (spec.get("model") or {}).get("vocab") or {}
    return (len(newline) == 1 and not any(newline[0].get(k) for k in ("normalized", "lstrip", "rstrip", "single_word"))
            and not any(mixed(str(a.get("content", ""))) for a in added)
            and not any(mixed(t) for t in (vocab if isinstance(vocab, dict) else [v[0] for v in vocab]))
            and plain(spec.get("normalizer")) and plain(spec.get("pre_tokenizer")))


class GGUFTokenCounter(HFTokenCounter):
    @classmethod
    def from_gguf(cls, gguf_path: Path) -> GGUFTokenCounter:
        """Convert the GGUF's tokenizer once (about 15 s) and keep it beside the file for later loads."""
        from transformers import AutoTokenizer

        key = hashlib.sha256(f"{gguf_path.resolve()}:{gguf_path.stat().st_size}".encode()).hexdigest()[:16]
        target = gguf_path.parent / "tokenizers" / key
        if (target / "tokenizer.json").is_file():
            tok = AutoTokenizer.from_pretrained(str(target))
        else:
            tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
            try:
                target.mkdir(parents=True, exist_ok=True)
                tok.save_pretrained(str(target))
            except OSError:
                pass  # a read-only cache only costs the conversion next time
        return cls(tok, name=f"gguf:{gguf_path.name}")


_shared: dict[str, TokenCounter] = {}
_shared_lock = threading.Lock()


def make_token_counter(spec: str, *, gguf_path: Path | None) -> TokenCounter:
    """Resolve a tokenizer spec: 'auto' uses the GGUF file when the backend has one, else 'approx'."""
    key = f"{spec}|{gguf_path}"
    with _shared_lock:
        if key in _shared:
            return _shared[key]
        if spec == "approx" or (spec == "auto" and gguf_path is None):
            counter: TokenCounter = ApproxTokenCounter()
        elif spec == "auto":
            counter = GGUFTokenCounter.from_gguf(gguf_path)
        elif spec.endswith(".gguf"):
            counter = GGUFTokenCounter.from_gguf(Path(spec))
        else:
            counter = HFTokenCounter.from_path(spec)
        _shared[key] = counter
        return counter


class LazyTokenCounter:
    """A backend's counter: the tokenizer ``spec`` resolved on first use ('auto' takes the GGUF file that
    ``gguf_path()`` names, when the backend has one). A tokenizer that cannot load is a :class:`BackendError`."""

    def __init__(self, spec: str, gguf_path: Callable[[], Path | None] = lambda: None) -> None:
        self.spec = spec
        self._gguf_path = gguf_path
        self._counter: TokenCounter | None = None

    @property
    def counter(self) -> TokenCounter:
        if self._counter is None:
            try:
                path = self._gguf_path() if self.spec == "auto" else None
                self._counter = make_token_counter(self.spec, gguf_path=path)
            except BackendError:
                raise
            except Exception as exc:  # noqa: BLE001 - transformers, tokenizers, file system: translated here
                detail = " ".join(str(exc).split()) or type(exc).__name__
                raise BackendError(f"cannot load the tokenizer {self.spec!r}: {detail}") from None
        return self._counter

    @property
    def name(self) -> str:
        return self.counter.name

    def count(self, text: str) -> int:
        return self.counter.count(text)


class BackendTokenCounter:
    """``LLMBackend.count_tokens`` as a :class:`TokenCounter`, for the prompt budget."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.name = f"{backend.name}:count_tokens"

    def count(self, text: str) -> int:
        return self.backend.count_tokens(text)
