"""OllamaBackend against a real local HTTP server speaking the Ollama /api/chat protocol."""

from __future__ import annotations

import json

import pytest
from conftest import HashEmbedder
from ollama_fake import FakeOllama, Slow, free_port

from rag_middleware import Middleware, load_settings
from rag_middleware.llm.base import GenerateRequest
from rag_middleware.llm.ollama import OllamaBackend
from rag_middleware.llm.ollama_format import for_ollama
from rag_middleware.errors import (
    TransportError,
    UpstreamResponseError,
    UpstreamUnavailableError,
)
from rag_middleware.llm.tokens import ApproxTokenCounter

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
QUESTION = "Columns: a, b\nsort by a"
GOOD = {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "a", "ascending": True}}}]}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
                "OLLAMA_API_KEY", "OLLAMA_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def fake():
    with FakeOllama() as server:
        yield server


def make_backend(host: str, **kw) -> OllamaBackend:
    kw = {"model": "gemma3:270m", "num_ctx": 2048, "keep_alive": "10m", "timeout": 10.0,
          "connect_timeout": 2.0, **kw}
    return OllamaBackend(host=host, **kw)


@pytest.fixture
def backend(fake):
    b = make_backend(fake.url)
    yield b
    b.close()


def request(**kw) -> GenerateRequest:
    base = {
        "model": "gemma3:270m",
        "messages": [{"role": "system", "content": "be terse", "kind": "system"},
                     {"role": "user", "content": "give me a", "kind": "question"}],
        "json_schema": SCHEMA,
        "options": {"temperature": 0.0, "num_predict": 64, "seed": 7, "stop": None},
    }
    base.update(kw)
    return GenerateRequest(**base)


# -- the request body --------------------------------------------------------------------------------


def test_format_folds_sure_positions_into_items_that_llama_cpp_reads(fake, backend):
    """llama.cpp's converter reads ``items`` alone when both are there: a sure item kept only in prefixItems
    would be unwritable upstream, so Ollama gets them as alternatives of ``items`` (bounds kept), and a
    closed tuple as a bare ``prefixItems``."""
    sure = {"type": "object", "properties": {"value": {"enum": ["pay-01"]}}}
    rest = {"type": "object", "properties": {"value": {"enum": ["checkout"]}}}
    schema = {"type": "object", "properties": {
        "filters": {"type": "array", "prefixItems": [sure], "items": rest, "minItems": 1, "maxItems": 4},
        "steps": {"type": "array", "prefixItems": [sure, rest], "items": False, "minItems": 2, "maxItems": 2}}}
    fake.enqueue('{"filters": [], "steps": []}')
    backend.generate(request(json_schema=schema))
    sent = fake.bodies[0]["format"]["properties"]
    assert sent["filters"] == {"type": "array", "items": {"anyOf": [sure, rest]}, "minItems": 1, "maxItems": 4}
    assert sent["steps"] == {"type": "array", "prefixItems": [sure, rest], "minItems": 2, "maxItems": 2}
    assert schema["properties"]["filters"]["prefixItems"] == [sure]  # the assembly's grammar is not changed


def test_request_body_carries_schema_options_keep_alive_and_clean_messages(fake, backend):
    fake.enqueue('{"a": 1}')
    backend.generate(request())
    assert fake.paths == ["/api/chat"]
    body = fake.bodies[0]
    assert body["model"] == "gemma3:270m"
    assert body["format"] == SCHEMA
    assert body["stream"] is False
    assert body["keep_alive"] == "10m"
    assert body["options"]["num_ctx"] == 2048
    assert body["options"]["temperature"] == 0.0
    assert body["options"]["num_predict"] == 64
    assert body["options"]["seed"] == 7
    assert "stop" not in body["options"]  # None options are not sent
    assert body["messages"] == [{"role": "system", "content": "be terse"}, {"role": "user", "content": "give me a"}]
    assert all(set(m) == {"role", "content"} for m in body["messages"])


