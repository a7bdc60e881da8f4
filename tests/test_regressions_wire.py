"""Regressions the rest of the suite let through on the wire: an answer cut off by the token limit must say so
(OpenAI ``finish_reason: "length"``, Ollama ``done_reason: "length"``), and the total deadline is a 504, not a
502. The app runs in-process (starlette's TestClient) in front of the scripted FakeLLM."""

from __future__ import annotations

import json
import time

import pytest
from starlette.testclient import TestClient

from rag_middleware import Middleware
from rag_middleware.errors import RequestError
from rag_middleware.llm.base import Completion
from rag_middleware.llm.tokens import ApproxTokenCounter
from rag_middleware.server import create_app
from rag_middleware.server.wire import (
    ChatMessage,
    OpenAIChatRequest,
    OpenAIMessage,
    Usage,
    clip,
    ndjson,
    ollama_final,
    ollama_piece,
    openai_chunk,
    openai_completion,
    openai_error,
    split_text,
    sse,
    validated,
)
from tests.conftest import FakeLLM, HashEmbedder

CUT = "Use =SUM(A2:A10) and then drag the fill handle down the"
Q = "Columns: price, qty\nsort by price, cheapest first"


def cut_off(text: str = CUT) -> Completion:
    return Completion(text=text, done_reason="length", prompt_tokens=50, completion_tokens=200, model="fake-model")


# -- the response builders -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("done", "finish"), [("length", "length"), ("stop", "stop"), ("error", "stop"),
                                              ("", "stop"), ("load", "stop")])
def test_openai_completion_finish_reason_follows_done_reason(done, finish):
    body = openai_completion("m", "text", Usage(done_reason=done, prompt_tokens=3, completion_tokens=4))
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "text"},
                                "finish_reason": finish}]
    assert body["object"] == "chat.completion" and body["model"] == "m"
    assert body["id"].startswith("chatcmpl-") and len(body["id"]) == len("chatcmpl-") + 24
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert abs(body["created"] - time.time()) < 5
    assert openai_completion("m", "t", Usage(), completion_id="chatcmpl-x")["id"] == "chatcmpl-x"


def test_usage_names_the_interaction_and_ollama_final_sums_durations():
    usage = Usage(prompt_tokens=1, completion_tokens=2, total_ns=5, load_ns=10, prompt_ns=20, eval_ns=30,
                  done_reason="length", interaction_id="i-1")
    assert usage.openai() == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3,
                              "rag_interaction_id": "i-1"}
    final = ollama_final("chat", "m", "x", usage)
    assert final["done"] is True and final["done_reason"] == "length" and final["message"] == {
        "role": "assistant", "content": "x"}
    assert final["total_duration"] == 60  # never less than its parts
    assert (final["load_duration"], final["prompt_eval_count"], final["prompt_eval_duration"], final["eval_count"],
            final["eval_duration"]) == (10, 1, 20, 2, 30)
    assert final["rag_interaction_id"] == "i-1"
    assert ollama_final("generate", "m", "x", Usage(total_ns=99))["total_duration"] == 99
    assert "rag_interaction_id" not in ollama_final("generate", "m", "x", Usage())
    assert ollama_final("generate", "m", "x", Usage())["response"] == "x"
    piece = ollama_piece("generate", "m", "ab")
    assert piece["response"] == "ab" and piece["done"] is False and piece["created_at"].endswith("Z")


def test_openai_chunks_and_errors():
    chunk = openai_chunk("c1", "m", delta={"content": "x"}, finish_reason="length")
    assert chunk["choices"] == [{"index": 0, "delta": {"content": "x"}, "finish_reason": "length"}]
    assert chunk["object"] == "chat.completion.chunk" and chunk["id"] == "c1"
    assert openai_chunk("c1", "m")["choices"][0]["delta"] == {}
    usage_chunk = openai_chunk("c1", "m", usage=Usage(prompt_tokens=2))
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["prompt_tokens"] == 2
    expected = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                422: "invalid_response_error", 502: "upstream_error", 503: "upstream_error", 504: "timeout_error",
                500: "server_error"}
    for status, kind in expected.items():
        assert openai_error("boom", status) == {"error": {"message": "boom", "type": kind, "param": None,
                                                          "code": None}}
    assert openai_error("x", 400, kind="custom")["error"]["type"] == "custom"


def test_framing_clipping_and_splitting():
    assert ndjson({"a": "é"}) == '{"a":"é"}\n'.encode()
    assert sse({"a": 1}) == b'data: {"a":1}\n\n' and sse("[DONE]") == b"data: [DONE]\n\n"
    assert split_text("abcdefgh", size=3) == ["abc", "def", "gh"] and split_text("") == [""]
    assert split_text("x" * 24) == ["x" * 24] and split_text("x" * 25) == ["x" * 24, "x"]
    assert ndjson({"a": 1, "b": [2, 3]}) == b'{"a":1,"b":[2,3]}\n'
    assert sse({"a": "é", "b": 1}) == 'data: {"a":"é","b":1}\n\n'.encode()
    assert ollama_piece("chat", "m", "ab")["message"] == {"role": "assistant", "content": "ab"}
    assert clip("short") == "short" and clip("x" * 80) == "x" * 80
    assert clip("x" * 81) == "x" * 80 + "… (81 characters)"
    assert clip("abcdef", 3) == "abc… (6 characters)"


