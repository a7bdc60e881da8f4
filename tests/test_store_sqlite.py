"""SQLiteStore and the shared db module: idempotent upserts, filtered cosine search, cross-process freshness."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, UTC
from pathlib import Path

import numpy as np
import pytest

from rag_middleware.memory.stores.sqlite import SQLiteStore
from rag_middleware.memory.db import MIGRATIONS, connect
from rag_middleware.errors import StoreError
from rag_middleware.records import MemoryFilter, MemoryRecord

DIM = 4
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def rec(rid: str, *, tenant: str = "t1", domain: str = "d", kind: str = "interaction", status: str = "validated",
        answer: str | None = None, created: datetime = T0, **kw) -> MemoryRecord:
    return MemoryRecord(id=rid, tenant=tenant, domain=domain, kind=kind, status=status, question=f"q {rid}",
                        answer=answer if answer is not None else f"a {rid}", created_at=created, updated_at=created,
                        **kw)


def scope(**kw) -> MemoryFilter:
    kw.setdefault("tenant", "t1")
    kw.setdefault("domain", "d")
    return MemoryFilter(**kw)


def ids(hits) -> list[str]:
    return [h.record.id for h in hits]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "memory.db"


@pytest.fixture
def store(db_path: Path):
    s = SQLiteStore(db_path)
    yield s
    s.close()


@pytest.fixture
def filled(store):
    """Four records of t1/d at increasing times, spread around the first axis."""
    records = [
        rec("a", created=T0),
        rec("b", created=T0 + timedelta(days=1), kind="example"),
        rec("c", created=T0 + timedelta(days=2), status="rejected"),
        rec("d", created=T0 + timedelta(days=3), kind="negative"),
    ]
    vectors = np.stack([unit(1, 0, 0, 0), unit(1, 1, 0, 0), unit(1, 0, 1, 1), unit(0, 0, 0, 1)])
    store.upsert(records, vectors)
    return store


QUERY = unit(1, 0, 0, 0)


# -- upsert ----------------------------------------------------------------------------------------------


def test_upsert_is_idempotent_by_id(store):
    first = store.upsert([rec("x")], np.stack([unit(1, 0, 0, 0)]))
    assert (first.inserted, first.updated, first.unchanged) == (1, 0, 0)
    before = store.get(["x"])[0]
    later = T0 + timedelta(days=30)
    again = rec("x", created=later)  # same content, newer timestamps
    second = store.upsert([again], np.stack([unit(1, 0, 0, 0)]))
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 1)
    after = store.get(["x"])[0]
    assert after.created_at == before.created_at == T0
    assert after.updated_at == before.updated_at == T0
    assert store.count() == 1


def test_changed_answer_is_an_update_that_keeps_created_at(store):
    store.upsert([rec("x", answer="old")], np.stack([unit(1, 0, 0, 0)]))
    later = T0 + timedelta(days=5)
    result = store.upsert([rec("x", answer="new", created=later)], np.stack([unit(1, 0, 0, 0)]))
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 0)
    got = store.get(["x"])[0]
    assert got.answer == "new"
    assert got.created_at == T0
    assert got.updated_at == later
    assert store.count() == 1


def test_changed_vector_alone_is_an_update(store):
    store.upsert([rec("x")], np.stack([unit(1, 0, 0, 0)]))
    result = store.upsert([rec("x")], np.stack([unit(0, 1, 0, 0)]))
    assert result.updated == 1
    hit = store.search(unit(0, 1, 0, 0), filters=scope(), limit=1)[0]
    assert hit.similarity == pytest.approx(1.0)


def test_same_query_after_a_vector_change_is_scored_afresh(store):
    """The partition keeps the last query's scores; a changed vector must not be served from them."""
    store.upsert([rec("x"), rec("y")], np.stack([unit(1, 0, 0, 0), unit(0, 1, 0, 0)]))
    assert ids(store.search(QUERY, filters=scope(), limit=1)) == ["x"]
    store.upsert([rec("y")], np.stack([unit(1, 0, 0, 0.01)]))
    store.upsert([rec("x")], np.stack([unit(0, 0, 1, 0)]))
    hits = store.search(QUERY, filters=scope(), limit=2)
    assert ids(hits) == ["y", "x"] and hits[1].similarity == pytest.approx(0.0, abs=1e-6)


def test_upsert_length_mismatch_raises(store):
    with pytest.raises(StoreError, match="2 records but 1 vectors"):
        store.upsert([rec("a"), rec("b")], np.stack([unit(1, 0, 0, 0)]))
    assert store.count() == 0


def test_dimension_mismatch_raises(db_path):
    s = SQLiteStore(db_path, dim=DIM)
    try:
        with pytest.raises(StoreError, match="dimension"):
            s.upsert([rec("a")], np.ones((1, DIM + 1), dtype=np.float32))
        s.upsert([rec("a")], np.stack([unit(1, 0, 0, 0)]))
        with pytest.raises(StoreError, match="dimension"):
            s.search(np.ones(DIM + 2, dtype=np.float32), filters=scope(), limit=3)
    finally:
        s.close()


