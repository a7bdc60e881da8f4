"""The drop-in server over loopback, driven by the official ``ollama`` and ``openai`` clients.

A real uvicorn server runs in a thread; behind it the fake Ollama server (tests/ollama_fake.py) answers both
the augmented requests (through the real OllamaBackend) and the passthrough ones. Failure paths, client
disconnects, concurrency, health, admin routes and the embedded upstream are in test_server_load.py, which
reuses the harness below.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import openai
import pytest
import uvicorn
from conftest import HashEmbedder
from ollama_fake import FakeOllama

from rag_middleware import Middleware, load_settings
from rag_middleware.config import Settings
from rag_middleware.server import create_app
from rag_middleware.llm.tokens import ApproxTokenCounter

QUESTION = "Columns: a, b\nsort by a"
GOOD = {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "a", "ascending": True}}}]}
PLAN = json.dumps(GOOD)
KNOWLEDGE_BASE = Path(__file__).resolve().parents[1] / "knowledge_base"
VIRTUAL = sorted(f"{p.parent.name}:latest" for p in KNOWLEDGE_BASE.glob("*/domain.yaml"))  # every shipped domain
UPSTREAM_MODEL = "gemma3:270m"
UPSTREAM_TAGS = {"models": [{"name": "llama3.2:1b", "model": "llama3.2:1b", "modified_at": "2025-01-01T00:00:00Z",
                             "size": 1234, "digest": "abc", "details": {"format": "gguf", "family": "llama"}}]}
ASK = [{"role": "user", "content": QUESTION}]
FREE_TEXT = "Use =SUM(A2:A10) to add the column; drag the fill handle to copy it down."


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
                "OLLAMA_API_KEY", "OLLAMA_HOST", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage() + (f" {record.exc_info[1]!r}" if record.exc_info else ""))


class LiveServer:
    """uvicorn on a socket bound to 127.0.0.1:0, in a thread. ``errors`` collects uvicorn's ERROR logs
    (an exception escaping the app)."""

    def __init__(self, app) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", log_config=None, lifespan="on",
                                timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.log = _Errors()

    def start(self) -> LiveServer:
        logging.getLogger("uvicorn.error").addHandler(self.log)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        logging.getLogger("uvicorn.error").removeHandler(self.log)


@dataclass
class Stack:
    url: str
    mw: Middleware
    settings: Settings
    live: LiveServer
    fake: FakeOllama | None

    def http(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, trust_env=False, timeout=30, **kw)

    def ollama(self, **kw) -> ollama.Client:
        return ollama.Client(host=self.url, trust_env=False, timeout=30, **kw)

    def async_ollama(self, **kw) -> ollama.AsyncClient:
        return ollama.AsyncClient(host=self.url, trust_env=False, timeout=60, **kw)

    def openai(self, **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, timeout=30, **kw)

    def interaction_id(self, path: str = "/api/chat", **body) -> str:
        with self.http() as c:
            r = c.post(path, json=body)
        assert r.status_code == 200, r.text
        return r.headers["x-rag-interaction-id"]


def new_fake() -> FakeOllama:
    fake = FakeOllama(default=PLAN, model=UPSTREAM_MODEL)
    fake.route("GET", "/api/tags", UPSTREAM_TAGS)
    fake.route("GET", "/api/version", {"version": "0.12.6"})
    fake.route("HEAD", "/api/version", {"version": "0.12.6"})
    fake.route("GET", "/v1/models", {"object": "list", "data": [
        {"id": "llama3.2:1b", "object": "model", "created": 1700000000, "owned_by": "library"}]})
    return fake


@pytest.fixture
def fake():
    with new_fake() as server:
        yield server


@pytest.fixture
def start(project):
    """start(upstream_url_or_'embedded', backend=None, fake=None, **server_settings) -> Stack."""
    stacks: list[Stack] = []

    def _start(upstream: str, *, backend=None, fake: FakeOllama | None = None, **server) -> Stack:
        llm = {} if upstream == "embedded" else {"backend": "ollama", "ollama_host": upstream}
        settings = load_settings(
            data_dir=project / f"data{len(stacks)}", knowledge_base=project / "knowledge_base",
            prompts_dir=project / "prompts", retry={"backoff_initial": 0.0, "backoff_max": 0.0,
                                                    "connect_timeout": 2.0},
            llm=llm, server={"upstream": upstream, "warm": False, **server},  # timing tests: no warm-up beside
        )
        mw = Middleware(settings, backend=backend, embedder=HashEmbedder(), token_counter=ApproxTokenCounter())
        try:
            live = LiveServer(create_app(settings, middleware=mw)).start()
        except BaseException:
            mw.close()
            raise
        stacks.append(Stack(live.url, mw, settings, live, fake))
        return stacks[-1]

    yield _start
    for stack in stacks:
        stack.live.stop()
    for stack in stacks:
        assert not stack.live.log.records, f"the app raised: {stack.live.log.records}"


@pytest.fixture
def stack(start, fake) -> Stack:
    return start(fake.url, fake=fake)


def ndjson_lines(body: bytes) -> list[dict]:
    assert body.endswith(b"\n")
    lines = body.split(b"\n")[:-1]
    assert all(line.strip() for line in lines), "a blank line breaks the official client"
    return [json.loads(line) for line in lines]


def assert_one_final(parts: list) -> None:
    done = [p["done"] if isinstance(p, dict) else p.done for p in parts]
    assert done.count(True) == 1 and done[-1] is True, done


# -- listing -----------------------------------------------------------------------------------------


def test_tags_and_v1_models_list_virtual_and_upstream_models(stack):
    with stack.ollama() as client:
        listed = client.list()
    names = [m.model for m in listed.models]
    assert names == VIRTUAL + ["llama3.2:1b"]
    ours = {m.model: m for m in listed.models[:len(VIRTUAL)]}
    assert ours["data_ops:latest"].details.parent_model == UPSTREAM_MODEL
    assert ours["data_ops:latest"].modified_at is not None
    with stack.openai() as client:
        ids = [m.id for m in client.models.list()]
    assert ids == VIRTUAL + ["llama3.2:1b"]


# -- augmented, validated answers -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["chat", "generate"])
def test_non_stream_returns_validated_json_and_records_the_interaction(stack, kind):
    with stack.ollama() as client:
        if kind == "chat":
            resp = client.chat(model="data_ops:latest", messages=ASK, stream=False)
            content = resp.message.content
        else:
            resp = client.generate(model="data_ops:latest", prompt=QUESTION, stream=False)
            content = resp.response
    assert json.loads(content) == GOOD
    assert resp.model == "data_ops:latest"
    assert resp.done and resp.done_reason == "stop"
    assert resp.eval_count == 7 and resp.prompt_eval_count == 42  # the upstream's counts
    sent = stack.fake.bodies[-1]  # augmented: the upstream model, a schema and the examples
    assert sent["model"] == UPSTREAM_MODEL and isinstance(sent["format"], dict)
    assert len(sent["messages"]) > 2 and QUESTION in sent["messages"][-1]["content"]
    path = "/api/chat" if kind == "chat" else "/api/generate"
    body = {"model": "data_ops:latest", "stream": False,
            **({"messages": ASK} if kind == "chat" else {"prompt": QUESTION})}
    interaction_id = stack.interaction_id(path, **body)
    record = stack.mw.journal.get(interaction_id)
    assert record is not None and record.status == "validated" and record.domain == "data_ops"
    assert record.output == GOOD


@pytest.mark.parametrize("kind", ["chat", "generate"])
def test_stream_yields_chunks_then_exactly_one_final_chunk(stack, kind):
    with stack.ollama() as client:
        if kind == "chat":
            parts = list(client.chat(model="data_ops:latest", messages=ASK, stream=True))
            text = "".join(p.message.content or "" for p in parts)
        else:
            parts = list(client.generate(model="data_ops:latest", prompt=QUESTION, stream=True))
            text = "".join(p.response or "" for p in parts)
    assert len(parts) > 2
    assert_one_final(parts)
    assert parts[-1].done_reason == "stop" and parts[-1].eval_count == 7
    assert all(p.model == "data_ops:latest" for p in parts)
    assert json.loads(text) == GOOD
    path = "/api/chat" if kind == "chat" else "/api/generate"
    body = {"model": "data_ops:latest", **({"messages": ASK} if kind == "chat" else {"prompt": QUESTION})}
    with stack.http() as c:  # stream is true when absent
        r = c.post(path, json=body)
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = ndjson_lines(r.content)
    assert_one_final(lines)
    assert {"done_reason", "eval_count", "total_duration", "prompt_eval_count"} <= set(lines[-1])
    assert stack.mw.journal.get(r.headers["x-rag-interaction-id"]).status == "validated"


def test_async_client_chat_and_generate(stack):
    async def run():
        async with stack.async_ollama() as client:
            plain = await client.chat(model="data_ops:latest", messages=ASK, stream=False)
            parts = [p async for p in await client.chat(model="data_ops:latest", messages=ASK, stream=True)]
            gen = [p async for p in await client.generate(model="data_ops:latest", prompt=QUESTION, stream=True)]
            return plain, parts, gen

    plain, parts, gen = asyncio.run(run())
    assert json.loads(plain.message.content) == GOOD
    assert_one_final(parts)
    assert_one_final(gen)
    assert json.loads("".join(p.message.content or "" for p in parts)) == GOOD
    assert json.loads("".join(p.response or "" for p in gen)) == GOOD
    assert stack.mw.journal.count() == 3


@pytest.mark.parametrize("stream", [False, True])
def test_invalid_first_answer_is_never_sent(stack, stream):
    stack.fake.enqueue("this is not json at all", PLAN)
    with stack.ollama() as client:
        if stream:
            parts = list(client.chat(model="data_ops:latest", messages=ASK, stream=True))
            assert_one_final(parts)
            text = "".join(p.message.content or "" for p in parts)
        else:
            text = client.chat(model="data_ops:latest", messages=ASK, stream=False).message.content
    assert "not json" not in text
    assert json.loads(text) == GOOD
    assert len(stack.fake.bodies) == 2
    (record,) = stack.mw.journal.list()
    assert record.status == "validated" and len(record.attempts) == 2


def test_openai_client_chat_non_stream_and_stream(stack):
    with stack.openai() as client:
        raw = client.chat.completions.with_raw_response.create(model="data_ops:latest", messages=ASK)
        completion = raw.parse()
        chunks = list(client.chat.completions.create(model="data_ops:latest", messages=ASK, stream=True,
                                                     stream_options={"include_usage": True}))
    assert json.loads(completion.choices[0].message.content) == GOOD
    assert completion.model == "data_ops:latest" and completion.choices[0].finish_reason == "stop"
    assert stack.mw.journal.get(raw.headers["x-rag-interaction-id"]).status == "validated"
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text) == GOOD
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7


# -- free text, streamed live ------------------------------------------------------------------------


def test_free_text_streams_live_from_upstream_and_is_recorded(stack):
    stack.fake.enqueue(FREE_TEXT)
    with stack.ollama() as client:
        parts = list(client.chat(model="assistant:latest", messages=[{"role": "user", "content": "sum a column?"}],
                                 stream=True))
    assert_one_final(parts)
    # the upstream's own 5-character chunks, relayed as they come (a buffered answer is cut in 24s)
    assert [p.message.content for p in parts[:-1]] == [FREE_TEXT[i:i + 5] for i in range(0, len(FREE_TEXT), 5)]
    assert stack.fake.bodies[-1]["stream"] is True
    (record,) = stack.mw.journal.list()
    assert record.status == "answered" and record.domain == "assistant" and record.output_text == FREE_TEXT
    stack.fake.enqueue(FREE_TEXT)
    with stack.openai() as client:
        chunks = list(client.chat.completions.create(model="assistant:latest", messages=ASK, stream=True,
                                                     stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [FREE_TEXT[i:i + 5] for i in range(0, len(FREE_TEXT), 5)]
    assert [c.choices[0].delta.content for c in chunks[1:-2]] == pieces
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].usage.completion_tokens == 7
    assert stack.mw.journal.count() == 2


# -- routing -----------------------------------------------------------------------------------------


def test_domain_header_overrides_the_model_name(stack):
    with stack.ollama(headers={"X-RAG-Domain": "data_ops"}) as client:
        resp = client.chat(model="llama3.2:1b", messages=ASK, stream=False)
    assert resp.model == "llama3.2:1b"
    assert json.loads(resp.message.content) == GOOD
    assert isinstance(stack.fake.bodies[-1]["format"], dict)
    assert stack.mw.journal.count() == 1


def test_upstream_model_passes_through_unchanged(stack):
    raw = b'{"model":"llama3.2:1b",  "messages":[{"role":"user","content":"hi"}], "stream":false, "x":[1]}'
    with stack.http() as c:
        r = c.post("/api/chat", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["message"]["content"] == PLAN
    (seen,) = stack.fake.seen("/api/chat")
    assert seen.raw == raw
    assert seen.headers["host"] != stack.url.split("//")[1]
    assert stack.mw.journal.count() == 0


def test_default_domain_catches_upstream_model_names(start, fake):
    stack = start(fake.url, fake=fake, default_domain="data_ops")
    with stack.ollama() as client:
        resp = client.chat(model=UPSTREAM_MODEL, messages=ASK, stream=False)
    assert resp.model == UPSTREAM_MODEL and json.loads(resp.message.content) == GOOD
    assert isinstance(fake.bodies[-1]["format"], dict)
    assert stack.mw.journal.list()[0].domain == "data_ops"


@pytest.mark.parametrize("case", ["task_prompt", "system_only", "empty_upstream_model"])
def test_loads_and_background_tasks_are_passed_through(start, fake, case):
    stack = start(fake.url, fake=fake, default_domain="data_ops")
    body = {"model": "data_ops:latest", "messages": ASK, "stream": False}
    if case == "task_prompt":
        body["messages"] = [{"role": "user", "content": "### Task:\nGenerate a title for the chat."}]
    elif case == "system_only":
        body["messages"] = [{"role": "system", "content": "You are terse."}]
    else:
        body = {"model": UPSTREAM_MODEL, "messages": []}
    with stack.http() as c:
        r = c.post("/api/chat", json=body)
    assert r.status_code == 200 and "x-rag-interaction-id" not in r.headers
    (sent,) = fake.bodies
    assert "format" not in sent
    assert sent == {**body, "model": UPSTREAM_MODEL}  # only the virtual model name is replaced
    assert r.json()["model"] == body["model"]  # and the answer names the model asked for, as Ollama's do
    assert stack.mw.journal.count() == 0


def test_empty_request_for_a_virtual_model_is_a_load_reply_and_an_unload_goes_upstream(stack):
    with stack.ollama() as client:
        resp = client.chat(model="data_ops:latest", messages=[], stream=False)
        assert stack.fake.bodies == []  # a load: nothing to load upstream for a virtual model
        gen = client.generate(model="data_ops:latest", prompt="", keep_alive=0, stream=False)
        unload = client.chat(model="data_ops:latest", messages=[], keep_alive=0)
    assert resp.done and resp.done_reason == "load" and resp.message.content == ""
    # an unload frees the upstream model that answers the domain, and is answered as the virtual model
    assert [(b["model"], b["keep_alive"]) for b in stack.fake.bodies] == [(UPSTREAM_MODEL, 0)] * 2
    assert stack.fake.paths == ["/api/generate", "/api/chat"]
    assert (gen.done, gen.done_reason, gen.response, gen.model) == (True, "unload", "", "data_ops:latest")
    assert (unload.done_reason, unload.model) == ("unload", "data_ops:latest")
    assert stack.mw.journal.count() == 0


# -- passthrough and probes --------------------------------------------------------------------------


def test_show_and_embed_pass_through_byte_for_byte(stack):
    show = stack.fake.route("POST", "/api/show", b'{"modelfile":"FROM x",  "parameters":"stop \\"<eos>\\"",'
                            b' "template":"{{ .Prompt }}", "details":{"family":"gemma3"},"model_info":{"a":1}}')
    embed = stack.fake.route("POST", "/api/embed", b'{"model":"all-minilm","embeddings":[[0.1,-0.25,1e-3]] }')
    with stack.http() as c:
        r_show = c.post("/api/show", json={"model": UPSTREAM_MODEL})
        r_embed = c.post("/api/embed", json={"model": "all-minilm", "input": "hello"})
    assert (r_show.status_code, r_show.content) == (200, show)
    assert (r_embed.status_code, r_embed.content) == (200, embed)
    assert stack.fake.seen("/api/embed")[0].raw == r_embed.request.content
    with stack.ollama() as client:
        assert client.show(UPSTREAM_MODEL).details.family == "gemma3"
        assert client.embed(model="all-minilm", input="hello").embeddings == [[0.1, -0.25, 0.001]]
    hosts = {s.headers["host"] for s in stack.fake.requests}
    assert stack.url.split("//")[1] not in hosts


def test_show_of_a_virtual_model_describes_its_upstream_model(stack):
    stack.fake.route("POST", "/api/show", b'{"modelfile":"FROM x","details":{"family":"gemma3"},"model_info":{}}')
    with stack.ollama() as client:
        assert client.show("data_ops:latest").details.family == "gemma3"
    sent = json.loads(stack.fake.seen("/api/show")[-1].raw)
    assert sent["model"] == stack.settings.llm.model  # the upstream model that answers data_ops


def test_root_and_version(stack):
    with stack.http() as c:
        get, head = c.get("/"), c.head("/")
        version, version_head = c.get("/api/version"), c.head("/api/version")
    assert (get.status_code, get.text) == (200, "Ollama is running")
    assert head.status_code == 200 and head.headers["content-type"].startswith("text/plain")
    assert version.status_code == 200 and version.json() == {"version": "0.12.6"}
    assert version_head.status_code == 200


def test_passthrough_reuses_pooled_upstream_connections(stack):
    """Each passthrough takes an idle one-connection client and gives it back: sequential requests share one
    client, concurrent ones make more and all return to the pool."""
    pool = stack.live.server.config.app.state.ctx.upstream._pool
    body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    with stack.http() as c:
        for _ in range(5):
            assert c.post("/api/chat", json=body).status_code == 200
    assert len(pool._idle) == 1 and len(pool._all) == 1

    def one(_):
        with stack.http() as c:
            return c.post("/api/chat", json={**body, "stream": True}).status_code

    with ThreadPoolExecutor(4) as ex:
        assert list(ex.map(one, range(8))) == [200] * 8
    assert 1 <= len(pool._idle) == len(pool._all) <= 8  # streamed answers release their client at the end
