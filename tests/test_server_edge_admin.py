"""Secrets and admin routes: unknown /rag/ paths, the admin token never forwarded, the upstream's admin calls
guarded, ``bearer`` in any case, loopback-only admin routes without a token (``--admin-open`` to open them).
Live server: test_server.py's harness; in-process app: Starlette's TestClient, called from a chosen address."""

from __future__ import annotations

import json
import logging

import ollama
import pytest
import uvicorn
from conftest import FakeLLM, HashEmbedder, run_cli
from starlette.testclient import TestClient
import test_server
from test_server import ASK, UPSTREAM_MODEL

from rag_middleware import Middleware
from rag_middleware.server import create_app
from rag_middleware.llm.tokens import ApproxTokenCounter

# test_server.py's fixtures, requested here by name (pytest finds fixtures among a module's attributes)
fake, start, _no_proxy = test_server.fake, test_server.start, test_server._no_proxy

TOKEN = "s3cret-admin"
ADMIN_ROUTES = [("GET", "/rag/domains"), ("GET", "/rag/stats"), ("GET", "/rag/ab?domain=data_ops"),
                ("GET", "/rag/interactions/nope"), ("POST", "/rag/feedback")]


@pytest.fixture
def guarded(start, fake):
    """A live server with an admin token, and the upstream's admin calls answered by the fake."""
    for method, path in [("DELETE", "/api/delete"), ("POST", "/api/pull"), ("POST", "/api/push"),
                         ("POST", "/api/create"), ("POST", "/api/copy")]:
        fake.route(method, path, {"status": "success"})
    fake.route("POST", "/api/embed", {"model": "all-minilm", "embeddings": [[0.5]]})
    return start(fake.url, fake=fake, admin_token=TOKEN)


def in_process(mw, *, host: str, token: str | None = None, admin_open: bool = False) -> TestClient:
    """The app in-process, called from ``host``. Used without ``with`` (no lifespan: ``mw`` stays open)."""
    settings = mw.settings.model_copy(update={"server": mw.settings.server.model_copy(
        update={"upstream": "embedded", "admin_token": token, "admin_open": admin_open})})
    return TestClient(create_app(settings, middleware=mw), client=(host, 50000))


def call(client, method: str, path: str, **kw):
    if method == "POST":
        return client.post(path, json={"interaction_id": "nope", "action": "approve"}, **kw)
    return client.request(method, path, **kw)


# -- 6. /rag/ is ours ----------------------------------------------------------------------------------


def test_unknown_rag_path_is_404_and_never_reaches_the_upstream(guarded):
    with guarded.http(headers={"Authorization": f"Bearer {TOKEN}", "X-Secret": "x"}) as c:
        missing = c.get("/rag/nope")
        nested = c.post("/rag/feedback/extra", json={})
        wrong_method = c.get("/rag/feedback")
    assert missing.status_code == 404 and set(missing.json()) == {"error"} and "/rag/nope" in missing.json()["error"]
    assert nested.status_code == 404
    assert wrong_method.status_code == 405 and "GET" in wrong_method.json()["error"]
    assert not [r for r in guarded.fake.requests if r.path.startswith("/rag/")]


# -- 7. the admin token stays here ---------------------------------------------------------------------


def test_admin_token_is_never_forwarded_upstream(guarded):
    with guarded.ollama(headers={"Authorization": f"bearer {TOKEN}"}) as client:
        client.chat(model="llama3.2:1b", messages=ASK, stream=False)
        client.embed(model="all-minilm", input="hello")
        client.pull("llama3.2:1b", stream=False)
    with guarded.ollama(headers={"Authorization": "Bearer the-upstreams-own-key"}) as client:
        client.chat(model="llama3.2:1b", messages=ASK, stream=False)
    seen = guarded.fake.requests
    assert [r.path for r in seen] == ["/api/chat", "/api/embed", "/api/pull", "/api/chat"]
    assert all(TOKEN not in json.dumps(r.headers) for r in seen)
    assert seen[-1].headers["authorization"] == "Bearer the-upstreams-own-key"  # not ours: passed on


# -- 8. the upstream's admin calls need the token too ------------------------------------------------


