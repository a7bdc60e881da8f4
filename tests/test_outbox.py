"""Nothing lost, fail-open: writes during a Weaviate outage wait in the SQLite outbox and arrive exactly once when it
is back; a question asked during an outage is still answered (without memory), health says degraded, and the
warning is logged once per outage. Weaviate is the in-process REST + gRPC fake of tests/weaviate_fake.py."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient
from weaviate.util import generate_uuid5
import weaviate_fake
from weaviate_fake import FakeWeaviate

from conftest import FakeLLM, HashEmbedder, wait_for
from rag_middleware import Middleware, load_settings
from rag_middleware.memory.stores import open_store
from rag_middleware.memory.stores.outbox import OutboxStore
from rag_middleware.errors import StoreError, StoreUnavailableError
from rag_middleware.records import MemoryFilter, MemoryRecord
from rag_middleware.server import create_app
from rag_middleware.llm.tokens import ApproxTokenCounter

# weaviate_fake.py's fixtures, requested here by name (pytest finds fixtures among a module's attributes)
fake = weaviate_fake.fake

Q = "Columns: price, qty\nsort by price, cheapest first"
GOOD = {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "price", "ascending": True}}}]}


def weaviate_settings(project: Path, fake: FakeWeaviate, **kw):
    return load_settings(
        data_dir=project / "data", knowledge_base=project / "knowledge_base", prompts_dir=project / "prompts",
        retry={"backoff_initial": 0.0, "backoff_max": 0.0},
        store={"backend": "weaviate", "weaviate": {
            "url": fake.url, "grpc_port": fake.grpc_port, "skip_init_checks": True, "retry_interval": 0.2,
            "outbox": {"flush_interval": 0.1, "backoff_initial": 0.05, "backoff_max": 0.2}, **kw}},
    )


def rec(rid: str, tenant: str = "acme", **kw) -> MemoryRecord:
    kw.setdefault("answer", f"answer {rid}")
    return MemoryRecord(id=rid, tenant=tenant, domain="data_ops", question=f"question {rid}", **kw)


def vec(i: int) -> np.ndarray:
    v = np.zeros(8, dtype=np.float32)
    v[i % 8] = 1.0
    return v


def test_open_store_gives_the_outbox_wrapped_weaviate_store(project, fake):
    store = open_store(weaviate_settings(project, fake))
    try:
        assert isinstance(store, OutboxStore) and store.name == "weaviate+outbox"
    finally:
        store.close()


def test_writes_during_an_outage_arrive_exactly_once_when_weaviate_is_back(project, fake, caplog):
    settings = weaviate_settings(project, fake)
    store = open_store(settings)
    try:
        assert store.upsert([rec("before")], vec(0)[None]) == {"inserted": 1, "updated": 0, "unchanged": 0}
        fake.stop()
        caplog.set_level(logging.WARNING, logger="rag_middleware")
        started = time.monotonic()
        queued = store.upsert([rec(f"r{i}") for i in range(10)], np.stack([vec(i) for i in range(10)]))
        assert queued == {"inserted": 0, "updated": 0, "unchanged": 0, "queued": 10}
        assert time.monotonic() - started < 3, "a write during an outage must not wait for Weaviate"
        store.upsert([rec("r3", answer="second version")], vec(3)[None])  # written twice: one pending write
        store.upsert([rec("other", tenant="globex")], vec(1)[None])
        assert store.update("r4", status="approved") is True  # applied to the queued record
        assert store.delete(["r5"]) == 1  # only ever queued: dropped, and deleted remotely for good measure
        assert store.depth() == 11  # 10 + other; r3 twice, r4 merged, r5 now a delete
        assert [r.answer for r in store.get(["r3"])] == ["second version"], "queued writes are readable"
        warnings = [r for r in caplog.records if "outbox" in r.getMessage() and r.levelno == logging.WARNING]
        assert len(warnings) == 1, "one warning per outage, not one per write"
    finally:
        store.close()  # a restart while Weaviate is still down: the queue is on disk
    assert fake.count() == 1
    store = open_store(settings)
    try:
        assert store.depth() == 11  # 10 + other; r3 twice, r4 merged, r5 now a delete
        fake.start()
        wait_for(lambda: store.depth() == 0)
        ids = {f"r{i}" for i in range(10)} - {"r5"}
        assert {o["props"]["record_id"] for o in fake.objects["acme"].values()} == ids | {"before"}
        assert {o["props"]["record_id"] for o in fake.objects["globex"].values()} == {"other"}
        assert all(fake.deliveries[generate_uuid5(i)] == 1 for i in ids | {"other"}), fake.deliveries
        assert generate_uuid5("r5") not in fake.deliveries
        assert store.get(["r3"])[0].answer == "second version"
        assert store.get(["r4"])[0].status == "approved"
        assert store.count() == 11
    finally:
        store.close()


def test_a_record_sent_twice_lands_once(project, fake):
    """The flush after an ambiguous failure resends; uuid5 makes the second arrival the same object."""
    store = open_store(weaviate_settings(project, fake))
    try:
        store.upsert([rec("a")], vec(0)[None])
        store._enqueue([("a", "upsert", rec("a").model_dump_json(), vec(0).tobytes())])  # as if never acknowledged
        store.flush()
        assert fake.count() == 1 and store.depth() == 0
    finally:
        store.close()


def test_a_refused_write_raises_stays_queued_and_does_not_hold_back_the_rest(project, fake):
    settings = weaviate_settings(project, fake)
    settings.store.weaviate.outbox.batch_size = 2
    store = open_store(settings)
    try:
        fake.reject["bad"] = "property 'answer' is not text"
        with pytest.raises(StoreError, match="1 queued write") as err:
            store.upsert([rec("bad"), rec("good")], np.stack([vec(0), vec(1)]))
        assert not isinstance(err.value, StoreUnavailableError) and "not text" in str(err.value)
        assert store.depth() == 1 and "not text" in store.status()["last_error"]
        with pytest.raises(StoreError, match="first bad"):  # the refused write is first in line ...
            store.upsert([rec(f"later{i}") for i in range(3)], np.stack([vec(i) for i in range(3)]))
        assert store.depth() == 1 and fake.count() == 4  # ... and the others still went through
        del fake.reject["bad"]
        wait_for(lambda: store.depth() == 0)
        assert fake.count() == 5
        with pytest.raises(StoreError, match="not a valid Weaviate tenant"):  # refused before it is queued
            store.upsert([rec("x", tenant="bad tenant")], vec(0)[None])
        assert store.depth() == 0
    finally:
        store.close()


def test_question_during_an_outage_is_answered_without_memory_and_health_is_degraded(project, fake, caplog):
    settings = weaviate_settings(project, fake).model_copy(update={"server": load_settings(
        server={"upstream": "embedded"}).server, "learn": "all"})  # the unreviewed answer is an example too
    llm = FakeLLM()
    mw = Middleware(settings, backend=llm, embedder=HashEmbedder(), token_counter=ApproxTokenCounter())
    client = TestClient(create_app(settings, middleware=mw))
    try:
        llm.enqueue(json.dumps(GOOD))
        first = mw.ask(Q, domain="data_ops", tenant="acme")
        assert first.valid and first.memory_available
        wait_for(lambda: mw.store.depth() == 0)
        health = client.get("/rag/health").json()
        assert health["status"] == "ok" and health["store"]["outbox"]["depth"] == 0
        assert health["store"]["detail"].startswith("ready")  # one tenant-list call, not a count per tenant

        fake.stop()
        caplog.set_level(logging.WARNING, logger="rag_middleware")
        answers = []
        for _ in range(3):
            llm.enqueue(json.dumps(GOOD))
            started = time.monotonic()
            answers.append(mw.ask(Q, domain="data_ops", tenant="acme"))
            assert time.monotonic() - started < 5
        assert all(a.valid and a.output == GOOD for a in answers)
        assert [a.memory_available for a in answers] == [False, False, False]
        assert all(s.source == "curated" for a in answers for s in a.selected), "memory could not be searched"
        assert all(mw.journal.get(a.interaction_id).memory_available is False for a in answers)
        down = [r for r in caplog.records if "memory unavailable" in r.getMessage()]
        assert len(down) == 1, "the outage is logged once, not on every request"
        health = client.get("/rag/health").json()
        assert health["status"] == "degraded" and health["store"]["ok"] is False
        assert "unreachable" in health["store"]["detail"]
        assert health["store"]["outbox"]["depth"] == 3, "the three answers wait in the outbox"

        fake.start()
        wait_for(lambda: mw.store.depth() == 0)
        llm.enqueue(json.dumps(GOOD))
        back = mw.ask(Q, domain="data_ops", tenant="acme")
        assert back.memory_available and any(s.source == "memory" for s in back.selected)
        assert mw.store.count(MemoryFilter(tenant="acme")) == 5
        assert all(fake.deliveries[generate_uuid5(a.interaction_id)] == 1 for a in answers)
        assert client.get("/rag/health").json()["status"] == "ok"
    finally:
        client.close()
        mw.close()


def test_the_pipeline_sends_the_question_text_to_a_hybrid_search(project, fake):
    settings = weaviate_settings(project, fake, hybrid=True, alpha=0.4)
    llm = FakeLLM()
    mw = Middleware(settings, backend=llm, embedder=HashEmbedder(), token_counter=ApproxTokenCounter())
    try:
        llm.enqueue(json.dumps(GOOD))
        assert mw.ask(Q, domain="data_ops", tenant="acme").valid
        wait_for(lambda: mw.store.depth() == 0)
        llm.enqueue(json.dumps(GOOD))
        assert mw.ask(Q + " please", domain="data_ops", tenant="acme").memory_available
        searches = [c for c in fake.calls["Search"] if c.HasField("hybrid_search")]
        assert searches and searches[-1].hybrid_search.query == Q + " please"
        assert searches[-1].hybrid_search.alpha == pytest.approx(0.4)
    finally:
        mw.close()


def test_a_tenant_scoped_update_queued_in_an_outage_reaches_that_tenant(project, fake):
    store = open_store(weaviate_settings(project, fake))
    try:
        store.upsert([rec("a"), rec("b", tenant="globex")], np.stack([vec(0), vec(1)]))
        wait_for(lambda: store.depth() == 0)
        fake.stop()
        assert store.update("a", tenant="acme", status="approved") is True  # queued with its tenant
        assert store.depth() == 1
        fake.start()
        wait_for(lambda: store.depth() == 0)
        assert store.get(["a"], tenant="acme")[0].status == "approved"
        assert store.get(["b"], tenant="globex")[0].status == "validated"
    finally:
        store.close()