def test_request_values_override_backend_defaults(fake, backend):
    fake.enqueue("plain")
    backend.generate(request(json_schema=None, options={"num_ctx": 1024}, keep_alive=0, model="other:1b"))
    body = fake.bodies[0]
    assert body["options"]["num_ctx"] == 1024
    assert body["keep_alive"] == 0
    assert body["model"] == "other:1b"
    assert "format" not in body


def test_completion_fields_from_the_response(fake, backend):
    fake.enqueue({"content": '{"a": 1', "done_reason": "length", "prompt_eval_count": 321, "eval_count": 64})
    completion = backend.generate(request())
    assert completion.text == '{"a": 1'
    assert completion.done_reason == "length"
    assert completion.prompt_tokens == 321
    assert completion.completion_tokens == 64
    assert completion.model == "gemma3:270m"


def test_a_checked_answer_asks_for_token_log_probabilities_and_reads_them(fake, backend):
    if not backend._logprobs:
        pytest.skip("the installed ollama client cannot ask for log-probabilities (0.6.1+ can)")
    fake.enqueue({"content": '{"a": 1}', "logprobs": [{"token": '{"', "logprob": -0.5},
                                                        {"token": 'a": ', "logprob": -0.1},
                                                        {"token": "1}", "logprob": -0.25}]})
    completion = backend.generate(request())
    assert fake.bodies[0]["logprobs"] is True
    assert completion.logprobs == [('{"', -0.5), ('a": ', -0.1), ("1}", -0.25)]
    fake.enqueue("plain")  # free text, and a server that sends none
    completion = backend.generate(request(json_schema=None))
    assert "logprobs" not in fake.bodies[1] and completion.logprobs is None


def test_completion_done_reason_stop(fake, backend):
    fake.enqueue('{"a": 2}')
    completion = backend.generate(request())
    assert (completion.text, completion.done_reason) == ('{"a": 2}', "stop")
    assert (completion.prompt_tokens, completion.completion_tokens) == (42, 7)


# -- streaming ---------------------------------------------------------------------------------------


def test_stream_yields_text_chunks_then_one_done_chunk(fake, backend):
    text = '{"a": 12345, "note": "streamed in pieces"}'
    fake.enqueue({"content": text, "eval_count": 11})
    chunks = list(backend.stream(request()))
    assert fake.bodies[0]["stream"] is True
    assert fake.bodies[0]["format"] == SCHEMA
    assert len(chunks) > 2
    assert [c.done for c in chunks].count(True) == 1
    assert chunks[-1].done and chunks[-1].completion is not None
    assert all(c.text and c.completion is None for c in chunks[:-1])
    assert "".join(c.text for c in chunks[:-1]) == text
    final = chunks[-1].completion
    assert final.text == text
    assert (final.prompt_tokens, final.completion_tokens, final.done_reason) == (42, 11, "stop")


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_404_is_a_non_retryable_upstream_response_error(fake, backend, stream):
    fake.enqueue((404, {"error": "model not found"}))
    with pytest.raises(UpstreamResponseError) as info:
        if stream:
            list(backend.stream(request()))
        else:
            backend.generate(request())
    assert info.value.status_code == 404
    assert "model not found" in str(info.value)
    assert not isinstance(info.value, TransportError)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_5xx_and_429_are_retryable_transport_errors(fake, backend, status):
    fake.enqueue((status, {"error": "server busy"}))
    with pytest.raises(TransportError) as info:
        backend.generate(request())
    assert not isinstance(info.value, UpstreamResponseError)
    assert str(status) in str(info.value)


@pytest.mark.parametrize("stream", [False, True])
def test_refused_connection_is_unavailable_and_names_the_host(stream):
    host = f"http://127.0.0.1:{free_port()}"
    b = make_backend(host)
    try:
        with pytest.raises(UpstreamUnavailableError) as info:
            if stream:
                list(b.stream(request()))
            else:
                b.generate(request())
    finally:
        b.close()
    assert host in str(info.value)
    assert info.value.host == host
    assert isinstance(info.value, TransportError)


