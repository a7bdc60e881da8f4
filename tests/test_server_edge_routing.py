"""Routing edge cases on the Ollama side: ``keep_alive: 0`` with a question, passthrough answers that name the
virtual model, the embedded upstream's answers for unknown and missing models and ``/api/ps``, and interaction
ids that always name a record. Harness: test_server.py."""

from __future__ import annotations

import json

import ollama
import openai
import pytest
from conftest import FakeLLM
from ollama_fake import free_port
import test_server
from test_server import ASK, GOOD, PLAN, QUESTION, UPSTREAM_MODEL, assert_one_final

# test_server.py's fixtures, requested here by name (pytest finds fixtures among a module's attributes)
fake, start, _no_proxy = test_server.fake, test_server.start, test_server._no_proxy

TASK = [{"role": "user", "content": "### Task:\nGenerate a title for the chat."}]
HELP = [{"role": "user", "content": "how do I sum a column?"}]


@pytest.fixture
def stack(start, fake):
    return start(fake.url, fake=fake)


@pytest.fixture
def embedded(start):
    return start("embedded", backend=FakeLLM(flat_prompt=True, default="hello there"))


# -- 12. keep_alive 0 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("keep_alive", [0, "0s", "0m"])
def test_keep_alive_0_with_a_question_is_augmented_and_validated(stack, keep_alive):
    stack.fake.enqueue("not json", PLAN)
    with stack.ollama() as client:
        resp = client.chat(model="data_ops:latest", messages=ASK, keep_alive=keep_alive, stream=False)
        gen = client.generate(model="data_ops:latest", prompt=QUESTION, keep_alive=keep_alive, stream=False)
    assert resp.model == gen.model == "data_ops:latest"
    assert json.loads(resp.message.content) == json.loads(gen.response) == GOOD
    assert len(stack.fake.bodies) == 3 and all(isinstance(b["format"], dict) for b in stack.fake.bodies)
    assert [r.status for r in stack.mw.journal.list()] == ["validated"] * 2


# -- 13. passthrough answers name the virtual model ---------------------------------------------------


def test_streamed_task_prompt_names_the_virtual_model(stack):
    with stack.ollama() as client:
        parts = list(client.chat(model="data_ops:latest", messages=TASK, stream=True))
        gen = list(client.generate(model="data_ops:latest", prompt="", system="only a system prompt", stream=True,
                                   keep_alive="5m"))
    assert_one_final(parts)
    assert {p.model for p in parts} == {"data_ops:latest"} and "".join(p.message.content for p in parts) == PLAN
    assert stack.fake.bodies[0]["model"] == UPSTREAM_MODEL
    assert gen and {p.model for p in gen} == {"data_ops:latest"}  # system only: passed to the upstream model
    assert stack.mw.journal.count() == 0


def test_openai_passthrough_for_a_virtual_model_names_it(stack):
    answer = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": UPSTREAM_MODEL,
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Sorting"},
                           "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1,
                                                               "total_tokens": 4}}
    stack.fake.route("POST", "/v1/chat/completions", answer)
    with stack.openai() as client:
        completion = client.chat.completions.create(model="data_ops:latest", messages=TASK)
    assert completion.model == "data_ops:latest" and completion.choices[0].message.content == "Sorting"
    assert json.loads(stack.fake.seen("/v1/chat/completions")[0].raw)["model"] == UPSTREAM_MODEL
    events = b"".join(b"data: " + json.dumps({**answer, "object": "chat.completion.chunk",
                                              "choices": [{"index": 0, "delta": {"content": w}}]}).encode() + b"\n\n"
                      for w in ("Sort", "ing")) + b"data: [DONE]\n\n"
    stack.fake.route("POST", "/v1/chat/completions", events, content_type="text/event-stream")
    with stack.openai() as client:
        chunks = list(client.chat.completions.create(model="data_ops:latest", messages=TASK, stream=True))
    assert [c.model for c in chunks] == ["data_ops:latest"] * 2
    assert "".join(c.choices[0].delta.content for c in chunks) == "Sorting"


# -- 14. the embedded upstream -------------------------------------------------------------------------


