"""CachedEmbedder: a text is embedded at most once, per process and across processes sharing the db."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag_middleware.memory.db import connect
from rag_middleware.memory.embedding import CachedEmbedder, content_hash

from conftest import HashEmbedder


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "data" / "cache.db"


@pytest.fixture
def conn(db_file: Path):
    c = connect(db_file)
    yield c
    c.close()


def test_unchanged_text_is_not_embedded_twice(embedder):
    cached = CachedEmbedder(embedder)
    first = cached.encode(["sum revenue by region", "sort by date"])
    assert (embedder.calls, embedder.texts_encoded) == (1, 2)
    second = cached.encode(["sort by date", "sum revenue by region"])
    assert (embedder.calls, embedder.texts_encoded) == (1, 2)
    assert np.array_equal(second, first[::-1])
    cached.encode(["sort by date", "a new text"])
    assert (embedder.calls, embedder.texts_encoded) == (2, 3)  # only the new text went to the model
    assert cached.computed == 3


def test_duplicates_in_one_batch_are_embedded_once(embedder):
    cached = CachedEmbedder(embedder)
    out = cached.encode(["x y", "z", "x y", "x y", "z"])
    assert embedder.texts_encoded == 2
    assert out.shape == (5, embedder.dim)
    assert np.array_equal(out[0], out[2]) and np.array_equal(out[0], out[3])
    assert np.array_equal(out[1], out[4])
    assert not np.array_equal(out[0], out[1])


def test_output_order_matches_input_order(embedder, conn):
    cached = CachedEmbedder(embedder, conn)
    texts = ["alpha beta", "gamma", "delta epsilon", "zeta"]
    cached.encode(["gamma"])  # one from the cache, the rest fresh, interleaved
    out = cached.encode(texts)
    reference = HashEmbedder().encode(texts)
    assert out.dtype == np.float32
    assert out.shape == (4, embedder.dim)
    assert np.allclose(out, reference)


def test_empty_input(embedder):
    out = CachedEmbedder(embedder).encode([])
    assert out.shape == (0, embedder.dim)
    assert embedder.calls == 0


def test_cache_is_shared_through_sqlite(db_file, conn):
    inner_a = HashEmbedder()
    a = CachedEmbedder(inner_a, conn)
    vectors_a = a.encode(["group by region", "top 5 products"])
    assert inner_a.texts_encoded == 2

    other_conn = connect(db_file)  # a second process: its own connection and empty LRU
    try:
        inner_b = HashEmbedder()
        b = CachedEmbedder(inner_b, other_conn)
        vectors_b = b.encode(["top 5 products", "group by region"])
        assert inner_b.calls == 0
        assert b.computed == 0
        assert np.array_equal(vectors_b, vectors_a[::-1])

        b.encode(["top 5 products", "brand new"])
        assert inner_b.texts_encoded == 1
        a.encode(["brand new"])  # written by b, read by a from the db
        assert inner_a.texts_encoded == 2
    finally:
        other_conn.close()

    rows = conn.execute("SELECT model, content_hash, dim FROM embedding_cache").fetchall()
    assert len(rows) == 3
    assert {r[0] for r in rows} == {HashEmbedder.name}
    assert {r[2] for r in rows} == {HashEmbedder.dim}
    assert content_hash("group by region") in {r[1] for r in rows}


def test_cache_is_keyed_by_model_name(conn):
    a = CachedEmbedder(HashEmbedder(), conn)
    a.encode(["same text"])

    class OtherModel(HashEmbedder):
        name = "another-model"

    inner = OtherModel()
    CachedEmbedder(inner, conn).encode(["same text"])
    assert inner.texts_encoded == 1  # a vector of another model is never reused


def test_lru_only_cache_still_avoids_recompute_after_eviction_with_db(embedder, conn):
    cached = CachedEmbedder(embedder, conn, lru_size=1)
    cached.encode(["one", "two", "three"])
    assert embedder.texts_encoded == 3
    cached.encode(["one", "two"])  # evicted from the LRU but still in the db
    assert embedder.texts_encoded == 3
