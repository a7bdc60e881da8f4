"""WeaviateStore on the wire: what it sends (collection config, tenant, vector name, filters, uuid5 ids, hybrid
parameters) and how it reads replies and failures, against an in-process REST + gRPC Weaviate (tests/weaviate_fake.py,
weaviate-client's own mock pattern). No Weaviate binary can run here."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, UTC

import numpy as np
import pytest
from weaviate.proto.v1 import base_pb2, base_search_pb2
from weaviate.util import generate_uuid5
import weaviate_fake
from weaviate_fake import FakeWeaviate, free_port

from rag_middleware.memory.stores.weaviate import WeaviateStore, object_uuid
from rag_middleware.config import WeaviateSettings
from rag_middleware.errors import StoreError, StoreUnavailableError
from rag_middleware.records import MemoryFilter, MemoryRecord

# weaviate_fake.py's fixtures, requested here by name (pytest finds fixtures among a module's attributes)
fake = weaviate_fake.fake

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def make_store(fake: FakeWeaviate, **kw) -> WeaviateStore:
    kw.setdefault("retry_interval", 0.2)
    return WeaviateStore(WeaviateSettings(url=fake.url, grpc_port=fake.grpc_port, skip_init_checks=True, **kw))


@pytest.fixture
def store(fake):
    s = make_store(fake)
    yield s
    s.close()


def rec(rid: str, *, tenant: str = "acme", domain: str = "d", kind: str = "interaction", status: str = "validated",
        created: datetime = T0, **kw) -> MemoryRecord:
    kw.setdefault("answer", f"answer {rid}")
    return MemoryRecord(id=rid, tenant=tenant, domain=domain, kind=kind, status=status, question=f"question {rid}",
                        created_at=created, updated_at=created, **kw)


def unit(i: int, dim: int = 4) -> np.ndarray:
    return np.eye(dim, dtype=np.float32)[i]


def flat_filters(f: base_pb2.Filters) -> dict[tuple[str, str], object]:
    """{(property, operator): value} of an AND of simple filters."""
    if f.operator == base_pb2.Filters.OPERATOR_AND:
        out: dict[tuple[str, str], object] = {}
        for sub in f.filters:
            out.update(flat_filters(sub))
        return out
    op = base_pb2.Filters.Operator.Name(f.operator).removeprefix("OPERATOR_")
    value = list(f.value_text_array.values) if f.HasField("value_text_array") else f.value_text
    return {(f.target.property, op): value}


def collect_filters(f: base_pb2.Filters) -> dict[tuple[str, str], object]:
    """Like flat_filters, but repeated (property, operator) pairs gather their values in a list."""
    if f.operator != base_pb2.Filters.OPERATOR_AND:
        return flat_filters(f)
    out: dict[tuple[str, str], object] = {}
    for sub in f.filters:
        for key, value in collect_filters(sub).items():
            if key in out and key[1] == "NOT_EQUAL":
                out[key] = [*out[key], value] if isinstance(out[key], list) else [out[key], value]
            else:
                out[key] = value
    return out


def test_collection_is_created_once_with_our_schema(fake, store):
    store.upsert([rec("a")], unit(0)[None])
    assert len(fake.schema_posts) == 1
    schema = fake.schema_posts[0]
    assert schema["class"] == "RagMemory"
    vec = schema["vectorConfig"]["embedding"]
    assert vec["vectorizer"] == {"none": {}} and vec["vectorIndexType"] == "hnsw"
    assert vec["vectorIndexConfig"]["distance"] == "cosine"
    assert schema["multiTenancyConfig"] == {"enabled": True, "autoTenantCreation": True, "autoTenantActivation": True}
    assert schema["invertedIndexConfig"]["indexTimestamps"] is True
    assert schema["invertedIndexConfig"]["indexNullState"] is True
    props = {p["name"]: p for p in schema["properties"]}
    for name in ("record_id", "kind", "domain", "status", "template_version"):
        assert props[name]["dataType"] == ["text"] and props[name]["tokenization"] == "field"
        assert props[name]["indexFilterable"] is True
    assert props["score"]["dataType"] == ["number"] and props["score"]["indexFilterable"] is True
    assert props["created_at"]["dataType"] == ["date"] and props["created_at"]["indexRangeFilters"] is True
    for name in ("question", "answer"):
        assert props[name]["dataType"] == ["text"] and props[name]["indexSearchable"] is True
    # a second process (a new client) finds the collection and does not create it again
    other = make_store(fake)
    try:
        assert other.count() == 1
    finally:
        other.close()
    assert len(fake.schema_posts) == 1
    assert "replicationConfig" not in schema  # one node: the server's default


def test_a_cluster_collection_is_created_with_its_replication_factor(fake):
    store = make_store(fake, replication_factor=3, collection="RagMemory")
    try:
        store.count()
    finally:
        store.close()
    assert fake.schema_posts[0]["replicationConfig"]["factor"] == 3


def test_upsert_sends_uuid5_ids_the_tenant_and_the_named_vector(fake, store):
    result = store.upsert([rec("a"), rec("b", score=0.25)], np.stack([unit(0), unit(1)]))
    assert result == {"inserted": 2, "updated": 0, "unchanged": 0}
    sent = fake.calls["BatchObjects"][-1].objects
    assert [o.uuid for o in sent] == [generate_uuid5("a"), generate_uuid5("b")] == [object_uuid("a"), object_uuid("b")]
    assert {o.tenant for o in sent} == {"acme"} and {o.collection for o in sent} == {"RagMemory"}
    assert [v.name for o in sent for v in o.vectors] == ["embedding", "embedding"]
    assert np.frombuffer(sent[1].vectors[0].vector_bytes, dtype=np.float32).tolist() == unit(1).tolist()
    stored = fake.objects["acme"][generate_uuid5("b")]["props"]
    assert stored["record_id"] == "b" and stored["score"] == 0.25
    assert stored["created_at"].startswith("2024-01-01T00:00:00")


def test_reupsert_counts_unchanged_and_updated_and_keeps_created_at(fake, store):
    store.upsert([rec("a")], unit(0)[None])
    batches = len(fake.calls["BatchObjects"])
    assert store.upsert([rec("a")], unit(0)[None]) == {"inserted": 0, "updated": 0, "unchanged": 1}
    assert len(fake.calls["BatchObjects"]) == batches, "an unchanged record is not sent again"
    later = rec("a", created=T0 + timedelta(days=3), answer="new")
    assert store.upsert([later], unit(0)[None]) == {"inserted": 0, "updated": 1, "unchanged": 0}
    got = store.get(["a"])[0]
    assert got.answer == "new" and got.created_at == T0
    assert store.upsert([rec("a", answer="new")], unit(1)[None])["updated"] == 1, "a new vector is a change"


def test_a_failed_object_raises_our_error_and_is_never_dropped_silently(fake, store):
    fake.reject["bad"] = "vector lengths don't match: 4 vs 8"
    with pytest.raises(StoreError) as err:
        store.upsert([rec("good"), rec("bad")], np.stack([unit(0), unit(1)]))
    assert not isinstance(err.value, StoreUnavailableError)
    assert "1 of 2" in str(err.value) and "bad" in str(err.value) and "vector lengths" in str(err.value)
    assert [o["props"]["record_id"] for o in fake.objects["acme"].values()] == ["good"]
    fake.reject["bad"] = "rpc error: code = Unavailable desc = connection refused"  # lost, not refused: retry later
    with pytest.raises(StoreUnavailableError, match="connection refused"):
        store.upsert([rec("bad")], unit(1)[None])


def test_search_sends_filters_tenant_and_vector_name_and_reads_hits(fake, store):
    records = [rec("a"), rec("b", kind="example"), rec("c", status="rejected"),
               rec("d", created=T0 + timedelta(days=9)), rec("e"), rec("f"), rec("other", domain="elsewhere")]
    vectors = np.stack([np.asarray([1, x, 0, 0], dtype=np.float32) / np.hypot(1, x)
                        for x in (0, 0.1, 0.2, 0.3, 0.4, 0.5, 0)])
    store.upsert(records, vectors)
    flt = MemoryFilter(tenant="acme", domain="d", kinds=("example", "interaction"), statuses=("validated",),
                       created_before=T0 + timedelta(days=1), exclude_ids=frozenset({"e", "f"}))
    hits = store.search(unit(0), filters=flt, limit=5)
    assert [h.record.id for h in hits] == ["a", "b"]
    assert hits[0].similarity == pytest.approx(1.0) and hits[1].similarity == pytest.approx(1 / np.hypot(1, 0.1))
    assert hits[1].vector.dtype == np.float32 and np.allclose(hits[1].vector, vectors[1])
    assert hits[1].record.kind == "example" and hits[1].record.created_at == T0
    req = fake.calls["Search"][-1]
    assert req.collection == "RagMemory" and req.tenant == "acme" and req.limit == 5
    assert list(req.near_vector.targets.target_vectors) == ["embedding"]
    assert list(req.metadata.vectors) == ["embedding"] and req.metadata.distance
    assert collect_filters(req.filters) == {
        ("domain", "EQUAL"): "d",
        ("kind", "CONTAINS_ANY"): ["example", "interaction"],
        ("status", "CONTAINS_ANY"): ["validated"],
        ("created_at", "LESS_THAN"): "2024-01-02T00:00:00.000000+00:00",
        ("record_id", "NOT_EQUAL"): ["e", "f"],  # ContainsNone would need Weaviate 1.33
    }


def test_hybrid_search_sends_text_alpha_fusion_and_vector_name(fake):
    store = make_store(fake, hybrid=True, alpha=0.3)
    try:
        store.upsert([rec("a"), rec("b")], np.stack([unit(0), unit(1)]))
        hits = store.search(unit(1), filters=MemoryFilter(tenant="acme", domain="d"), limit=2, text="sort by price")
        req = fake.calls["Search"][-1]
        assert req.HasField("hybrid_search") and not req.HasField("near_vector")
        h = req.hybrid_search
        assert h.query == "sort by price" and h.alpha == pytest.approx(0.3)
        assert h.fusion_type == base_search_pb2.Hybrid.FUSION_TYPE_RELATIVE_SCORE
        assert list(h.targets.target_vectors) == ["embedding"]
        assert np.frombuffer(h.vector_bytes, dtype=np.float32).tolist() == unit(1).tolist()
        assert [x.record.id for x in hits][0] == "b" and hits[0].similarity == pytest.approx(1.0)
        store.search(unit(1), filters=MemoryFilter(tenant="acme", domain="d"), limit=2)  # no text: vector search
        assert fake.calls["Search"][-1].HasField("near_vector")
    finally:
        store.close()


def test_a_tenant_that_does_not_exist_returns_nothing(fake, store):
    store.upsert([rec("a")], unit(0)[None])
    searches = len(fake.calls["Search"])
    assert store.search(unit(0), filters=MemoryFilter(tenant="nobody", domain="d"), limit=3) == []
    assert len(fake.calls["Search"]) == searches, "a missing tenant is never queried (Weaviate would error)"
    assert "nobody" in fake.calls["TenantExists"]
    assert store.count(MemoryFilter(tenant="nobody")) == 0 and store.list(MemoryFilter(tenant="nobody")) == []
    assert store.search(unit(0), filters=MemoryFilter(tenant="has.dot", domain="d"), limit=3) == []


def test_tenant_names_weaviate_cannot_hold_are_refused_before_sending(fake, store):
    with pytest.raises(StoreError, match="not a valid Weaviate tenant"):
        store.upsert([rec("a", tenant="acme.com")], unit(0)[None])
    assert fake.calls["BatchObjects"] == []


def test_get_update_delete_count_and_list_across_tenants(fake, store):
    store.upsert([rec("a", tenant="t1", created=T0), rec("b", tenant="t2", created=T0 + timedelta(hours=1)),
                  rec("c", tenant="t2", kind="negative", created=T0 + timedelta(hours=2), meta={"k": [1, 2]})],
                 np.stack([unit(0), unit(1), unit(2)]))
    assert [r.id for r in store.get(["c", "a", "zz"])] == ["c", "a"]
    assert store.get(["c"])[0].tenant == "t2" and store.get(["c"])[0].meta == {"k": [1, 2]}
    assert store.count() == 3 and store.count(MemoryFilter(tenant="t2")) == 2
    assert store.count(MemoryFilter(kinds=("negative",))) == 1
    assert [r.id for r in store.list()] == ["c", "b", "a"]
    assert [r.id for r in store.list(limit=1, offset=1)] == ["b"]
    assert store.update("b", status="approved", meta={"by": "me"}) is True
    assert fake.calls["Patch"][-1]["properties"]["status"] == "approved"
    got = store.get(["b"])[0]
    assert got.status == "approved" and got.meta == {"by": "me"} and got.updated_at > T0
    assert store.update("nope", status="approved") is False
    with pytest.raises(StoreError, match="cannot update"):
        store.update("b", domain="x")
    searches = len(fake.calls.get("Search", []))
    assert store.update("b", tenant="t1", status="rejected") is False  # b lives in t2: t1 alone is looked at
    assert [r.id for r in store.get(["b", "a"], tenant="t2")] == ["b"]
    assert store.get(["b"], tenant="no-such-tenant") == []
    assert len(fake.calls.get("Search", [])) - searches == 2  # one fetch per scoped call, none for a missing tenant
    with pytest.raises(StoreError, match="invalid update"):
        store.update("b", status="bogus")
    assert store.delete(["a", "c", "zz"]) == 2 and store.count() == 1


def test_unreachable_weaviate_fails_fast_with_store_unavailable(fake):
    nowhere = WeaviateStore(WeaviateSettings(url=f"http://127.0.0.1:{free_port()}", grpc_port=free_port(),
                                             skip_init_checks=True, retry_interval=30))
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="unreachable"):
            nowhere.count()
        assert time.monotonic() - started < 3
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):  # within retry_interval: no new attempt at all
            nowhere.search(unit(0), filters=MemoryFilter(tenant="a", domain="d"), limit=1)
        assert time.monotonic() - started < 0.05 and not nowhere.available
    finally:
        nowhere.close()
    # REST answers but gRPC (which queries use) does not: found out by the probe, not after the whole timeout
    no_grpc = WeaviateStore(WeaviateSettings(url=fake.url, grpc_port=free_port(), skip_init_checks=True))
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            no_grpc.count()  # lists the tenants over gRPC
        assert time.monotonic() - started < 4
    finally:
        no_grpc.close()
    # connected first, then Weaviate goes away: the client alone would retry gRPC for about a minute
    store = make_store(fake)
    try:
        store.upsert([rec("a")], unit(0)[None])
        fake.stop()
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            store.search(unit(0), filters=MemoryFilter(tenant="acme", domain="d"), limit=1)
        assert time.monotonic() - started < 4
        fake.start()
        time.sleep(0.3)  # past retry_interval
        assert store.count() == 1 and store.available
    finally:
        store.close()


def test_custom_connection_reaches_the_server_by_separate_http_and_grpc_hosts(fake):
    store = WeaviateStore(WeaviateSettings(connection="custom", http_host="127.0.0.1", port=fake.port,
                                           grpc_host="localhost", grpc_port=fake.grpc_port, skip_init_checks=True))
    try:
        store.upsert([rec("a")], unit(0)[None])
        assert store.count() == 1 and store.rest_url() == fake.url
    finally:
        store.close()


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.closed = 0

    def client(self, kind: str):
        recorder = self

        class Client:
            def __init__(self, **kw) -> None:
                recorder.calls.append((kind, kw))

            def connect(self) -> None:
                raise RuntimeError("no Weaviate binary here")

            def close(self) -> None:
                recorder.closed += 1

        return Client


def test_cloud_and_embedded_connections_pass_credentials_timeouts_and_paths(monkeypatch, tmp_path):
    import weaviate

    rec_ = _Recorder()
    monkeypatch.setattr(weaviate, "connect_to_weaviate_cloud", lambda **kw: rec_.calls.append(("cloud", kw)) or
                        (_ for _ in ()).throw(weaviate.exceptions.WeaviateStartUpError("offline")))
    monkeypatch.setattr(weaviate, "WeaviateClient", rec_.client("embedded"))
    cloud = WeaviateStore(WeaviateSettings(connection="cloud", cluster_url="abc.weaviate.cloud", api_key="k3y",
                                           skip_init_checks=True, timeout_init=1.5, timeout_query=7,
                                           timeout_insert=33))
    with pytest.raises(StoreUnavailableError):
        cloud.count()
    kind, kw = rec_.calls[-1]
    assert kind == "cloud" and kw["cluster_url"] == "abc.weaviate.cloud" and kw["skip_init_checks"] is True
    assert kw["auth_credentials"].api_key == "k3y"
    timeout = kw["additional_config"].timeout
    assert (timeout.init, timeout.query, timeout.insert) == (1.5, 7, 33)
    assert cloud.rest_url() == "https://abc.weaviate.cloud"
    cloud.close()

    embedded = WeaviateStore(WeaviateSettings(connection="embedded", binary_path=tmp_path / "bin", port=8079,
                                              grpc_port=50050, skip_init_checks=True), data_dir=tmp_path / "data")
    with pytest.raises(StoreError, match="no Weaviate binary"):
        embedded.count()
    kind, kw = rec_.calls[-1]
    options = kw["embedded_options"]
    assert kind == "embedded" and kw["skip_init_checks"] is True
    assert options.binary_path == str(tmp_path / "bin")
    assert options.persistence_data_path == str(tmp_path / "data" / "weaviate")
    assert (options.port, options.grpc_port) == (8079, 50050)
    embedded.close()

    with pytest.raises(StoreError, match="cluster_url and api_key"):
        WeaviateStore(WeaviateSettings(connection="cloud")).count()
