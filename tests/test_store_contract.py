"""One contract for every memory store backend, through the MemoryStore Protocol only.

Legs: ``sqlite`` always runs; ``weaviate-wire`` runs the outbox-wrapped Weaviate store against the in-process REST +
gRPC Weaviate of tests/weaviate_fake.py; ``weaviate-live`` runs it against a real server when RAG_MW_WEAVIATE_URL
is set (gRPC port from RAG_MW_WEAVIATE_GRPC_PORT, default 50051), in a collection of its own that is dropped after.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, UTC

import numpy as np
import pytest

from weaviate_fake import FakeWeaviate, quiet_weaviate_logs

from rag_middleware import load_settings
from rag_middleware.memory.stores import MemoryStore, open_store
from rag_middleware.errors import StoreError
from rag_middleware.records import MemoryFilter, MemoryRecord

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DIM = 8
LIVE_URL = os.environ.get("RAG_MW_WEAVIATE_URL")


@pytest.fixture(params=[
    "sqlite",
    "weaviate-wire",
    pytest.param("weaviate-live", marks=[
        pytest.mark.live,
        pytest.mark.skipif(not LIVE_URL, reason="set RAG_MW_WEAVIATE_URL to run the contract against a live Weaviate"),
    ]),
])
def store(request, tmp_path, caplog):
    quiet_weaviate_logs(caplog)
    kind = request.param
    if kind == "sqlite":
        s = open_store(load_settings(data_dir=tmp_path / "data"))
        yield s
        s.close()
        return
    if kind == "weaviate-wire":
        fake = FakeWeaviate().start()
        url, grpc_port, collection = fake.url, fake.grpc_port, "RagMemory"
    else:
        fake = None
        url, grpc_port = LIVE_URL, int(os.environ.get("RAG_MW_WEAVIATE_GRPC_PORT", "50051"))
        collection = f"RagContract{uuid.uuid4().hex[:10]}"
    s = open_store(load_settings(data_dir=tmp_path / "data", store={"backend": "weaviate", "weaviate": {
        "url": url, "grpc_port": grpc_port, "collection": collection, "skip_init_checks": True,
        "outbox": {"flush_interval": 60}}}))
    try:
        yield s
    finally:
        if fake is None:
            client = s.inner._live_client()
            client.collections.delete(collection)
        s.close()
        if fake is not None:
            fake.stop()


def rec(rid: str, *, tenant: str = "t1", domain: str = "d", kind: str = "interaction", status: str = "validated",
        created: datetime = T0, **kw) -> MemoryRecord:
    kw.setdefault("answer", f"answer {rid}")
    return MemoryRecord(id=rid, tenant=tenant, domain=domain, kind=kind, status=status, question=f"question {rid}",
                        created_at=created, updated_at=created, **kw)


def direction(*xs: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(xs)] = xs
    return v / np.linalg.norm(v)


def scope(**kw) -> MemoryFilter:
    kw.setdefault("tenant", "t1")
    kw.setdefault("domain", "d")
    return MemoryFilter(**kw)


@pytest.fixture
def filled(store: MemoryStore) -> MemoryStore:
    """Five records of t1/d spread around the first axis, plus one in another domain and one in another tenant."""
    records = [
        rec("a", created=T0),
        rec("b", kind="example", created=T0 + timedelta(days=1)),
        rec("c", status="rejected", created=T0 + timedelta(days=2)),
        rec("n", kind="negative", created=T0 + timedelta(days=3), wrong="bad", reason="why"),
        rec("e", created=T0 + timedelta(days=4)),
        rec("x", domain="other", created=T0),
        rec("y", tenant="t2", created=T0),
    ]
    vectors = np.stack([direction(1, 0), direction(1, 0.2), direction(1, 0.4), direction(1, 0.6), direction(1, 0.8),
                        direction(1, 0), direction(1, 0)])
    assert store.upsert(records, vectors) == {"inserted": 7, "updated": 0, "unchanged": 0}
    return store


def ids(hits) -> list[str]:
    return [h.record.id for h in hits]


def test_the_backend_implements_the_protocol(store):
    assert isinstance(store, MemoryStore)
    assert store.count() == 0 and store.list() == [] and store.get(["nope"]) == [] and store.delete([]) == 0


def test_search_is_best_first_with_cosine_similarities_and_vectors(filled):
    hits = filled.search(direction(1, 0), filters=scope(), limit=3)
    assert ids(hits) == ["a", "b", "c"]
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert hits[1].similarity == pytest.approx(float(direction(1, 0.2) @ direction(1, 0)), abs=1e-5)
    assert np.allclose(np.asarray(hits[2].vector, dtype=np.float32), direction(1, 0.4), atol=1e-6)
    assert filled.search(direction(1, 0), filters=scope(), limit=0) == []


def test_search_filters_kinds_statuses_time_exclusions_domain_and_tenant(filled):
    q = direction(1, 0)
    assert ids(filled.search(q, filters=scope(kinds=("example",)), limit=9)) == ["b"]
    assert ids(filled.search(q, filters=scope(kinds=("negative",)), limit=9)) == ["n"]
    assert ids(filled.search(q, filters=scope(statuses=("rejected",)), limit=9)) == ["c"]
    assert ids(filled.search(q, filters=scope(created_before=T0 + timedelta(days=2)), limit=9)) == ["a", "b"]
    assert ids(filled.search(q, filters=scope(exclude_ids=frozenset({"a", "c"})), limit=3)) == ["b", "n", "e"]
    assert ids(filled.search(q, filters=scope(domain="other"), limit=9)) == ["x"]
    assert ids(filled.search(q, filters=scope(tenant="t2"), limit=9)) == ["y"]
    assert filled.search(q, filters=scope(tenant="nobody"), limit=9) == []


def test_search_needs_a_tenant_and_a_domain(filled):
    with pytest.raises(StoreError):
        filled.search(direction(1, 0), filters=MemoryFilter(tenant="t1"), limit=3)


def test_records_round_trip_every_field(store):
    original = rec("full", kind="negative", status="approved", source="import", reason="because", wrong="{}",
                   score=0.75, template_version="abc123", meta={"k": [1, "two"], "n": None})
    store.upsert([original], direction(0, 1)[None])
    got = store.get(["full"])
    assert got == [original]
    bare = rec("bare")
    store.upsert([bare], direction(1)[None])
    assert store.get(["bare"])[0].score is None and store.get(["bare"])[0].meta == {}


def test_upsert_is_idempotent_and_counts_what_it_did(store):
    assert store.upsert([rec("a"), rec("b")], np.stack([direction(1), direction(0, 1)])) == {
        "inserted": 2, "updated": 0, "unchanged": 0}
    assert store.upsert([rec("a"), rec("b")], np.stack([direction(1), direction(0, 1)])) == {
        "inserted": 0, "updated": 0, "unchanged": 2}
    moved = rec("a", answer="changed", created=T0 + timedelta(days=5))
    assert store.upsert([moved], direction(1)[None]) == {"inserted": 0, "updated": 1, "unchanged": 0}
    got = store.get(["a"])[0]
    assert got.answer == "changed" and got.created_at == T0, "created_at keeps its first value"
    assert store.count() == 2


def test_upsert_refuses_mismatched_records_and_vectors(store):
    with pytest.raises(StoreError):
        store.upsert([rec("a"), rec("b")], direction(1)[None])
    assert store.count() == 0


def test_get_keeps_the_order_asked_and_skips_unknown_ids(filled):
    assert [r.id for r in filled.get(["e", "zz", "a", "y"])] == ["e", "a", "y"]
    assert filled.get([]) == []


def test_update_changes_fields_and_says_whether_the_record_exists(filled):
    assert filled.update("b", status="approved", answer="better", meta={"by": "reviewer"}) is True
    got = filled.get(["b"])[0]
    assert (got.status, got.answer, got.meta) == ("approved", "better", {"by": "reviewer"})
    assert got.updated_at > T0 and got.created_at == T0 + timedelta(days=1)
    assert ids(filled.search(direction(1, 0), filters=scope(statuses=("approved",)), limit=9)) == ["b"]
    assert filled.update("zz", status="approved") is False
    with pytest.raises(StoreError):
        filled.update("b", domain="elsewhere")  # not an updatable field


def test_get_and_update_can_be_scoped_to_one_tenant(filled):
    assert [r.id for r in filled.get(["a", "y"], tenant="t1")] == ["a"]
    assert [r.id for r in filled.get(["a", "y"], tenant="t2")] == ["y"]
    assert filled.get(["a"], tenant="nobody") == []
    assert filled.update("y", tenant="t1", status="approved") is False  # y lives in t2
    assert filled.get(["y"])[0].status != "approved"
    assert filled.update("y", tenant="t2", status="approved") is True
    assert filled.get(["y"], tenant="t2")[0].status == "approved"


def test_delete_count_and_list(filled):
    assert filled.count() == 7
    assert filled.count(MemoryFilter(tenant="t1")) == 6
    assert filled.count(scope(kinds=("example", "negative"))) == 2
    assert filled.count(scope(statuses=("validated",))) == 4
    assert filled.count(scope(created_before=T0 + timedelta(days=1))) == 1
    assert [r.id for r in filled.list(scope(), limit=3)] == ["e", "n", "c"]
    assert [r.id for r in filled.list(scope(), limit=2, offset=3)] == ["b", "a"]
    assert filled.delete(["a", "y", "zz"]) == 2
    assert filled.count() == 5 and filled.get(["a", "y"]) == []
    assert "a" not in ids(filled.search(direction(1, 0), filters=scope(), limit=9))
