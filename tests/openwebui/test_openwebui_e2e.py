"""Open WebUI in front of ``rag-middleware serve --upstream embedded``, driven through Open WebUI's own API.

Run with ``make test-openwebui`` (it installs Open WebUI into .venv-owui first). Covers: the model list through
Open WebUI, a plain chat with an upstream model, a domain chat, a rating that reaches our feedback through
``feedback sync`` (and a second sync that changes nothing), and a screenshot of the chat in headless Chromium,
saved to docs/img/open-webui-chat.png.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

if os.environ.get("RAG_MW_OPENWEBUI") != "1":  # two servers and a 3 GB install: not for make test
    pytest.skip("end to end through Open WebUI: run make test-openwebui", allow_module_level=True)

pytestmark = pytest.mark.openwebui

ROOT = Path(__file__).resolve().parents[2]
OWUI = ROOT / ".venv-owui" / "bin" / "open-webui"
RAG = Path(sys.executable).parent / "rag-middleware"
SHOT = ROOT / "docs" / "img" / "open-webui-chat.png"
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
                 if os.path.exists(p)), None)
QUESTION = "Columns: region, amount\nSort the rows by amount, largest first"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"{url} not up after {timeout:g}s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not OWUI.exists():
        pytest.fail("Open WebUI is not installed: run make test-openwebui (it installs .venv-owui)")
    work = tmp_path_factory.mktemp("owui")
    ours, theirs = free_port(), free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    rag_log = (work / "rag.log").open("w")
    rag = subprocess.Popen([str(RAG), "--data-dir", str(work / "data"), "serve", "--port", str(ours),
                            "--upstream", "embedded"], cwd=ROOT, env=env, stdout=rag_log, stderr=subprocess.STDOUT)
    owui_env = {**env, "OLLAMA_BASE_URL": f"http://127.0.0.1:{ours}", "OFFLINE_MODE": "true", "WEBUI_AUTH": "False",
                "ENABLE_OPENAI_API": "False", "DATA_DIR": str(work / "owui"), "WEBUI_SECRET_KEY": uuid.uuid4().hex,
                "ENABLE_VERSION_UPDATE_CHECK": "False", "ANONYMIZED_TELEMETRY": "False", "DO_NOT_TRACK": "true"}
    owui_log = (work / "owui.log").open("w")
    owui = subprocess.Popen([str(OWUI), "serve", "--host", "127.0.0.1", "--port", str(theirs)], cwd=work,
                            env=owui_env, stdout=owui_log, stderr=subprocess.STDOUT)
    try:
        wait_up(f"http://127.0.0.1:{ours}/rag/health", rag, work / "rag.log", 300)
        wait_up(f"http://127.0.0.1:{theirs}/health", owui, work / "owui.log", 300)
        signin = httpx.post(f"http://127.0.0.1:{theirs}/api/v1/auths/signin", json={"email": "", "password": ""},
                            timeout=60)
        assert signin.status_code == 200, signin.text
        yield {"ours": ours, "url": f"http://127.0.0.1:{theirs}", "token": signin.json()["token"], "work": work}
    finally:
        stop(owui)
        stop(rag)
        rag_log.close()
        owui_log.close()


def api(stack, method: str, path: str, **kw) -> httpx.Response:
    response = httpx.request(method, stack["url"] + path, headers={"Authorization": f"Bearer {stack['token']}"},
                             timeout=600, **kw)
    assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text[:500]}"
    return response


def completion(stack, model: str, question: str) -> str:
    body = api(stack, "POST", "/api/chat/completions",
               json={"model": model, "messages": [{"role": "user", "content": question}], "stream": False}).json()
    return body["choices"][0]["message"]["content"]


def save_chat(stack, model: str, question: str, answer: str) -> tuple[str, str]:
    """The chat as Open WebUI's page saves it; (chat id, assistant message id)."""
    now = int(time.time())
    uid, aid = str(uuid.uuid4()), str(uuid.uuid4())
    user = {"id": uid, "parentId": None, "childrenIds": [aid], "role": "user", "content": question,
            "timestamp": now, "models": [model]}
    reply = {"id": aid, "parentId": uid, "childrenIds": [], "role": "assistant", "content": answer, "model": model,
             "modelName": model, "modelIdx": 0, "timestamp": now + 1, "done": True}
    chat = {"title": "Sorting by amount", "models": [model], "params": {}, "tags": [], "files": [],
            "history": {"messages": {uid: user, aid: reply}, "currentId": aid}, "messages": [user, reply],
            "timestamp": now * 1000}
    created = api(stack, "POST", "/api/v1/chats/new", json={"chat": chat}).json()
    return created["id"], aid


