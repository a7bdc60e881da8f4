"""Hostile and unusual request bodies: invalid UTF-8, lone surrogates, options of the wrong type, OpenAI content
arrays, images and ``format`` on a virtual model, and error texts that would echo a huge header.
Harness: test_server.py (a live uvicorn server in front of the fake Ollama)."""

from __future__ import annotations

import base64
import json

import ollama
import openai
import pytest
from ollama_fake import FakeOllama
import test_server
from test_server import ASK, FREE_TEXT, GOOD, PLAN, QUESTION, UPSTREAM_MODEL

from rag_middleware.memory.embedding import content_hash
from rag_middleware.options import ModelOptions

# test_server.py's fixtures, requested here by name (pytest finds fixtures among a module's attributes)
fake, start, _no_proxy = test_server.fake, test_server.start, test_server._no_proxy

BAD_UTF8 = b'{"model": "data_ops:latest", "messages": [{"role": "user", "content": "sort \xff\xfe by a"}]}'
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n not really an image").decode()
OPENAI_ANSWER = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": UPSTREAM_MODEL,
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "a title"},
                              "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


@pytest.fixture
def stack(start, fake):
    return start(fake.url, fake=fake)


def _json(body: dict) -> dict:
    """Headers and bytes as a JavaScript client sends a lone surrogate: escaped (httpx cannot encode it)."""
    return {"content": json.dumps(body).encode(), "headers": {"content-type": "application/json"}}


# -- 1. invalid UTF-8 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/api/show", "/v1/chat/completions",
                                  "/rag/feedback"])
def test_invalid_utf8_body_is_400_in_the_routes_protocol_and_the_connection_lives_on(stack, path):
    with stack.http() as c:
        r = c.post(path, content=BAD_UTF8, headers={"content-type": "application/json"})
        again = c.get("/api/version")  # same keep-alive connection: it was not reset
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json"), r.text
    error = r.json()["error"]
    if path.startswith("/v1/"):
        assert error["type"] == "invalid_request_error" and "UTF-8" in error["message"]
    else:
        assert set(r.json()) == {"error"} and "UTF-8" in error
    assert again.status_code == 200
    assert stack.fake.bodies == [] and stack.mw.journal.count() == 0


# -- 2. lone surrogates --------------------------------------------------------------------------------


@pytest.mark.parametrize("model,stream", [("data_ops:latest", False), ("assistant:latest", True)])
def test_lone_surrogate_is_replaced_answered_and_recorded(stack, model, stream):
    if model == "assistant:latest":
        stack.fake.enqueue(FREE_TEXT)
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": QUESTION + " \ud800!"}]}
    with stack.http() as c:
        r = c.post("/api/chat", **_json(body))
    assert r.status_code == 200, r.text
    assert r.headers["x-rag-input-cleaned"] == "1 lone surrogate(s) replaced by U+FFFD"
    record = stack.mw.journal.get(r.headers["x-rag-interaction-id"])
    assert record is not None and record.status in ("validated", "answered")
    assert record.question.endswith(" \ufffd!")
    assert "\ufffd" in stack.fake.bodies[-1]["messages"][-1]["content"]


def test_lone_surrogate_on_the_openai_side_and_in_content_hash(stack):
    body = {"model": "data_ops:latest", "messages": [{"role": "user", "content": [
        {"type": "text", "text": QUESTION}, {"type": "text", "text": "\udfff"}]}]}
    with stack.http() as c:
        r = c.post("/v1/chat/completions", **_json(body))
    assert r.status_code == 200 and json.loads(r.json()["choices"][0]["message"]["content"]) == GOOD
    assert stack.mw.journal.get(r.headers["x-rag-interaction-id"]).question.endswith("\n\ufffd")
    assert content_hash("a\ud800") != content_hash("a\udfff") != content_hash("a")  # no UnicodeEncodeError


# -- 3. options of the wrong type ----------------------------------------------------------------------


