"""Open WebUI in front of the server: its request shapes (tests/owui_shapes.py) routed by what they are,
background tasks behind user requests on the embedded model and capped, honest timings, and the ids Open WebUI
can map feedback by. Harness: test_server.py."""

from __future__ import annotations

import ast
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import FakeLLM
from test_server import ndjson_lines

import owui_shapes as owui
import test_server
from rag_middleware.llm.base import GenerateRequest, StreamChunk
from rag_middleware.llm.embedded import EmbeddedBackend
from rag_middleware.config import ServerSettings
from rag_middleware.errors import ConfigError
from rag_middleware.server.gate import GatedBackend, Meter, PriorityGate, metered
from rag_middleware.server.routing import Router, system_text

GOOD = {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "amount", "ascending": False}}}]}
PLAN = json.dumps(GOOD)  # the answer to owui.QUESTION
MODEL = "data_ops:latest"
EMBEDDED_MODEL = "gemma3:270m"
OWUI_CONFIG = Path(__file__).resolve().parents[1] / ".venv-owui/lib/python3.11/site-packages/open_webui/config.py"
start = test_server.start  # the live-server fixture


def route_of(router: Router, messages, model: str = MODEL):
    return router.resolve(model=model, header_domain=None, keep_alive=None, system=system_text(messages),
                          texts=[m["content"] for m in messages if m["role"] == "user"])