def rate(stack, chat_id: str, message_id: str, model: str, value: int, comment: str = "") -> None:
    chat = api(stack, "GET", f"/api/v1/chats/{chat_id}").json()
    data = {"rating": value, "model_id": model, "reason": "", "comment": comment, "tags": [],
            "details": {"rating": 9 if value > 0 else 2}}
    api(stack, "POST", "/api/v1/evaluations/feedback", json={
        "type": "rating", "data": data, "snapshot": {"chat": chat},
        "meta": {"arena": False, "model_id": model, "message_id": message_id, "message_index": 2, "chat_id": chat_id}})
    body = chat["chat"]
    body["history"]["messages"][message_id]["annotation"] = data  # what the page shows as the chosen thumb
    api(stack, "POST", f"/api/v1/chats/{chat_id}", json={"chat": body})


def sync(stack) -> list[dict]:
    proc = subprocess.run([str(RAG), "--data-dir", str(stack["work"] / "data"), "feedback", "sync",
                           "--from-openwebui", stack["url"], "--token", stack["token"], "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_models_plain_chat_domain_chat_rating_sync_and_screenshot(stack):
    models = [m["id"] for m in api(stack, "GET", "/api/models").json()["data"]]
    assert "data_ops:latest" in models, models
    ours = httpx.get(f"http://127.0.0.1:{stack['ours']}/api/tags", timeout=30).json()["models"]
    upstream = next(m["name"] for m in ours if not (m.get("details") or {}).get("parent_model"))
    assert upstream in models, (upstream, models)

    plain = completion(stack, upstream, "Say hello in one short sentence.")
    assert plain.strip()

    answer = completion(stack, "data_ops:latest", QUESTION)
    plan = json.loads(answer)  # a validated data_ops plan, not prose
    assert plan["operations"], answer
    chat_id, message_id = save_chat(stack, "data_ops:latest", QUESTION, answer)
    rate(stack, chat_id, message_id, "data_ops:latest", 1)

    rows = sync(stack)
    [row] = [r for r in rows if r["key"] == f"{chat_id}/{message_id}"]
    assert (row["action"], row["outcome"], row["matched_by"]) == ("approve", "applied", "question+answer")
    record = httpx.get(f"http://127.0.0.1:{stack['ours']}/rag/interactions/{row['interaction_id']}", timeout=30)
    assert record.status_code == 200 and record.json()["question"].strip() == QUESTION.strip()
    again = [r for r in sync(stack) if r["key"] == row["key"]]
    assert again[0]["outcome"] == "already synced"

    if CHROMIUM is None:
        pytest.skip("headless Chromium is not installed: no screenshot")
    api(stack, "POST", "/api/v1/users/user/settings/update", json={"ui": {"showChangelog": False}})  # no "What's new"
    shot = stack["work"] / "chat.png"
    profile = stack["work"] / "chromium"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--window-size=1280,800", "--force-prefers-reduced-motion", "--run-all-compositor-stages-before-draw",
         "--virtual-time-budget=60000", f"--screenshot={shot}",
         f"{stack['url']}/c/{chat_id}"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and shot.exists() and shot.stat().st_size > 20_000, proc.stderr[-2000:]
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SHOT)