def test_upstream_admin_calls_need_the_token(guarded):
    with guarded.ollama() as client:
        calls = [lambda: client.delete("llama3.2:1b"), lambda: client.pull("llama3.2:1b", stream=False),
                 lambda: client.push("me/model", stream=False),
                 lambda: client.create(model="mine", from_=UPSTREAM_MODEL, stream=False),
                 lambda: client.copy("llama3.2:1b", "copy:1b")]
        for do in calls:
            with pytest.raises(ollama.ResponseError) as info:
                do()
            assert info.value.status_code == 401 and "admin token" in info.value.error
    with guarded.http() as c:  # nor by another spelling of the path
        assert c.post("/api/pull/", json={"model": "x"}).status_code == 401
        assert c.request("DELETE", "/api/delete/", json={"model": "x"}).status_code == 401
    assert guarded.fake.requests == []
    with guarded.ollama(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for do in [lambda: client.delete("llama3.2:1b"), lambda: client.pull("llama3.2:1b", stream=False),
                   lambda: client.push("me/model", stream=False),
                   lambda: client.create(model="mine", from_=UPSTREAM_MODEL, stream=False),
                   lambda: client.copy("llama3.2:1b", "copy:1b")]:
            do()
    assert [(r.method, r.path) for r in guarded.fake.requests] == [
        ("DELETE", "/api/delete"), ("POST", "/api/pull"), ("POST", "/api/push"), ("POST", "/api/create"),
        ("POST", "/api/copy")]
    assert all("authorization" not in r.headers for r in guarded.fake.requests)
    with guarded.http() as c:  # reading is not administering: tags and show need no token
        assert c.get("/api/tags").status_code == 200


# -- 9. bearer in any case -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_in_any_case(mw, scheme):
    client = in_process(mw, host="203.0.113.9", token=TOKEN)
    ok = client.get("/rag/domains", headers={"Authorization": f"{scheme} {TOKEN}"})
    wrong = client.get("/rag/domains", headers={"Authorization": f"{scheme} {TOKEN}x"})
    basic = client.get("/rag/domains", headers={"Authorization": f"Basic {TOKEN}"})
    assert (ok.status_code, wrong.status_code, basic.status_code) == (200, 401, 401)


# -- 10. safe by default -------------------------------------------------------------------------------


@pytest.mark.parametrize("method,path", ADMIN_ROUTES + [("POST", "/api/pull"), ("DELETE", "/api/delete")])
def test_without_a_token_admin_routes_serve_loopback_clients_only(mw, method, path):
    refused = call(in_process(mw, host="203.0.113.9"), method, path)
    assert refused.status_code == 403 and "loopback" in refused.json()["error"]
    for host in ("127.0.0.1", "::1"):
        assert call(in_process(mw, host=host), method, path).status_code not in (401, 403)
    assert call(in_process(mw, host="203.0.113.9", admin_open=True), method, path).status_code not in (401, 403)


def test_the_server_says_who_may_use_the_admin_routes_at_start(settings, caplog):
    caplog.set_level(logging.INFO, logger="rag_middleware.server")
    modes = []
    for token, admin_open in [(None, False), (None, True), (TOKEN, False)]:
        caplog.clear()
        mw = Middleware(settings, backend=FakeLLM(), embedder=HashEmbedder(), token_counter=ApproxTokenCounter())
        with in_process(mw, host="127.0.0.1", token=token, admin_open=admin_open):  # the lifespan closes mw
            pass
        (start,) = [json.loads(r.getMessage()) for r in caplog.records if '"event": "start"' in r.getMessage()]
        modes.append((start["admin"], start["admin_detail"]))
    assert [m for m, _ in modes] == ["loopback", "open", "token"]
    assert "loopback clients only" in modes[0][1] and "every client" in modes[1][1]


def test_serve_takes_admin_open(cli_project, capsys, monkeypatch):
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    code, _, err = run_cli(capsys, "serve", "--upstream", "embedded", "--port", "1")
    assert code == 0 and "loopback clients only" in err
    assert served["app"].state.ctx.settings.server.admin_open is False
    code, _, err = run_cli(capsys, "serve", "--upstream", "embedded", "--port", "1", "--admin-open")
    assert code == 0 and "served to every client" in err
    assert served["app"].state.ctx.settings.server.admin_open is True