def test_dimension_mismatch_after_reopen_raises(db_path):
    """A store opened without ``dim`` (as open_store does) must not accept vectors of another size than the
    ones already stored."""
    first = SQLiteStore(db_path)
    first.upsert([rec("a")], np.stack([unit(1, 0, 0, 0)]))
    first.close()
    second = SQLiteStore(db_path)
    try:
        with pytest.raises(StoreError, match="dimension"):
            second.upsert([rec("b")], np.ones((1, DIM * 2), dtype=np.float32))
    finally:
        second.close()


# -- search ----------------------------------------------------------------------------------------------


def test_search_is_best_first_cosine(filled):
    hits = filled.search(QUERY, filters=scope(), limit=10)
    assert ids(hits) == ["a", "b", "c", "d"]
    sims = [h.similarity for h in hits]
    assert sims == sorted(sims, reverse=True)
    assert sims == pytest.approx([1.0, 1 / np.sqrt(2), 1 / np.sqrt(3), 0.0], abs=1e-6)
    assert hits[1].vector.shape == (DIM,)
    assert np.allclose(hits[1].vector, unit(1, 1, 0, 0))


def test_search_limit(filled):
    assert ids(filled.search(QUERY, filters=scope(), limit=2)) == ["a", "b"]
    assert filled.search(QUERY, filters=scope(), limit=0) == []


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"kinds": ("example", "negative")}, ["b", "d"]),
        ({"statuses": ("validated",)}, ["a", "b", "d"]),
        ({"statuses": ("rejected",)}, ["c"]),
        ({"exclude_ids": frozenset({"a", "c"})}, ["b", "d"]),
        ({"created_before": T0 + timedelta(days=2)}, ["a", "b"]),  # strictly before: c (== bound) excluded
        ({"created_before": T0}, []),
        ({"kinds": ("interaction",), "statuses": ("validated",)}, ["a"]),
    ],
)
def test_search_filters(filled, extra, expected):
    assert ids(filled.search(QUERY, filters=scope(**extra), limit=10)) == expected
    assert filled.count(scope(**extra)) == len(expected)


def test_search_domain_filter(filled):
    filled.upsert([rec("other", domain="e")], np.stack([unit(1, 0, 0, 0)]))
    assert "other" not in ids(filled.search(QUERY, filters=scope(), limit=10))
    assert ids(filled.search(QUERY, filters=scope(domain="e"), limit=10)) == ["other"]


def test_tenants_are_isolated(filled):
    filled.upsert([rec("t2-only", tenant="t2")], np.stack([unit(1, 0, 0, 0)]))
    assert "t2-only" not in ids(filled.search(QUERY, filters=scope(), limit=10))
    assert ids(filled.search(QUERY, filters=scope(tenant="t2"), limit=10)) == ["t2-only"]
    assert ids(filled.search(QUERY, filters=scope(tenant="t3"), limit=10)) == []
    assert [r.id for r in filled.list(MemoryFilter(tenant="t2"))] == ["t2-only"]
    assert filled.count(MemoryFilter(tenant="t1")) == 4


def test_search_needs_tenant_and_domain(filled):
    with pytest.raises(StoreError):
        filled.search(QUERY, filters=MemoryFilter(domain="d"), limit=3)


# -- get / update / delete / count / list ------------------------------------------------------------------


def test_get_update_delete_count_list(filled):
    assert [r.id for r in filled.get(["c", "missing", "a"])] == ["c", "a"]
    assert filled.count() == 4
    assert [r.id for r in filled.list(scope())] == ["d", "c", "b", "a"]  # newest first
    assert [r.id for r in filled.list(scope(), limit=2, offset=1)] == ["c", "b"]

    assert filled.update("a", answer="changed", meta={"k": 1}) is True
    got = filled.get(["a"])[0]
    assert (got.answer, got.meta) == ("changed", {"k": 1})
    assert got.updated_at > T0 and got.created_at == T0
    assert filled.update("missing", answer="x") is False
    with pytest.raises(StoreError, match="domain"):
        filled.update("a", domain="elsewhere")
    assert filled.update("a", tenant="someone-else", answer="y") is False  # tenant scopes, it is not a field

    assert filled.delete(["a", "b", "missing"]) == 2
    assert filled.count() == 2
    assert filled.get(["a", "b"]) == []
    assert ids(filled.search(QUERY, filters=scope(), limit=10)) == ["c", "d"]


def test_status_update_is_seen_by_next_search(filled):
    validated = scope(statuses=("validated",))
    assert "a" in ids(filled.search(QUERY, filters=validated, limit=10))
    filled.update("a", status="rejected")
    assert "a" not in ids(filled.search(QUERY, filters=validated, limit=10))
    assert "a" in ids(filled.search(QUERY, filters=scope(statuses=("rejected",)), limit=10))