def test_embedded_unknown_model_is_404_like_ollama(embedded):
    with embedded.ollama() as client:
        for call in (lambda: client.chat(model="x", messages=ASK, stream=False),
                     lambda: client.generate(model="x", prompt="hi", stream=False),
                     lambda: client.show("x")):
            with pytest.raises(ollama.ResponseError) as info:
                call()
            assert info.value.status_code == 404
            assert info.value.error == 'model "x" not found, try pulling it first'
        assert client.chat(model=UPSTREAM_MODEL, messages=HELP, stream=False).message.content == "hello there"
    with embedded.openai() as client:
        with pytest.raises(openai.NotFoundError) as oinfo:
            client.chat.completions.create(model="x", messages=ASK)
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("x")
        assert client.models.retrieve(UPSTREAM_MODEL).owned_by == "embedded"
    assert "not found" in oinfo.value.message


def test_embedded_missing_model_is_400_like_ollama(embedded):
    with embedded.http() as c:
        chat = c.post("/api/chat", json={"messages": HELP, "stream": False})
        gen = c.post("/api/generate", json={"prompt": "hi", "stream": False})
        show = c.post("/api/show", json={})
    assert [r.status_code for r in (chat, gen, show)] == [400] * 3
    assert chat.json() == gen.json() == show.json() == {"error": "model is required"}
    embedded.mw.backend.enqueue(PLAN)
    with embedded.http(headers={"X-RAG-Domain": "data_ops"}) as c:  # a domain named by header needs no model
        r = c.post("/api/chat", json={"messages": ASK, "stream": False})
    assert r.status_code == 200 and json.loads(r.json()["message"]["content"]) == GOOD


def test_embedded_ps_lists_the_model(embedded):
    with embedded.ollama() as client:
        running = client.ps()
    (model,) = running.models
    assert model.model == UPSTREAM_MODEL and model.details.family == "gemma3" and model.expires_at is not None


# -- 15. an interaction id always names a record -------------------------------------------------------


def test_refused_before_the_pipeline_carries_no_id(stack):
    huge = " ".join(["column"] * 40000)  # far over num_ctx
    with stack.http() as c:
        over = c.post("/api/chat", json={"model": "data_ops:latest", "messages": [{"role": "user", "content": huge}],
                                         "stream": False})
        tenant = c.post("/api/chat", json={"model": "data_ops:latest", "messages": ASK, "stream": False},
                        headers={"X-RAG-Tenant": "not a tenant!"})
        free = c.post("/v1/chat/completions", json={"model": "assistant:latest", "stream": True,
                                                    "messages": [{"role": "user", "content": huge}]})
    for r in (over, tenant, free):
        assert r.status_code == 400, r.text
        assert "x-rag-interaction-id" not in r.headers
    assert "num_ctx" in over.json()["error"] and "X-RAG-Tenant" in tenant.json()["error"]
    assert stack.mw.journal.count() == 0 and stack.fake.bodies == []


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
def test_live_stream_502_carries_the_id_of_its_record(start, path):
    dead = start(f"http://127.0.0.1:{free_port()}")
    with dead.http() as c:
        r = c.post(path, json={"model": "assistant:latest", "messages": HELP, "stream": True})
    assert r.status_code == 502
    record = dead.mw.journal.get(r.headers["x-rag-interaction-id"])
    assert record is not None and record.status == "error" and record.domain == "assistant"


def test_every_id_that_comes_back_names_a_record(stack):
    stack.fake.default = json.dumps({"foo": 1})  # every attempt invalid: 422, recorded
    bodies = [{"model": "data_ops:latest", "messages": ASK, "stream": False},
              {"model": "data_ops:latest", "messages": ASK, "stream": True},
              {"model": "data_ops:latest", "messages": ASK, "stream": False, "keep_alive": 0}]
    with stack.http() as c:
        answers = [c.post("/api/chat", json=b) for b in bodies]
    assert [r.status_code for r in answers] == [422] * 3
    assert all(stack.mw.journal.get(r.headers["x-rag-interaction-id"]) for r in answers)