def request_line(caplog) -> dict:
    """The access log line of the one request (written as the response ends: wait for it)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [json.loads(r.getMessage()) for r in caplog.records if '"event": "request"' in r.getMessage()]
        if found:
            return found[-1]
        time.sleep(0.02)
    raise AssertionError("no request log line")


@pytest.fixture
def router(mw) -> Router:
    return Router(mw.settings, mw.domains)


# -- 1. routing that knows Open WebUI -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(owui.TASKS))
def test_each_background_task_is_recognised_by_its_shape(router, name):
    route = route_of(router, owui.TASKS[name]())
    assert route.domain is None and route.background and route.task == name, route
    assert route.reason == f"background task: {name}"


@pytest.mark.parametrize("shape", [owui.rag_chat, owui.rag_chat_user_query])
def test_a_question_with_retrieved_context_is_a_domain_request_on_the_question(router, shape):
    route = route_of(router, shape())
    assert route.domain == "data_ops" and not route.background
    assert route.question == owui.QUESTION and route.context == owui.SOURCES
    assert "retrieved context" in route.reason
    messages = route.messages(shape())
    assert messages[-1] == {"role": "user", "content": owui.QUESTION}
    assert messages[-2]["role"] == "system" and owui.SOURCES in messages[-2]["content"]


def test_context_in_the_system_message_keeps_it_there(router):
    messages = owui.rag_chat_system(system="You are terse.")
    route = route_of(router, messages)
    assert route.domain == "data_ops" and route.question == owui.QUESTION and not route.background
    assert route.messages(messages) == [messages[0], {"role": "user", "content": owui.QUESTION}]


def test_history_before_the_rag_message_is_kept(router):
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    route = route_of(router, owui.rag_chat(history=history))
    assert route.messages(owui.rag_chat(history=history))[:2] == history


def test_plain_questions_and_the_emoji_prompt_on_a_plain_model(router):
    assert route_of(router, [{"role": "user", "content": owui.QUESTION}]).domain == "data_ops"
    emoji = route_of(router, owui.emoji(), model=EMBEDDED_MODEL)
    assert emoji.domain is None and emoji.task == "emoji"


def test_the_rules_are_configurable(mw):
    settings = mw.settings.model_copy(update={"server": ServerSettings(
        task_patterns={"ticket": r"\A\[ticket\]"},
        context_patterns=[r"(?s)<docs>(?P<context>.*)</docs>\s*(?P<question>.*\S)"])})
    router = Router(settings, mw.domains)
    assert route_of(router, [{"role": "user", "content": "[ticket] summarise"}]).task == "ticket"
    assert route_of(router, owui.title()).domain == "data_ops"  # Open WebUI's rules replaced: a domain request
    rag = route_of(router, [{"role": "user", "content": "<docs>a,b</docs> sort by a"}])
    assert (rag.question, rag.context) == ("sort by a", "a,b")
    bad = mw.settings.model_copy(update={"server": ServerSettings(task_patterns={"x": "("})})
    with pytest.raises(ConfigError, match="bad regex"):
        Router(bad, mw.domains)


def _owui_templates() -> dict[str, str]:
    tree = ast.parse(OWUI_CONFIG.read_text())
    return {node.targets[0].id: node.value.value for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id.startswith("DEFAULT_") and node.targets[0].id.endswith("_TEMPLATE")
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


@pytest.mark.skipif(not OWUI_CONFIG.is_file(), reason="Open WebUI is not installed in .venv-owui")
def test_the_installed_open_webui_templates_route_as_our_shapes(router):
    t = _owui_templates()
    history = owui._history(owui.CHAT)

    def fill(text: str) -> str:
        text = re.sub(r"\{\{MESSAGES:END:\d+\}\}", history, text)
        return text.replace("{{prompt}}", owui.QUESTION).replace("{{PROMPT}}", "Sort by").replace(
            "{{TYPE}}", "General").replace("{{CURRENT_DATE}}", "2026-01-01").replace("{{responses}}", '"a" "b"')

    expected = {"TITLE_GENERATION": "title", "TAGS_GENERATION": "tags", "FOLLOW_UP_GENERATION": "follow_ups",
                "QUERY_GENERATION": "queries", "AUTOCOMPLETE_GENERATION": "autocomplete",
                "IMAGE_PROMPT_GENERATION": "task", "EMOJI_GENERATION": "emoji", "MOA_GENERATION": "merge_responses"}
    for name, task in expected.items():
        route = route_of(router, [{"role": "user", "content": fill(t[f"DEFAULT_{name}_PROMPT_TEMPLATE"])}])
        assert route.task == task, (name, route)
    tools = [{"role": "system", "content": t["DEFAULT_TOOLS_FUNCTION_CALLING_PROMPT_TEMPLATE"].replace(
        "{{TOOLS}}", "[]")}, {"role": "user", "content": f"Query: {owui.QUESTION}"}]
    assert route_of(router, tools).task == "tool_calls"
    rag = t["DEFAULT_RAG_TEMPLATE"].replace("{{CONTEXT}}", owui.SOURCES)
    route = route_of(router, [{"role": "user", "content": f"{rag}\n{owui.QUESTION}"}])  # RAG_SYSTEM_CONTEXT off
    assert (route.domain, route.question, route.context) == ("data_ops", owui.QUESTION, owui.SOURCES)
    route = route_of(router, [{"role": "system", "content": rag}, {"role": "user", "content": owui.QUESTION}])
    assert (route.domain, route.question) == ("data_ops", owui.QUESTION)


# -- the server, embedded upstream ----------------------------------------------------------------------


class TimedLLM(FakeLLM):
    """A fake that reports llama.cpp-like timings, takes ``delay`` seconds a call, and logs the call order."""

    def __init__(self, *, delay: float = 0.0, **kw) -> None:
        super().__init__(flat_prompt=True, **kw)
        self.delay = delay
        self.order: list[str] = []
        self._lock = threading.Lock()

    def _next(self, request: GenerateRequest):
        with self._lock:
            self.order.append(request.prompt or "")
        time.sleep(self.delay)
        c = super()._next(request)
        return c.model_copy(update={"prompt_ms": 40.0, "eval_ms": 200.0, "load_ms": 5.0})

    def stream(self, request: GenerateRequest) -> Iterator[StreamChunk]:
        completion = self._next(request)
        for word in completion.text.split(" "):
            yield StreamChunk(text=word + " ")
        yield StreamChunk(done=True, completion=completion)


@pytest.fixture
def embedded(start):
    def _make(llm: FakeLLM | None = None, **server):
        llm = llm or TimedLLM(default=PLAN)
        stack = start("embedded", backend=GatedBackend(llm, PriorityGate()), **server)
        stack.llm = llm
        return stack
    return _make


def test_a_rag_chat_is_augmented_on_the_question_with_the_context_in_the_prompt(embedded, caplog):
    stack = embedded()
    with caplog.at_level(logging.INFO, logger="rag_middleware.server"), stack.http() as c:
        r = c.post("/api/chat", json={"model": MODEL, "messages": owui.rag_chat(), "stream": False},
                   headers=owui.FORWARDED)
    assert r.status_code == 200, r.text
    body = r.json()
    assert json.loads(body["message"]["content"]) == GOOD and body["rag_interaction_id"]
    record = stack.mw.journal.get(r.headers["x-rag-interaction-id"])
    assert record.question == owui.QUESTION and record.status == "validated"
    assert record.request["openwebui"] == {"chat_id": "chat-42", "message_id": "msg-7", "user_id": "u-1"}
    prompt = stack.llm.requests[0].prompt
    assert "north,10" in prompt and "### Task:" not in prompt and "Request: " + owui.QUESTION in prompt
    line = request_line(caplog)
    assert line["route"] == "domain named by the model (a question with retrieved context)"
    assert line["domain"] == "data_ops" and line["task"] is None and "messages" not in line


@pytest.mark.parametrize("name", ["title", "tags", "emoji", "tool_calls"])
def test_background_tasks_pass_through_capped_and_unrecorded(embedded, name, caplog):
    stack = embedded(TimedLLM(default='{"title": "Sorting"}'))
    with caplog.at_level(logging.INFO, logger="rag_middleware.server"), stack.http() as c:
        r = c.post("/api/chat", json=owui.ollama_task_body(MODEL, owui.TASKS[name]()))
    assert r.status_code == 200, r.text
    assert r.json()["message"]["content"] == '{"title": "Sorting"}' and "rag_interaction_id" not in r.json()
    assert stack.llm.requests[0].options["num_predict"] == 128
    assert stack.mw.journal.count() == 0 and stack.mw.store.count() == 0
    line = request_line(caplog)
    assert (line["route"], line["task"], line["domain"]) == (f"background task: {name}", name, None)


def test_background_cap_is_configurable_and_a_smaller_ask_is_kept(embedded):
    stack = embedded(background_num_predict=16)
    with stack.http() as c:
        c.post("/api/chat", json=owui.ollama_task_body(EMBEDDED_MODEL, owui.title()))
        c.post("/api/chat", json={**owui.ollama_task_body(EMBEDDED_MODEL, owui.tags()), "options": {"num_predict": 4}})
    assert [r.options["num_predict"] for r in stack.llm.requests] == [16, 4]


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/v1/chat/completions"])
def test_a_plain_chat_is_capped_at_plain_num_predict_unless_the_client_asks(embedded, path):
    """Ollama's -1 ran a plain chat on the embedded 270M model for over 7 minutes: without a positive
    num_predict (or max_tokens) from the client, a plain request gets ``server.plain_num_predict``."""
    stack = embedded(plain_num_predict=64)
    base = {"model": EMBEDDED_MODEL, "stream": False}
    base |= {"prompt": "hi"} if path == "/api/generate" else {"messages": [{"role": "user", "content": "hi"}]}
    if path == "/v1/chat/completions":
        asked = [{}, {"max_tokens": 1000}, {"max_tokens": 8}]
    else:
        asked = [{}, {"options": {"num_predict": 1000}}, {"options": {"num_predict": 8}},
                 {"options": {"num_predict": -1}}, {"options": {"num_predict": 0}}]
    with stack.http() as c:
        for extra in asked:
            assert c.post(path, json=base | extra).status_code == 200
    sent = [r.options["num_predict"] for r in stack.llm.requests]
    assert sent == [64, 1000, 8, 64, 64][: len(asked)]  # a positive ask wins, above the cap too


def test_plain_num_predict_minus_one_is_ollamas_default_and_background_tasks_keep_their_cap(embedded):
    stack = embedded(plain_num_predict=-1)
    with stack.http() as c:
        c.post("/api/chat", json={"model": EMBEDDED_MODEL, "stream": False,
                                  "messages": [{"role": "user", "content": "hi"}]})
        c.post("/api/chat", json={**owui.ollama_task_body(EMBEDDED_MODEL, owui.title()), "options": {}})
    assert [r.options["num_predict"] for r in stack.llm.requests] == [-1, 128]
    default = embedded()
    with default.http() as c:
        c.post("/api/chat", json={**owui.ollama_task_body(EMBEDDED_MODEL, owui.title()), "options": {}})
    assert default.llm.requests[0].options["num_predict"] == 128  # the smaller background cap still wins


def test_title_and_tags_stubs_answer_without_the_model(embedded):
    stack = embedded(background_stub=True)
    with stack.http() as c:
        title = c.post("/api/chat", json=owui.ollama_task_body(MODEL, owui.title())).json()
        tags = c.post("/api/chat", json=owui.ollama_task_body(MODEL, owui.tags(), stream=True))
        follow = c.post("/api/chat", json=owui.ollama_task_body(MODEL, owui.follow_ups())).json()
    assert json.loads(title["message"]["content"]) == {"title": "Columns: region, amount Sort the"}
    lines = ndjson_lines(tags.content)
    assert json.loads("".join(x["message"]["content"] for x in lines)) == {"tags": []} and lines[-1]["done"]
    assert follow["message"]["content"] == PLAN and len(stack.llm.requests) == 1  # only follow-ups asked


def test_user_requests_go_ahead_of_background_tasks(embedded):
    llm = TimedLLM(default=PLAN, delay=0.4)
    stack = embedded(llm)
    plain = [{"role": "user", "content": "user two"}]
    results: list[int] = []

    def post(body):
        with httpx.Client(base_url=stack.url, trust_env=False, timeout=30) as c:
            results.append(c.post("/api/chat", json=body).status_code)

    first = threading.Thread(target=post, args=({"model": EMBEDDED_MODEL, "stream": False,
                                                 "messages": [{"role": "user", "content": "user one"}]},))
    first.start()
    time.sleep(0.15)  # user one is running
    background = threading.Thread(target=post, args=(owui.ollama_task_body(EMBEDDED_MODEL, owui.title()),))
    background.start()
    time.sleep(0.1)  # the title waits behind user one
    second = threading.Thread(target=post, args=({"model": EMBEDDED_MODEL, "stream": False, "messages": plain},))
    second.start()
    for t in (first, background, second):
        t.join()
    assert results == [200] * 3
    order = ["title" if "### Task:" in p else ("one" if "user one" in p else "two") for p in llm.order]
    assert order == ["one", "two", "title"]


def test_priority_gate_orders_and_counts():
    gate = PriorityGate()
    events: list[str] = []
    held = gate.background()

    with gate.user():
        t = threading.Thread(target=lambda: held.__enter__() or events.append("bg"))
        t.start()
        time.sleep(0.05)
        assert events == [] and gate.status() == {"users": 1, "background_running": False}
    t.join(2)
    assert events == ["bg"] and gate.status()["background_running"]
    held.__exit__(None, None, None)
    assert gate.status() == {"users": 0, "background_running": False}


# -- 3. honest timings, live passthrough -----------------------------------------------------------------


def test_timings_are_the_models_own(embedded):
    stack = embedded()
    with stack.http() as c:
        aug = c.post("/api/chat", json={"model": MODEL, "messages": owui.rag_chat(), "stream": False}).json()
        plain = c.post("/api/generate", json={"model": EMBEDDED_MODEL, "prompt": "hello", "stream": False}).json()
    for body in (aug, plain):
        assert body["prompt_eval_duration"] == 40_000_000 and body["eval_duration"] == 200_000_000
        assert body["load_duration"] == 5_000_000
        assert body["total_duration"] >= 245_000_000
        assert body["prompt_eval_count"] == 100 and body["eval_count"] > 0


def test_queueing_is_not_eval_time():
    gate = PriorityGate()
    backend = GatedBackend(TimedLLM(default="x", delay=0.0), gate)
    meter = Meter(background=True)
    with gate.user():
        t = threading.Thread(target=lambda: time.sleep(0.2))
        t.start()

        def call():
            with metered(meter):
                backend.generate(GenerateRequest(model="m", messages=[], prompt="p"))

        worker = threading.Thread(target=call)
        worker.start()
        t.join()
    worker.join(2)
    d = meter.durations()
    assert meter.wait_ms >= 150 and d["eval_duration"] == 200_000_000 and d["prompt_eval_duration"] == 40_000_000


def test_openai_usage_carries_the_interaction_id(embedded):
    stack = embedded()
    with stack.openai() as client:
        done = client.chat.completions.create(model=MODEL, messages=owui.rag_chat())
        chunks = list(client.chat.completions.create(model=MODEL, messages=owui.rag_chat(), stream=True,
                                                     stream_options={"include_usage": True}))
        plain = client.chat.completions.create(model=EMBEDDED_MODEL, messages=[{"role": "user", "content": "hi"}])
    extra = done.usage.model_extra
    assert extra["rag_interaction_id"] and stack.mw.journal.get(extra["rag_interaction_id"]).question == owui.QUESTION
    assert done.usage.prompt_tokens == 100 and done.usage.total_tokens == 100 + done.usage.completion_tokens
    assert chunks[-1].usage.model_extra["rag_interaction_id"]
    assert plain.usage.prompt_tokens == 100 and "rag_interaction_id" not in (plain.usage.model_extra or {})


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/v1/chat/completions"])
def test_passthrough_streams_live_with_ollamas_defaults(embedded, path):
    text = " ".join(f"w{i}" for i in range(400))  # past the old 256-token cap
    stack = embedded(TimedLLM(default=text))
    body = {"model": EMBEDDED_MODEL, "stream": True}
    body |= {"prompt": "count"} if path == "/api/generate" else {"messages": [{"role": "user", "content": "count"}]}
    with stack.http() as c, c.stream("POST", path, json=body) as r:
        lines = [line for line in r.iter_lines() if line.strip()]
    assert stack.llm.requests[0].options["num_predict"] == 512  # server.plain_num_predict, not Ollama's -1
    if path == "/v1/chat/completions":
        deltas = [json.loads(x[6:])["choices"] for x in lines[:-1]]
        pieces = [c[0]["delta"]["content"] for c in deltas if c and c[0]["delta"].get("content")]
    else:
        objs = [json.loads(x) for x in lines]
        assert objs[-1]["done"] and objs[-1]["eval_duration"] == 200_000_000
        pieces = [(o.get("message") or {}).get("content", o.get("response", "")) for o in objs[:-1]]
    assert pieces[-1] == "w399 " and "".join(pieces).strip() == text  # the model's own pieces, one per token


# -- the embedded backend's timings ------------------------------------------------------------------------


class _FakeServer:
    """xllamacpp's Server: a streaming callback that returns True stops the generation."""

    def __init__(self) -> None:
        self.stopped = threading.Event()

    def handle_completions(self, payload, callback=None):
        timings = {"prompt_n": 7, "prompt_ms": 12.5, "predicted_n": 3, "predicted_ms": 30.0}
        usage = {"prompt_tokens": 7, "completion_tokens": 3}
        if callback is None:
            return {"choices": [{"text": "abc", "finish_reason": "stop"}], "usage": usage, "timings": timings}
        for piece in ("a", "b", "c", *"d" * 50):
            if callback({"choices": [{"text": piece, "finish_reason": None}]}):
                self.stopped.set()
                return None
            time.sleep(0.01)
        callback({"choices": [{"text": "", "finish_reason": "stop"}], "usage": usage, "timings": timings})
        return None


