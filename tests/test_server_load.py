"""The drop-in server when things go wrong, and under load: every error row on both wire formats, failures
in the middle of a live stream, a client that goes away, 64 concurrent requests; also health, the admin
routes and the embedded upstream. Harness: test_server.py.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import ollama
import openai
import pytest
from conftest import FakeLLM, wait_for
from ollama_fake import Broken, Trickle, free_port
import test_server
from test_server import (
    ASK, FREE_TEXT, GOOD, PLAN, QUESTION, UPSTREAM_MODEL, VIRTUAL, assert_one_final, ndjson_lines)

# test_server.py's fixtures, requested here by name (pytest finds fixtures among a module's attributes)
fake, start, _no_proxy = test_server.fake, test_server.start, test_server._no_proxy

BAD = json.dumps({"foo": 1})  # parses, but fails validation (task and chart_type are filled by domain.yaml)
BAD_FIELDS = ["operations: required field is missing", "foo: Extra inputs are not permitted"]
HELP = [{"role": "user", "content": "how do I sum a column?"}]


@pytest.fixture
def stack(start, fake):
    return start(fake.url, fake=fake)


@pytest.fixture
def dead(start):
    """Upstream and the Ollama backend both point at a port where nothing listens."""
    return start(f"http://127.0.0.1:{free_port()}")


# -- error rows --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
def test_malformed_json_body_is_400_ollama_style(stack, path):
    with stack.http() as c:
        r = c.post(path, content=b'{"model": "data_ops:latest", "messages": [',
                   headers={"content-type": "application/json"})
    assert r.status_code == 400
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and "JSON" in body["error"]


def test_malformed_json_body_is_400_openai_style(stack):
    with stack.http() as c:
        r = c.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert "JSON" in error["message"] and error["type"] == "invalid_request_error"


def test_bad_request_shapes_are_400_in_each_wire_format(stack):
    with stack.http() as c:
        raw_system = c.post("/api/generate", json={"model": "data_ops:latest", "prompt": QUESTION, "raw": True,
                                                   "system": "be terse"})
        bad_messages = c.post("/api/chat", json={"model": "data_ops:latest", "messages": "hello"})
        no_messages = c.post("/v1/chat/completions", json={"model": "data_ops:latest"})
    assert raw_system.status_code == 400 and "raw" in raw_system.json()["error"]
    assert bad_messages.status_code == 400 and "messages" in bad_messages.json()["error"]
    assert no_messages.status_code == 400 and "messages" in no_messages.json()["error"]["message"]
    assert stack.fake.bodies == []


def test_legacy_name_field_is_accepted_for_model(stack):
    with stack.http() as c:
        r = c.post("/api/chat", json={"name": "data_ops:latest", "messages": ASK, "stream": False})
    assert r.status_code == 200 and r.json()["model"] == "data_ops:latest"
    assert json.loads(r.json()["message"]["content"]) == GOOD


def test_tags_when_upstream_answers_an_error(stack):
    """Upstream's /api/tags fails (here 500): the answer still follows the Ollama error contract or lists our
    models; it is never an unhandled exception (plain-text 500)."""
    stack.fake.route("GET", "/api/tags", {"error": "boom"}, status=500)
    with stack.http() as c:
        r = c.get("/api/tags")
    raised, stack.live.log.records[:] = list(stack.live.log.records), []  # asserted here, not at teardown
    assert not raised, raised
    assert r.headers["content-type"].startswith("application/json"), (r.status_code, r.text)
    if r.status_code == 200:
        assert [m["model"] for m in r.json()["models"]] == VIRTUAL
    else:
        assert isinstance(r.json()["error"], str)


def test_unknown_domain_header_is_404_on_both_sides(stack):
    with stack.ollama(headers={"X-RAG-Domain": "nope"}) as client, pytest.raises(ollama.ResponseError) as info:
        client.chat(model="data_ops:latest", messages=ASK, stream=True).__next__()
    assert info.value.status_code == 404 and "nope" in info.value.error
    with (stack.openai(default_headers={"X-RAG-Domain": "nope"}) as client,
          pytest.raises(openai.NotFoundError) as oinfo):
        client.chat.completions.create(model="data_ops:latest", messages=ASK)
    assert "nope" in oinfo.value.message and oinfo.value.body["type"] == "not_found_error"
    assert stack.fake.bodies == []


@pytest.mark.parametrize("model,stream", [("data_ops:latest", False), ("data_ops:latest", True),
                                          ("assistant:latest", True), ("llama3.2:1b", False)])
def test_unreachable_upstream_is_502_naming_it(dead, model, stream):
    upstream = dead.settings.server.upstream
    with dead.ollama() as client, pytest.raises(ollama.ResponseError) as info:
        out = client.chat(model=model, messages=ASK, stream=stream)
        if stream:
            list(out)
    assert info.value.status_code == 502 and upstream in info.value.error
    with dead.openai() as client, pytest.raises(openai.APIStatusError) as oinfo:
        client.chat.completions.create(model=model, messages=ASK, stream=stream)
    assert oinfo.value.status_code == 502 and upstream in oinfo.value.message
    if model != "llama3.2:1b":
        records = dead.mw.journal.list()
        assert len(records) == 2 and {r.status for r in records} == {"error"}


@pytest.mark.parametrize("stream", [False, True])
def test_all_attempts_invalid_is_422_with_the_failing_fields(stack, stream):
    stack.fake.default = BAD
    with stack.ollama() as client, pytest.raises(ollama.ResponseError) as info:
        out = client.chat(model="data_ops:latest", messages=ASK, stream=stream)
        if stream:
            list(out)
    assert info.value.status_code == 422
    assert all(field in info.value.error for field in BAD_FIELDS)
    with stack.openai() as client, pytest.raises(openai.UnprocessableEntityError) as oinfo:
        client.chat.completions.create(model="data_ops:latest", messages=ASK, stream=stream)
    assert all(field in oinfo.value.message for field in BAD_FIELDS)
    assert len(stack.fake.bodies) == 2 * stack.settings.retry.max_attempts
    assert {r.status for r in stack.mw.journal.list()} == {"failed"}


def test_best_candidate_answers_200_with_the_last_candidate(start, fake):
    stack = start(fake.url, fake=fake, on_invalid="best_candidate")
    fake.default = BAD
    with stack.http() as c:
        r = c.post("/api/chat", json={"model": "data_ops:latest", "messages": ASK, "stream": False})
        s = c.post("/api/chat", json={"model": "data_ops:latest", "messages": ASK})
    assert r.status_code == 200 and r.headers["x-rag-valid"] == "false"
    assert r.json()["message"]["content"] == BAD
    assert s.status_code == 200 and s.headers["x-rag-valid"] == "false"
    lines = ndjson_lines(s.content)
    assert_one_final(lines)
    assert "".join(line["message"]["content"] for line in lines) == BAD
    with stack.openai() as client:
        raw = client.chat.completions.with_raw_response.create(model="data_ops:latest", messages=ASK)
    assert raw.headers["x-rag-valid"] == "false" and raw.parse().choices[0].message.content == BAD
    record = stack.mw.journal.get(r.headers["x-rag-interaction-id"])
    assert record.status == "failed" and record.attempts[-1].raw_output == BAD


# -- failures in the middle of a live stream ---------------------------------------------------------


@pytest.mark.parametrize("how", ["drop", "error"])
def test_mid_stream_failure_is_one_error_line(stack, how):
    stack.fake.enqueue(Broken(FREE_TEXT, pieces=3, how=how))
    with stack.http() as c:
        r = c.post("/api/chat", json={"model": "assistant:latest", "messages": HELP})
    assert r.status_code == 200
    lines = ndjson_lines(r.content)
    assert [line["message"]["content"] for line in lines[:-1]] == [FREE_TEXT[i:i + 5] for i in (0, 5, 10)]
    assert set(lines[-1]) == {"error"} and lines[-1]["error"]
    assert not any(line.get("done") for line in lines)
    if how == "error":
        assert "upstream model crashed" in lines[-1]["error"]
    record = stack.mw.journal.get(r.headers["x-rag-interaction-id"])
    assert record.status == "error" and record.output_text == FREE_TEXT[:15]

    stack.fake.enqueue(Broken(FREE_TEXT, pieces=3, how=how))
    with stack.ollama() as client:
        got = []
        with pytest.raises(ollama.ResponseError) as info:
            for part in client.chat(model="assistant:latest", messages=HELP, stream=True):
                got.append(part.message.content)
    assert got == [FREE_TEXT[i:i + 5] for i in (0, 5, 10)] and info.value.error == lines[-1]["error"]

    stack.fake.enqueue(Broken(FREE_TEXT, pieces=3, how=how))
    with stack.openai() as client:
        deltas = []
        with pytest.raises(openai.APIError) as oinfo:
            for chunk in client.chat.completions.create(model="assistant:latest", messages=HELP, stream=True):
                deltas.append(chunk.choices[0].delta.content)
    assert deltas[1:] == [FREE_TEXT[i:i + 5] for i in (0, 5, 10)]
    assert oinfo.value.message == lines[-1]["error"]
    assert stack.mw.journal.count() == 3


def test_upstream_stream_ending_without_done_is_an_error(stack):
    """The upstream closes the body cleanly after a few chunks but never sends done:true: the answer is
    truncated, so the client must not see it as complete (nor may it be recorded as answered)."""
    stack.fake.enqueue(Broken(FREE_TEXT, pieces=3, how="eof"))
    with stack.http() as c:
        r = c.post("/api/chat", json={"model": "assistant:latest", "messages": HELP})
    lines = ndjson_lines(r.content)
    assert not any(line.get("done") for line in lines)
    assert set(lines[-1]) == {"error"}, lines[-1]
    record = stack.mw.journal.get(r.headers["x-rag-interaction-id"])
    assert record.status != "answered"


# -- a client that goes away -------------------------------------------------------------------------


def test_client_disconnect_cancels_upstream_and_is_recorded(stack):
    stack.fake.enqueue(Trickle("slow words " * 400, delay=0.02))
    with (stack.http() as c,
          c.stream("POST", "/api/chat", json={"model": "assistant:latest", "messages": HELP}) as r):
        assert r.status_code == 200
        interaction_id = r.headers["x-rag-interaction-id"]
        first = json.loads(next(r.iter_lines()))
        assert first["done"] is False and first["message"]["content"]
    assert stack.fake.client_gone.wait(20), "the upstream request went on after the client left"
    record = wait_for(lambda: stack.mw.journal.get(interaction_id))
    assert record is not None and record.status == "error"
    assert "went away" in record.error
    assert 0 < len(record.output_text) < len("slow words " * 400)


# -- load --------------------------------------------------------------------------------------------


def test_64_concurrent_requests_all_answered_and_recorded_once(stack):
    n = 64

    async def one(client: ollama.AsyncClient, i: int) -> str:
        messages = [{"role": "user", "content": f"Columns: a, b\nsort by a (request {i})"}]
        if i % 2:
            parts = [p async for p in await client.chat(model="data_ops:latest", messages=messages, stream=True)]
            assert_one_final(parts)
            assert all(p.model == "data_ops:latest" for p in parts)
            return "".join(p.message.content or "" for p in parts)
        resp = await client.chat(model="data_ops:latest", messages=messages, stream=False)
        assert resp.done and resp.model == "data_ops:latest"
        return resp.message.content

    async def run() -> list[str]:
        async with stack.async_ollama(limits=httpx.Limits(max_connections=n)) as client:
            return await asyncio.gather(*(one(client, i) for i in range(n)))

    answers = asyncio.run(run())
    assert len(answers) == n and all(json.loads(a) == GOOD for a in answers)
    assert len(stack.fake.bodies) == n
    assert stack.mw.journal.count() == n
    records = stack.mw.journal.list(limit=10 * n)
    assert len({r.id for r in records}) == n
    assert {r.status for r in records} == {"validated"}
    assert sorted(r.question.rsplit("(request ", 1)[1] for r in records) == sorted(f"{i})" for i in range(n))


# -- health and admin --------------------------------------------------------------------------------


def test_health_ok_and_degraded(start, fake):
    with start(fake.url, fake=fake).http() as c:
        ok = c.get("/rag/health").json()
    assert ok["status"] == "ok"
    for part in ("upstream", "store", "embedder"):
        assert ok[part]["ok"] is True and isinstance(ok[part]["latency_ms"], (int, float))
    assert ok["upstream"]["url"] == fake.url and ok["upstream"]["detail"] == "0.12.6"
    dead = f"http://127.0.0.1:{free_port()}"
    with start(dead).http() as c:
        r = c.get("/rag/health")
    assert r.status_code == 200 and r.json()["status"] == "degraded"
    assert r.json()["upstream"]["ok"] is False and r.json()["upstream"]["url"] == dead
    assert r.json()["store"]["ok"] is True


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_admin_routes_need_the_token_only_when_one_is_set(start, fake, token):
    stack = start(fake.url, fake=fake, admin_token=token)
    interaction_id = stack.interaction_id(model="data_ops:latest", messages=ASK, stream=False)
    routes = ["/rag/domains", f"/rag/interactions/{interaction_id}"]
    with stack.http() as c:
        bare = [c.get(p) for p in routes]
        wrong = [c.get(p, headers={"Authorization": "Bearer nope"}) for p in routes]
        good = [c.get(p, headers={"Authorization": f"Bearer {token}"}) for p in routes]
        missing = c.get("/rag/interactions/nope", headers={"Authorization": f"Bearer {token}"})
    if token:
        assert [r.status_code for r in bare + wrong] == [401] * 4
        assert all("error" in r.json() for r in bare)
    else:
        assert [r.status_code for r in bare] == [200, 200]
    assert [r.status_code for r in good] == [200, 200]
    assert {d["model"] for d in good[0].json()["domains"]} == set(VIRTUAL)
    assert good[1].json()["id"] == interaction_id and good[1].json()["status"] == "validated"
    assert missing.status_code == 404


# -- the embedded upstream ---------------------------------------------------------------------------


def test_embedded_upstream(start):
    llm = FakeLLM(flat_prompt=True).enqueue(PLAN, "hello there")
    stack = start("embedded", backend=llm)
    with stack.ollama() as client:
        names = [m.model for m in client.list().models]
        resp = client.chat(model="data_ops:latest", messages=ASK, stream=False)
        plain = list(client.chat(model=UPSTREAM_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True))
        with pytest.raises(ollama.ResponseError) as info:
            client.show("anything")  # not a model here
        shown = client.show("data_ops:latest")  # ours: described as the embedded model
    assert names == VIRTUAL + [UPSTREAM_MODEL]
    assert json.loads(resp.message.content) == GOOD
    assert_one_final(plain)
    assert "".join(p.message.content for p in plain) == "hello there"
    assert info.value.status_code == 404 and shown.details.family == "gemma3"
    assert llm.requests[0].prompt is not None  # the flat prompt for the embedded model
    with stack.http() as c:
        assert c.post("/api/embed", json={"model": "x", "input": "hi"}).status_code == 501  # needs an Ollama
        assert c.get("/api/version").json()["version"]
        assert c.get("/rag/health").json()["status"] == "ok"
    assert stack.mw.journal.count() == 1