@pytest.mark.parametrize("model", ["data_ops:latest", "assistant:latest", "llama3.2:1b"])
@pytest.mark.parametrize("option,value", [("num_predict", "lots"), ("temperature", "hot"), ("num_ctx", [1]),
                                          ("mirostat", {"a": 1})])
def test_non_numeric_option_is_400_naming_it(stack, model, option, value):
    with stack.ollama() as client:
        with pytest.raises(ollama.ResponseError) as info:
            client.chat(model=model, messages=ASK, options={option: value}, stream=False)
        with pytest.raises(ollama.ResponseError) as gen:
            client.generate(model=model, prompt=QUESTION, options={option: value}, stream=False)
    for err in (info.value, gen.value):
        assert err.status_code == 400 and f"options.{option}" in err.error, err.error
    assert stack.fake.bodies == [] and stack.mw.journal.count() == 0


def test_client_sampling_options_are_typed_once(stack):
    stack.fake.enqueue(FREE_TEXT)
    with stack.ollama() as client:
        client.chat(model="assistant:latest", messages=ASK, stream=False,
                    options={"num_predict": "33", "stop": "END", "top_k": 5, "num_ctx": 999999, "mirostat": 1})
    sent = stack.fake.bodies[-1]["options"]
    assert sent["num_predict"] == 33 and sent["stop"] == ["END"] and sent["top_k"] == 5
    assert sent["num_ctx"] == stack.settings.llm.num_ctx and "mirostat" not in sent  # neither is the client's
    sampling = {"temperature", "top_p", "top_k", "min_p", "seed", "num_predict", "repeat_penalty", "stop"}
    assert sampling == ModelOptions.SAMPLING_KEYS
    assert sampling | {"num_ctx"} == ModelOptions.DOMAIN_KEYS
    from rag_middleware.llm.embedded import _OPTION_MAP

    assert set(_OPTION_MAP) == ModelOptions.SAMPLING_KEYS and _OPTION_MAP["num_predict"] == "n_predict"


# -- 4. OpenAI content arrays --------------------------------------------------------------------------


def test_openai_text_parts_are_joined_for_a_virtual_model(stack):
    parts = [{"type": "text", "text": "Columns: a, b"}, {"type": "text", "text": "sort by a"}]
    with stack.openai() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="data_ops:latest", messages=[{"role": "user", "content": parts}])
    assert json.loads(raw.parse().choices[0].message.content) == GOOD
    assert stack.mw.journal.get(raw.headers["x-rag-interaction-id"]).question == QUESTION


def test_openai_image_part_is_a_clear_400_for_a_virtual_model(stack):
    parts = [{"type": "text", "text": QUESTION},
             {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}]
    with stack.openai() as client, pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="data_ops:latest", messages=[{"role": "user", "content": parts}])
    assert "data_ops:latest answers text only" in info.value.message and "image_url" in info.value.message
    assert stack.fake.bodies == [] and stack.mw.journal.count() == 0


def test_openai_content_array_passes_through_unchanged(stack):
    stack.fake.route("POST", "/v1/chat/completions", OPENAI_ANSWER)
    parts = [{"type": "text", "text": "what is in it?"},
             {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}]
    with stack.openai() as client:
        completion = client.chat.completions.create(model="llava:7b", messages=[{"role": "user", "content": parts}])
    assert completion.choices[0].message.content == "a title"
    (seen,) = stack.fake.seen("/v1/chat/completions")
    assert json.loads(seen.raw)["messages"][0]["content"] == parts


# -- 5. GET /v1/models/{id} ----------------------------------------------------------------------------


def test_openai_retrieve_answers_for_virtual_models_and_asks_upstream_for_others(stack):
    stack.fake.route("GET", "/v1/models/llama3.2:1b", {"id": "llama3.2:1b", "object": "model",
                                                        "created": 1700000000, "owned_by": "library"})
    with stack.openai() as client:
        ours = client.models.retrieve("data_ops:latest")
        theirs = client.models.retrieve("llama3.2:1b")
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("nope:1b")  # the upstream's 404
    assert (ours.id, ours.owned_by, ours.object) == ("data_ops:latest", "rag-middleware", "model")
    with stack.http() as c:
        listed = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
    assert listed["data_ops:latest"]["created"] == ours.created > 0
    assert (theirs.id, theirs.owned_by) == ("llama3.2:1b", "library")