def test_embedded_backend_reports_llama_cpp_timings(monkeypatch):
    backend = EmbeddedBackend(model_path=None)
    monkeypatch.setattr(backend, "_loaded", lambda: (_FakeServer(), 3.0))
    done = backend.generate(GenerateRequest(model="m", messages=[], prompt="p"))
    assert (done.prompt_ms, done.eval_ms, done.load_ms, done.completion_tokens) == (12.5, 30.0, 3.0, 3)
    chunks = list(backend.stream(GenerateRequest(model="m", messages=[], prompt="p")))
    assert "".join(c.text for c in chunks[:-1]) == "abc" + "d" * 50
    final = chunks[-1].completion
    assert (final.prompt_ms, final.eval_ms, final.prompt_tokens) == (12.5, 30.0, 7)
    payload = backend._payload(GenerateRequest(model="m", messages=[], prompt="p"), stream=False)
    assert "n_predict" not in payload  # llama.cpp's own default: unbounded, up to the context


def test_embedded_stream_closed_early_stops_the_generation(monkeypatch):
    backend, server = EmbeddedBackend(model_path=None), _FakeServer()
    monkeypatch.setattr(backend, "_loaded", lambda: (server, 0.0))
    stream = backend.stream(GenerateRequest(model="m", messages=[], prompt="p"))
    assert next(stream).text == "a"
    stream.close()  # the client went away
    assert server.stopped.wait(2)