def test_validated_names_the_first_bad_field_and_openai_messages_join_text_parts():
    with pytest.raises(RequestError, match=r"^invalid request: messages: Field required$"):
        validated(OpenAIChatRequest, {"model": "m"})
    with pytest.raises(RequestError, match=r"^invalid body: role: "):
        validated(ChatMessage, {"role": 3}, what="body")
    msg = OpenAIMessage(role="user", content=[{"type": "text", "text": "a"}, {"type": "image_url"},
                                               {"type": "text", "text": "b"}])
    assert msg.text() == "a\nb" and msg.other_parts() == ["image_url"]
    assert OpenAIMessage(role="user", content=None).text() == "" and OpenAIMessage(role="user").other_parts() == []
    assert OpenAIMessage(role="user", content=[{"type": "text"}, {"type": "text", "text": "b"}]).text() == "\nb"
    with pytest.raises(RequestError, match=r"^invalid request: messages\.0\.role: Input should be a valid string$"):
        validated(OpenAIChatRequest, {"model": "m", "messages": [{"role": 1}]})

    from pydantic import BaseModel, model_validator

    class Whole(BaseModel):
        a: int = 0

        @model_validator(mode="after")
        def never(self):
            raise ValueError("the whole body is wrong")

    with pytest.raises(RequestError) as info:
        validated(Whole, {})
    assert str(info.value) == "invalid request: the whole body is wrong"  # no path, no "Value error, "


# -- through the app -----------------------------------------------------------------------------------------


@pytest.fixture
def app_with(settings):
    clients = []

    def make(llm: FakeLLM, **retry) -> TestClient:
        cfg = settings.model_copy(update={"retry": settings.retry.model_copy(update=retry)}) if retry else settings
        mw = Middleware(cfg, backend=llm, embedder=HashEmbedder(), token_counter=ApproxTokenCounter())
        client = TestClient(create_app(cfg, middleware=mw))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _events(text: str) -> list:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]


def test_a_cut_off_answer_is_finish_reason_length_on_the_openai_side(app_with):
    llm = FakeLLM().enqueue(cut_off(), cut_off(),
                            Completion(text="fine.", done_reason="stop", prompt_tokens=5, completion_tokens=2))
    client = app_with(llm)
    ask = {"model": "assistant:latest", "messages": [{"role": "user", "content": "How do I add a column?"}]}
    r = client.post("/v1/chat/completions", json=ask)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["finish_reason"] == "length"
    assert r.json()["choices"][0]["message"]["content"] == CUT
    r = client.post("/v1/chat/completions", json={**ask, "stream": True, "stream_options": {"include_usage": True}})
    events = _events(r.text)
    finishes = [c["choices"][0]["finish_reason"] for c in events if c.get("choices")]
    assert [f for f in finishes if f] == ["length"]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in events if c.get("choices")) == CUT
    assert events[-1]["usage"]["completion_tokens"] == 200
    r = client.post("/v1/chat/completions", json=ask)
    assert r.json()["choices"][0]["finish_reason"] == "stop"


def test_a_cut_off_answer_is_done_reason_length_on_the_ollama_side(app_with):
    client = app_with(FakeLLM().enqueue(cut_off()))
    r = client.post("/api/chat", json={"model": "assistant:latest", "stream": False,
                                       "messages": [{"role": "user", "content": "How do I add a column?"}]})
    assert r.status_code == 200, r.text
    assert r.json()["done_reason"] == "length" and r.json()["message"]["content"] == CUT


def test_a_validated_answer_streamed_to_an_openai_client_finishes_with_stop(app_with):
    plan = {"chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
        "args": [], "kwargs": {"by": "price", "ascending": True}}}]}
    client = app_with(FakeLLM().enqueue(json.dumps(plan)))
    r = client.post("/v1/chat/completions", json={"model": "data_ops:latest", "stream": True,
                                                  "messages": [{"role": "user", "content": Q}]})
    assert r.status_code == 200, r.text
    events = _events(r.text)
    assert [c["choices"][0]["finish_reason"] for c in events if c["choices"][0]["finish_reason"]] == ["stop"]
    assert json.loads("".join(c["choices"][0]["delta"].get("content", "") for c in events))["task"] == "sort"


@pytest.mark.parametrize(("body", "message"), [
    (b'{"model": ', "invalid JSON body: Expecting value at line 1 column 11"),
    (b'{"model": "m\xff"}', "invalid JSON body: not UTF-8 (byte 12)"),
    (b"[1, 2]", "the request body must be a JSON object"),
    (b"", "invalid request: model: Field required"),  # an empty body is an empty object
])
def test_bad_bodies_are_400_with_what_is_wrong(app_with, body, message):
    client = app_with(FakeLLM())
    r = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["message"] == message


def test_lone_surrogates_are_replaced_and_counted(app_with):
    client = app_with(FakeLLM().enqueue("fine."))
    body = '{"model": "assistant:latest", "messages": [{"role": "user", "content": "a \\ud800 b"}, ' \
           '{"role": "assistant", "content": "x"}, {"role": "user", "content": "c \\udfff \\ud801"}]}'
    r = client.post("/v1/chat/completions", content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.headers["x-rag-input-cleaned"] == "3 lone surrogate(s) replaced by U+FFFD"
    record = client.app.state.ctx.mw.journal.get(r.headers["x-rag-interaction-id"])
    assert record.question == "c \ufffd \ufffd"


class SlowLLM(FakeLLM):
    def generate(self, request):
        time.sleep(1.1)
        return super().generate(request)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
def test_the_total_deadline_is_a_504_on_both_sides(app_with, path):
    client = app_with(SlowLLM(default="not json"), total_timeout=1.0)
    body = {"model": "data_ops:latest", "stream": False, "messages": [{"role": "user", "content": Q}]}
    r = client.post(path, json=body)
    assert r.status_code == 504, r.text
    error = r.json()["error"]
    if path.startswith("/v1/"):
        assert error["type"] == "timeout_error" and "total timeout of 1s" in error["message"]
    else:
        assert "total timeout of 1s" in error
