"""Hot reload in the server: an edited template is served from the next request without a restart; an edit
with lint errors is refused (the last good version stays live, /rag/health and the log say why) while the
server keeps answering; every answer's record names the version that rendered it."""

from __future__ import annotations

import json
import logging
import threading
import time

import httpx
import pytest
from conftest import FakeLLM, wait_for
import test_server

from rag_middleware.llm.base import Completion
from rag_middleware.templating.versions import TemplateStore

# test_server.py's fixtures, requested here by name (pytest finds fixtures among a module's attributes)
start, _no_proxy = test_server.start, test_server._no_proxy

HELP = [{"role": "user", "content": "how do I sum a column?"}]


class EchoLLM(FakeLLM):
    """Answers with the request turn it was given, so each answer shows which fewshot.j2 rendered it."""

    def _next(self, request):
        self.requests.append(request.model_copy(deep=True))
        turn = next(m for m in reversed(request.messages) if m.get("kind") == "request")
        return Completion(text=f"ECHO<{turn['content']}>", done_reason="stop", prompt_tokens=10, completion_tokens=5,
                          model=self.model)


@pytest.fixture
def server(start, monkeypatch):
    monkeypatch.setattr("rag_middleware.server.context.TEMPLATE_CHECK_SECONDS", 0.05)
    return start("embedded", backend=EchoLLM())


def chat(client: httpx.Client) -> tuple[int, str, str]:
    r = client.post("/api/chat", json={"model": "assistant:latest", "messages": HELP, "stream": False})
    body = r.json()
    return r.status_code, body.get("message", {}).get("content", body.get("error", "")), \
        r.headers.get("x-rag-interaction-id", "")


class Hammer(threading.Thread):
    """Keeps asking while the templates change under it."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.results: list[tuple[int, str, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, trust_env=False, timeout=30) as client:
            while not self.stop.is_set():
                self.results.append(chat(client))


def test_good_edits_go_live_and_broken_ones_are_refused_while_serving(server, caplog):
    fewshot = server.settings.prompts_dir / "fewshot.j2"
    caplog.set_level(logging.INFO, logger="rag_middleware.templating.engine")
    with server.http() as client:
        health = client.get("/rag/health").json()
        assert health["status"] == "ok" and health["templates"]["ok"] is True
        v1 = health["templates"]["version"]
        assert chat(client)[:2] == (200, "ECHO<how do I sum a column?>")

        hammer = Hammer(server.url)
        hammer.start()
        try:
            fewshot.write_text("EDITED: {{ question }}")
            wait_for(lambda: chat(client)[1].startswith("ECHO<EDITED: "))
            v2 = client.get("/rag/health").json()["templates"]["version"]
            assert v2 != v1

            fewshot.write_text("BROKEN {{ questoin }}")
            health = wait_for(lambda: (h := client.get("/rag/health").json())["templates"]["ok"] is False and h)
            assert health["status"] == "degraded" and health["templates"]["version"] == v2
            detail = health["templates"]["detail"]
            assert f"{fewshot}:1: error: unknown variable 'questoin'" in detail and "did you mean 'question'" in detail
            assert health["templates"]["rejected"]["version"] not in ("", v2)
            for _ in range(5):  # still answering, with the last good version
                assert chat(client)[:2] == (200, "ECHO<EDITED: how do I sum a column?>")
                time.sleep(0.06)

            fewshot.write_text("{{ question.__class__.__mro__ }}")  # reaching Python internals: refused too
            wait_for(lambda: "Python internals" in client.get("/rag/health").json()["templates"]["detail"])
            assert chat(client)[1] == "ECHO<EDITED: how do I sum a column?>"

            fewshot.write_text("FIXED {{ question }}")
            wait_for(lambda: chat(client)[1].startswith("ECHO<FIXED "))
            health = client.get("/rag/health").json()
            assert health["status"] == "ok" and health["templates"]["rejected"] is None
            v3 = health["templates"]["version"]
        finally:
            hammer.stop.set()
            hammer.join(timeout=30)

    # the server answered every request, each from one good version, and each record names that version
    assert len(hammer.results) >= 10
    assert all(status == 200 for status, _, _ in hammer.results), {s for s, _, _ in hammer.results}
    marker = {v1: "ECHO<how do I", v2: "ECHO<EDITED: ", v3: "ECHO<FIXED "}
    versions_seen = set()
    for _, text, interaction_id in hammer.results:
        version = server.mw.journal.get(interaction_id).template_version
        versions_seen.add(version)
        assert version in marker and text.startswith(marker[version]), (version, text)
    assert v2 in versions_seen
    stored = {v.version for v in TemplateStore.from_settings(server.settings).versions()}
    assert {v1, v2, v3} <= stored and len(stored) == 3  # the refused edits were never used, never stored
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "rag_middleware.templating.engine"
              and r.getMessage().startswith("{")]
    rejected = [e for e in events if e["event"] == "templates_rejected"]
    assert len(rejected) == 2 and all(e["live"] == v2 for e in rejected)
    assert any("questoin" in p for p in rejected[0]["problems"])
    assert [(e["from"], e["to"]) for e in events if e["event"] == "templates_reloaded"] == [(v1, v2), (v2, v3)]


def test_a_domain_override_is_hot_reloaded_for_that_domain_only(server):
    override = server.settings.prompts_dir / "assistant" / "fewshot.j2"
    with server.http() as client:
        override.parent.mkdir()
        override.write_text("ASSISTANT {{ question }}")
        wait_for(lambda: chat(client)[1].startswith("ECHO<ASSISTANT "))
        override.write_text("{{ domain.nope }}")  # only rendering finds it: refused too
        wait_for(lambda: "has no attribute 'nope'" in client.get("/rag/health").json()["templates"]["detail"])
        assert chat(client)[1].startswith("ECHO<ASSISTANT ")


def test_a_server_started_with_broken_templates_says_so_and_recovers(start, project, monkeypatch):
    monkeypatch.setattr("rag_middleware.server.context.TEMPLATE_CHECK_SECONDS", 0.05)
    fewshot = project / "prompts" / "fewshot.j2"
    fewshot.write_text("{{ request }}")
    server = start("embedded", backend=EchoLLM())
    with server.http() as client:
        status, text, _ = chat(client)
        assert status == 500 and "no good template set to serve" in text and "unknown variable 'request'" in text
        health = client.get("/rag/health").json()
        assert health["status"] == "degraded" and health["templates"]["version"] is None
        assert "fewshot.j2:1: error: unknown variable 'request'" in health["templates"]["detail"]
        fewshot.write_text("{{ question }}")
        wait_for(lambda: chat(client)[:2] == (200, "ECHO<how do I sum a column?>"))
        assert client.get("/rag/health").json()["status"] == "ok"
