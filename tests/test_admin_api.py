"""POST /rag/feedback, GET /rag/stats and GET /rag/ab through the real Starlette app (in-process ASGI client),
and the user header that keeps an A/B variant sticky on /api/chat."""

from __future__ import annotations

import json
from datetime import datetime, UTC

import pytest
from starlette.testclient import TestClient

from rag_middleware.learning.feedback import FeedbackLog
from rag_middleware.server import create_app
from rag_middleware.analytics.stats import read_stats

Q = "Columns: price, qty\nsort by price, cheapest first"


def plan(ascending: bool = True, column: str = "price") -> dict:
    return {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
        "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": column, "ascending": ascending}}}]}


def client_for(mw, token: str | None = None, *, host: str = "127.0.0.1", admin_open: bool = False) -> TestClient:
    """The app in-process, called from ``host`` (loopback by default: with no token, admin routes serve only it)."""
    settings = mw.settings.model_copy(update={"server": mw.settings.server.model_copy(
        update={"upstream": "embedded", "admin_token": token, "admin_open": admin_open})})
    return TestClient(create_app(settings, middleware=mw), client=(host, 50000))


@pytest.fixture
def asked(mw, fake_llm) -> str:
    fake_llm.enqueue(json.dumps(plan()))
    return mw.ask(Q, domain="data_ops").interaction_id


def test_feedback_round_trip(mw, asked):
    with client_for(mw) as client:
        r = client.post("/rag/feedback", json={"interaction_id": asked, "action": "approve", "score": 5,
                                               "reviewer": "ana"})
        assert r.status_code == 200, r.text
        assert r.json() == {"interaction_id": asked, "reviewer": "ana", "action": "approve", "replaced": False,
                            "effective": "approve",
                            "memory": {"id": asked, "kind": "interaction", "status": "approved",
                                       "source": "interaction"}}
        again = client.post("/rag/feedback", json={"interaction_id": asked, "action": "reject", "reviewer": "ana",
                                                   "reason": "descending was asked"})
        assert again.status_code == 200 and again.json()["replaced"] is True
        assert again.json()["memory"] == {"id": asked, "kind": "negative", "status": "rejected", "source": "rejected"}
    log = FeedbackLog(mw.settings.db_path)
    assert [f.action for f in log.of(asked)] == ["reject"]
    log.close()


def test_feedback_errors(mw, asked):
    with client_for(mw) as client:
        r = client.post("/rag/feedback", json={"interaction_id": "nope", "action": "approve"})
        assert r.status_code == 404 and r.json() == {"error": "no interaction 'nope'"}
        r = client.post("/rag/feedback", json={"interaction_id": asked, "action": "edit",
                                               "edited_output": plan(column="cost")})
        assert r.status_code == 422 and any("unknown column cost" in e for e in r.json()["errors"])
        r = client.post("/rag/feedback", json={"interaction_id": asked, "action": "reject"})
        assert r.status_code == 400 and "needs a reason" in r.json()["error"]
        r = client.post("/rag/feedback", json={"interaction_id": asked, "action": "like"})
        assert r.status_code == 400 and "action" in r.json()["error"]
        r = client.post("/rag/feedback", content=b"{not json")
        assert r.status_code == 400 and "invalid JSON" in r.json()["error"]
        assert mw.store.get([asked])[0].status == "validated", "nothing changed"


def test_admin_token_guards_both_routes(mw, asked):
    with client_for(mw, token="s3cret") as client:
        assert client.post("/rag/feedback", json={"interaction_id": asked, "action": "approve"}).status_code == 401
        assert client.get("/rag/stats").status_code == 401
        assert client.get("/rag/stats", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert client.post("/rag/feedback", json={"interaction_id": asked, "action": "approve"},
                           headers=ok).status_code == 200
        assert client.get("/rag/stats", headers=ok).status_code == 200
        assert client.get("/rag/ab?domain=data_ops", headers=ok).status_code == 200


def test_stats_endpoint_serves_the_cli_numbers(mw, asked):
    with client_for(mw) as client:
        client.post("/rag/feedback", json={"interaction_id": asked, "action": "approve"})
        r = client.get("/rag/stats", params={"by": "domain", "since": "2000-01-01"})
        assert r.status_code == 200
        body = r.json()
        since = datetime(2000, 1, 1, tzinfo=UTC)
        assert body == json.loads(json.dumps(read_stats(mw.settings.db_path, by="domain", since=since)))
        assert body["overall"]["requests"] == 1 and body["overall"]["approval_rate"] == 1.0
        assert client.get("/rag/stats", params={"by": "colour"}).status_code == 400
        assert client.get("/rag/stats", params={"since": "yesterday"}).status_code == 400
        assert client.get("/rag/stats", params={"domain": "nope"}).status_code == 404


def test_user_header_keeps_the_variant_sticky(project, mw, fake_llm):
    spec = project / "knowledge_base" / "data_ops" / "domain.yaml"
    spec.write_text(spec.read_text() + "variants:\n  - name: one\n  - name: two\n", encoding="utf-8")
    mw.domains._cache.clear()
    fake_llm.default = json.dumps(plan(column="a"))
    with client_for(mw) as client:
        seen: dict[str, set[str]] = {}
        for user in ["u1", "u2", "u3", "u4", "u5", "u6"] * 2:
            r = client.post("/api/chat", headers={"X-RAG-User": user},
                            json={"model": "data_ops:latest", "stream": False,
                                  "messages": [{"role": "user", "content": "Columns: a, b\nsort by a"}]})
            assert r.status_code == 200, r.text
            seen.setdefault(user, set()).add(mw.journal.get(r.headers["x-rag-interaction-id"]).variant)
        assert all(len(v) == 1 for v in seen.values()) and set().union(*seen.values()) == {"one", "two"}
        messages = [{"role": "user", "content": "Columns: a, b\nsort by a"}]
        r = client.post("/v1/chat/completions", json={"model": "data_ops:latest", "user": "u1", "messages": messages})
        assert r.status_code == 200
        assert mw.journal.get(r.headers["x-rag-interaction-id"]).variant == next(iter(seen["u1"]))
        ab = client.get("/rag/ab", params={"domain": "data_ops"}).json()
        assert [v["variant"] for v in ab["variants"]] == ["one", "two"] and not ab["enough_data"]
        assert sum(v["requests"] for v in ab["variants"]) == 13
