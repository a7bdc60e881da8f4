"""server.warm: every domain's caches are filled in a background thread at start (the curated examples
embedded, the votes judged, the clause bank embedded), /rag/health says when, and a broken domain is skipped."""

from __future__ import annotations

import json
import logging
import threading

from conftest import wait_for
from starlette.testclient import TestClient

from rag_middleware.server import create_app

SHIPPED = {"assistant", "claims_intake", "data_ops", "listing_search", "shop_query"}


def client_for(mw, **server) -> TestClient:
    settings = mw.settings.model_copy(update={"server": mw.settings.server.model_copy(
        update={"upstream": "embedded", **server})})
    return TestClient(create_app(settings, middleware=mw))


def warm_done(client: TestClient) -> dict:
    return wait_for(lambda: (lambda body: body if body["warm"] else None)(client.get("/rag/health").json()))


def test_warm_fills_every_domains_caches_before_the_first_request(mw, caplog):
    caplog.set_level(logging.INFO, logger="rag_middleware.server")
    with client_for(mw) as client:
        health = warm_done(client)
        assert health["status"] == "ok" and health["warm"] is True
        retriever, grammar = mw.assembler.retriever, mw.assembler.grammar
        assert set(retriever._curated) == SHIPPED and set(retriever._judged) == SHIPPED
        for name in SHIPPED:
            domain = mw.domains.get(name)  # the same object the warm-up loaded (the registry's cache)
            key, examples, negatives = retriever._curated[name]
            assert key[0] == id(domain) and len(examples) == len(domain.examples) > 0
            assert len(negatives) == len(domain.negatives)
        assert retriever._judged["data_ops"]  # data_ops votes: its fields were judged leave-one-out
        guided = [n for n in SHIPPED if mw.domains.get(n).split is not None]
        assert "data_ops" in guided
        for name in guided:
            cached_id, guide = grammar._guides[name]
            assert cached_id == id(mw.domains.get(name)) and guide._vectors is not None  # the clause bank

        # the first request of a domain embeds nothing of the domain's (an example's question: nothing at all)
        computed = mw.embedder.computed
        question = mw.domains.get("data_ops").examples[0].question
        mw.render(question, domain="data_ops")
        assert mw.embedder.computed == computed
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "rag_middleware.server"
             and r.getMessage().startswith("{") and '"event": "warm' in r.getMessage()]
    done = [line for line in lines if line["event"] == "warm"]
    assert len(done) == 1 and set(done[0]["domains"]) == SHIPPED and done[0]["failed"] == []
    assert isinstance(done[0]["seconds"], float) and not done[0]["stopped"]


def test_warm_off_warms_nothing(mw):
    with client_for(mw, warm=False) as client:
        health = client.get("/rag/health").json()
        assert health["status"] == "ok" and health["warm"] is False
        assert client.app.state.warmup is None
        assert not any(t.name == "rag-mw-warm" for t in threading.enumerate())
        assert mw.assembler.retriever._curated == {} and mw.assembler.grammar._guides == {}
        assert client.get("/rag/health").json()["warm"] is False


def test_a_broken_domain_is_logged_and_skipped(mw, settings, fake_llm, caplog):
    caplog.set_level(logging.INFO, logger="rag_middleware.server")
    broken = settings.knowledge_base / "broken"
    broken.mkdir()
    (broken / "domain.yaml").write_text("description: [unclosed\n")
    with client_for(mw) as client:
        health = warm_done(client)
        assert health["status"] == "ok" and health["warm"] is True
        warmup = client.app.state.warmup
        assert set(warmup.warmed) == SHIPPED and list(warmup.failed) == ["broken"]
        assert set(mw.assembler.retriever._curated) == SHIPPED
        fake_llm.enqueue(json.dumps({"task": "sort", "chart_type": "none", "operations": [{
            "type": "sort", "execution_instructions": {"method": "pandas.DataFrame.sort_values", "args": [],
                                                       "kwargs": {"by": "a", "ascending": True}}}]}))
        r = client.post("/api/chat", json={"model": "data_ops:latest", "stream": False,
                                           "messages": [{"role": "user", "content": "Columns: a, b\nsort by a"}]})
        assert r.status_code == 200, r.text  # the server serves the other domains
    failed = [json.loads(r.getMessage()) for r in caplog.records if '"event": "warm_failed"' in r.getMessage()]
    assert len(failed) == 1 and failed[0]["domain"] == "broken" and "YAML" in failed[0]["error"]
    done = [json.loads(r.getMessage()) for r in caplog.records if '"event": "warm"' in r.getMessage()]
    assert len(done) == 1 and done[0]["failed"] == ["broken"] and set(done[0]["domains"]) == SHIPPED


def test_a_warm_up_that_raises_never_reaches_the_server(mw, monkeypatch):
    def boom(domain):
        raise RuntimeError("embedder gone")

    monkeypatch.setattr(mw.assembler, "vote_reliability", boom)
    with client_for(mw) as client:
        health = warm_done(client)
        warmup = client.app.state.warmup
        assert health["status"] == "ok" and warmup.warmed == []
        assert set(warmup.failed) == SHIPPED and all("embedder gone" in e for e in warmup.failed.values())