# -- 11. error texts clip what they echo ---------------------------------------------------------------


def test_error_texts_clip_a_huge_header(stack):
    huge = "x" * 5000
    with stack.ollama(headers={"X-RAG-Domain": huge}) as client, pytest.raises(ollama.ResponseError) as info:
        client.chat(model="data_ops:latest", messages=ASK, stream=False)
    assert info.value.status_code == 404 and len(info.value.error) < 300 and "(5000 characters)" in info.value.error
    with (stack.openai(default_headers={"X-RAG-Tenant": huge}) as client,
          pytest.raises(openai.BadRequestError) as oinfo):
        client.chat.completions.create(model="data_ops:latest", messages=ASK)
    assert len(oinfo.value.message) < 300 and "X-RAG-Tenant" in oinfo.value.message
    with stack.http() as c:
        r = c.get("/rag/interactions/" + huge)
        rag = c.get("/rag/" + huge)
    assert r.status_code == 404 and len(r.json()["error"]) < 300
    assert rag.status_code == 404 and len(rag.json()["error"]) < 300


# -- 16. images and format on a virtual model ----------------------------------------------------------


def test_images_on_a_virtual_model_are_a_clear_400(stack):
    with stack.ollama() as client:
        with pytest.raises(ollama.ResponseError) as chat:
            client.chat(model="data_ops:latest", stream=False,
                        messages=[{"role": "user", "content": QUESTION, "images": [PIXEL]}])
        with pytest.raises(ollama.ResponseError) as gen:
            client.generate(model="assistant:latest", prompt="what is this?", images=[PIXEL], stream=False)
    assert chat.value.status_code == 400 and "data_ops:latest answers text only" in chat.value.error
    assert gen.value.status_code == 400 and "images" in gen.value.error
    assert stack.fake.bodies == [] and stack.mw.journal.count() == 0


def test_a_clients_format_is_answered_with_a_header(stack):
    stack.fake.enqueue(PLAN, FREE_TEXT, PLAN)
    with stack.http() as c:
        schema = c.post("/api/chat", json={"model": "data_ops:latest", "messages": ASK, "stream": False,
                                           "format": {"type": "object", "properties": {"x": {"type": "string"}}}})
        free = c.post("/api/generate", json={"model": "assistant:latest", "prompt": "sum?", "format": "json",
                                             "stream": False})
        plain = c.post("/api/chat", json={"model": "data_ops:latest", "messages": ASK, "stream": False})
    assert json.loads(schema.json()["message"]["content"]) == GOOD
    assert schema.headers["x-rag-format"].startswith("domain schema")
    assert stack.fake.bodies[0]["format"]["properties"].keys() != {"x"}  # the domain's schema went upstream
    assert free.status_code == 200 and free.headers["x-rag-format"] == "ignored: free-text domain"
    assert "x-rag-format" not in plain.headers
    with stack.openai() as client:
        raw = client.chat.completions.with_raw_response.create(model="data_ops:latest", messages=ASK,
                                                               response_format={"type": "json_object"})
    assert raw.headers["x-rag-format"].startswith("domain schema")


def test_fake_answers_loads_like_ollama():
    """The fake's own contract for loads and unloads (the tests above rely on the queue being untouched)."""
    with FakeOllama(default=PLAN) as fake:
        import httpx

        with httpx.Client(base_url=fake.url, trust_env=False) as c:
            load = c.post("/api/generate", json={"model": "m"}).json()
            unload = c.post("/api/chat", json={"model": "m", "messages": [], "keep_alive": 0}).json()
    assert (load["done_reason"], load["response"]) == ("load", "")
    assert (unload["done_reason"], unload["message"]["content"]) == ("unload", "")