def test_slow_server_beyond_the_client_timeout_is_a_transport_error(fake):
    fake.enqueue(Slow(10, '{"a": 1}'))
    b = make_backend(fake.url, timeout=0.3)
    try:
        with pytest.raises(TransportError) as info:
            b.generate(request())
    finally:
        b.close()
    assert not isinstance(info.value, UpstreamUnavailableError)
    assert "timed out" in str(info.value)


def test_per_request_timeout_is_honoured(fake, backend):
    """GenerateRequest.timeout is "seconds for this call"; the pipeline sets it from the remaining budget."""
    fake.enqueue(Slow(3, '{"a": 1}'))
    with pytest.raises(TransportError):
        backend.generate(request(timeout=0.3))


# -- end to end through Middleware -------------------------------------------------------------------


@pytest.fixture
def ollama_mw(project, fake):
    settings = load_settings(
        data_dir=project / "data", knowledge_base=project / "knowledge_base", prompts_dir=project / "prompts",
        llm={"backend": "ollama", "ollama_host": fake.url},
        retry={"backoff_initial": 0, "backoff_max": 0},
    )
    m = Middleware(settings, embedder=HashEmbedder(), token_counter=ApproxTokenCounter())
    yield m
    m.close()


def test_middleware_builds_an_ollama_backend(ollama_mw, fake):
    assert isinstance(ollama_mw.backend, OllamaBackend)
    assert ollama_mw.backend.host == fake.url


def test_end_to_end_invalid_json_then_repair(ollama_mw, fake):
    fake.enqueue("this is not json at all", json.dumps(GOOD))
    result = ollama_mw.ask(QUESTION, domain="data_ops")
    assert result.valid
    assert len(result.attempts) == 2
    assert result.output["task"] == "sort"
    assert result.output["operations"][0]["execution_instructions"]["kwargs"]["by"] == "a"
    assert len(fake.bodies) == 2
    first, second = fake.bodies
    assert first != second
    schema = ollama_mw.render(QUESTION, domain="data_ops").json_schema  # request-specific: columns, steps
    assert first["format"] == second["format"] == for_ollama(schema)
    assert "items" not in first["format"]["properties"]["operations"]  # one position per step: a closed tuple
    assert first["options"]["num_ctx"] == ollama_mw.settings.llm.num_ctx
    for body in (first, second):
        assert all(set(m) == {"role", "content"} for m in body["messages"])
    # the second request replays the rejected answer and a repair turn naming the validation errors
    assert second["messages"][: len(first["messages"])] == first["messages"]
    rejected, repair = second["messages"][-2:]
    assert rejected == {"role": "assistant", "content": "this is not json at all"}
    assert repair["role"] == "user"
    errors = result.attempts[0].errors
    assert errors
    assert all(e in repair["content"] for e in errors)
    assert "attempt 2" in repair["content"]
    assert second["options"]["temperature"] == 0.0


def test_end_to_end_transport_retries_on_503(ollama_mw, fake):
    fake.enqueue((503, {"error": "loading model"}), (503, {"error": "loading model"}), json.dumps(GOOD))
    result = ollama_mw.ask(QUESTION, domain="data_ops")
    assert result.valid
    assert result.output["task"] == "sort"
    assert len(fake.bodies) == 3
    assert fake.bodies[0] == fake.bodies[1] == fake.bodies[2]
    assert len(result.attempts) == 1
    assert result.attempts[0].transport_retries == 2


def test_end_to_end_404_is_not_retried(ollama_mw, fake):
    fake.enqueue((404, {"error": "model 'gemma3:270m' not found"}))
    with pytest.raises(UpstreamResponseError) as info:
        ollama_mw.ask(QUESTION, domain="data_ops")
    assert info.value.status_code == 404
    assert len(fake.bodies) == 1