def test_deleted_then_reinserted_is_found_again(filled):
    filled.search(QUERY, filters=scope(), limit=10)  # warm the partition cache
    filled.delete(["a"])
    assert "a" not in ids(filled.search(QUERY, filters=scope(), limit=10))
    filled.upsert([rec("a")], np.stack([unit(1, 0, 0, 0)]))
    assert ids(filled.search(QUERY, filters=scope(), limit=1)) == ["a"]


def test_record_moved_to_another_tenant_leaves_the_old_partition(filled):
    filled.search(QUERY, filters=scope(), limit=10)  # warm the partition cache
    filled.upsert([rec("a", tenant="t2")], np.stack([unit(1, 0, 0, 0)]))
    assert "a" not in ids(filled.search(QUERY, filters=scope(), limit=10))
    assert ids(filled.search(QUERY, filters=scope(tenant="t2"), limit=10)) == ["a"]


def hit_of(store: SQLiteStore, rid: str) -> MemoryRecord:
    return next(h.record for h in store.search(QUERY, filters=scope(), limit=10) if h.record.id == rid)


def test_search_hits_are_parsed_once_and_kept(filled, monkeypatch):
    first = hit_of(filled, "a")
    monkeypatch.setattr(filled, "get", lambda *a, **k: pytest.fail("read again"))
    again = hit_of(filled, "a")
    assert again == first and again is not first  # a copy: changing it changes nothing kept
    again.answer, again.meta["x"] = "changed by a caller", 1
    assert hit_of(filled, "a") == first


def test_kept_hits_follow_every_write(filled):
    assert hit_of(filled, "a").answer == "a a"
    filled.update("a", answer="new answer", meta={"k": 1})
    assert (hit_of(filled, "a").answer, hit_of(filled, "a").meta) == ("new answer", {"k": 1})
    filled.upsert([rec("a", answer="upserted")], np.stack([unit(1, 0, 0, 0)]))
    assert hit_of(filled, "a").answer == "upserted"
    filled.delete(["a"])
    assert "a" not in ids(filled.search(QUERY, filters=scope(), limit=10))
    filled.upsert([rec("a", answer="back")], np.stack([unit(1, 0, 0, 0)]))
    assert hit_of(filled, "a").answer == "back"


def test_kept_hits_follow_another_processs_writes(db_path):
    mine, other = SQLiteStore(db_path), SQLiteStore(db_path)
    try:
        mine.upsert([rec("a")], np.stack([unit(1, 0, 0, 0)]))
        assert hit_of(other, "a").answer == "a a"
        mine.update("a", answer="edited elsewhere")
        assert hit_of(other, "a").answer == "edited elsewhere"
    finally:
        mine.close()
        other.close()


def test_kept_hits_are_bounded(filled, monkeypatch):
    monkeypatch.setattr("rag_middleware.memory.stores.sqlite.HIT_RECORDS", 2)
    filled.search(QUERY, filters=scope(), limit=10)
    assert len(filled._hits) == 2


# -- the database itself -------------------------------------------------------------------------------------


def test_wal_mode(store, db_path):
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"  # persistent in the file
    finally:
        raw.close()


def test_migrations_recorded_once(db_path):
    conn = connect(db_path)
    rows = conn.execute("SELECT name, applied_at FROM _migrations ORDER BY name").fetchall()
    conn.close()
    assert [r[0] for r in rows] == sorted(name for name, _ in MIGRATIONS)
    raw = sqlite3.connect(db_path)
    try:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        raw.close()
    assert {"memory", "embedding_cache", "interactions"} <= tables
    conn = connect(db_path)  # reopening must not re-apply (CREATE TABLE would fail) nor re-record
    again = conn.execute("SELECT name, applied_at FROM _migrations ORDER BY name").fetchall()
    conn.close()
    assert again == rows


def test_second_instance_sees_writes_of_the_first(db_path):
    """Another process (here: another connection) writes; this store's cached partition must be dropped."""
    mine = SQLiteStore(db_path)
    other = SQLiteStore(db_path)
    try:
        mine.upsert([rec("a")], np.stack([unit(1, 0, 0, 0)]))
        assert ids(other.search(QUERY, filters=scope(), limit=10)) == ["a"]  # other's partition is now cached

        mine.upsert([rec("b")], np.stack([unit(1, 0.1, 0, 0)]))
        assert ids(other.search(QUERY, filters=scope(), limit=10)) == ["a", "b"]

        mine.update("a", status="rejected")
        assert ids(other.search(QUERY, filters=scope(statuses=("validated",)), limit=10)) == ["b"]

        mine.upsert([rec("b")], np.stack([unit(0, 0, 0, 1)]))  # vector changed
        hit = other.search(unit(0, 0, 0, 1), filters=scope(), limit=1)[0]
        assert (hit.record.id, hit.similarity) == ("b", pytest.approx(1.0))

        mine.delete(["a"])
        assert ids(other.search(QUERY, filters=scope(), limit=10)) == ["b"]

        other.upsert([rec("c")], np.stack([unit(1, 0, 0, 0)]))  # and the other way round
        assert ids(mine.search(QUERY, filters=scope(), limit=1)) == ["c"]
    finally:
        mine.close()
        other.close()
