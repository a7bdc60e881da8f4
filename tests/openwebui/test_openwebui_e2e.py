"""Open WebUI in front of ``rag-middleware serve --upstream embedded``, driven through Open WebUI's own API.

Run with ``make test-openwebui`` (it installs Open WebUI into .venv-owui first). Covers: the model list through
Open WebUI, a plain chat with an upstream model, a domain chat and a domain chat with an attached file (both in
chats Open WebUI saves itself, with its chat and message ids forwarded to our server as headers), the file's
text routed as retrieved context of a domain request, ratings that reach our feedback through ``feedback sync``
mapped by those ids (and a second sync that changes nothing), and a screenshot of the file chat in headless
Chromium, saved to docs/img/open-webui-chat.png.

Open WebUI runs offline: ``BYPASS_EMBEDDING_AND_RETRIEVAL=true`` puts an attached file's whole text into its RAG
template, so no embedding model is needed.
"""

from __future__ import annotations

import base64
import json
import os
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
MODEL = "data_ops:latest"
QUESTION = "Columns: region, amount\nSort the rows by amount, largest first"
FILE_NAME = "sales.csv"
FILE_TEXT = "region,amount\nnorth,120\nsouth,75\neast,98\n"
FILE_QUESTION = QUESTION  # asked twice, in two chats: only Open WebUI's ids tell the two answers apart
# the settings docs/open-webui.md gives: the ids forwarded as headers (the message id as a connection header),
# an attached file's text used whole (no embedding model offline)
OWUI_SETTINGS = {
    "OFFLINE_MODE": "true", "WEBUI_AUTH": "False", "ENABLE_OPENAI_API": "False",
    "ENABLE_FORWARD_USER_INFO_HEADERS": "true",
    "OLLAMA_API_CONFIGS": json.dumps({"0": {"headers": {"X-OpenWebUI-Message-Id": "{{MESSAGE_ID}}"}}}),
    "BYPASS_EMBEDDING_AND_RETRIEVAL": "true", "ENABLE_RETRIEVAL_QUERY_GENERATION": "False",
}


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
    owui_env = {**env, **OWUI_SETTINGS, "OLLAMA_BASE_URL": f"http://127.0.0.1:{ours}", "DATA_DIR": str(work / "owui"),
                "WEBUI_SECRET_KEY": uuid.uuid4().hex, "ENABLE_VERSION_UPDATE_CHECK": "False",
                "ANONYMIZED_TELEMETRY": "False", "DO_NOT_TRACK": "true"}
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
                             timeout=900, **kw)
    assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text[:500]}"
    return response


def ours(stack, path: str) -> dict:
    response = httpx.get(f"http://127.0.0.1:{stack['ours']}{path}", timeout=30)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
    return response.json()


def completion(stack, model: str, question: str, max_tokens: int) -> str:
    """A request outside any chat (Open WebUI's API used directly, as a script would); ``max_tokens`` becomes
    Ollama's ``num_predict`` (it wins over the embedded model's ``server.plain_num_predict``)."""
    body = api(stack, "POST", "/api/chat/completions",
               json={"model": model, "messages": [{"role": "user", "content": question}], "stream": False,
                     "max_tokens": max_tokens}).json()
    return body["choices"][0]["message"]["content"]


def upload(stack, name: str, text: str) -> dict:
    """A file attached as the chat page attaches it: uploaded, its text extracted (no embedding, see above)."""
    return api(stack, "POST", "/api/v1/files/", params={"process_in_background": "false"},
               files={"file": (name, text.encode(), "text/csv")}).json()


def chat_turn(stack, model: str, question: str, title: str, files: list[dict] | None = None) -> tuple[str, str, str]:
    """One turn of a chat Open WebUI saves itself, sent as its chat page sends it (the chat, the user's message
    and the id of the answer to come); (chat id, answer's message id, answer)."""
    created = api(stack, "POST", "/api/v1/chats/new", json={"chat": {
        "title": title, "models": [model], "params": {}, "tags": [], "files": [],
        "history": {"messages": {}, "currentId": None}, "messages": [], "timestamp": int(time.time() * 1000)}}).json()
    user_id, answer_id = str(uuid.uuid4()), str(uuid.uuid4())
    items = [{"type": "file", "id": f["id"], "name": f["filename"], "file": f, "status": "uploaded",
              "size": (f.get("meta") or {}).get("size"), "url": f"/api/v1/files/{f['id']}",
              "itemId": str(uuid.uuid4())} for f in files or []]
    user_message = {"id": user_id, "parentId": None, "childrenIds": [], "role": "user", "content": question,
                    "timestamp": int(time.time()), "models": [model], **({"files": items} if items else {})}
    body = api(stack, "POST", "/api/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": question}], "stream": False,
        "chat_id": created["id"], "id": answer_id, "parent_id": None, "user_message": user_message,
        **({"files": items} if items else {})}).json()
    answer = body["choices"][0]["message"]["content"]
    saved = api(stack, "GET", f"/api/v1/chats/{created['id']}").json()["chat"]["history"]["messages"]
    assert saved[answer_id]["content"] == answer and saved[answer_id]["parentId"] == user_id, saved
    return created["id"], answer_id, answer


def rate(stack, chat_id: str, message_id: str, model: str, value: int, comment: str = "") -> None:
    """A thumbs up or down as the chat page gives it: the feedback record, then the annotation on the message."""
    chat = api(stack, "GET", f"/api/v1/chats/{chat_id}").json()
    data = {"rating": value, "model_id": model, "reason": "", "comment": comment, "tags": [],
            "details": {"rating": 9 if value > 0 else 2}}
    feedback = api(stack, "POST", "/api/v1/evaluations/feedback", json={
        "type": "rating", "data": data, "snapshot": {"chat": chat},
        "meta": {"arena": False, "model_id": model, "message_id": message_id, "message_index": 2,
                 "chat_id": chat_id}}).json()
    body = chat["chat"]
    body["history"]["messages"][message_id].update(annotation=data, feedbackId=feedback["id"])
    api(stack, "POST", f"/api/v1/chats/{chat_id}", json={"chat": body})


def sync(stack) -> list[dict]:
    proc = subprocess.run([str(RAG), "--data-dir", str(stack["work"] / "data"), "feedback", "sync",
                           "--from-openwebui", stack["url"], "--token", stack["token"], "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def route_of(stack, interaction_id: str) -> dict:
    """Our server's log line of the request that recorded the interaction."""
    for line in (stack["work"] / "rag.log").read_text().splitlines():
        if line.startswith("{") and f'"interaction_id": "{interaction_id}"' in line:
            return json.loads(line)
    raise AssertionError(f"no log line for {interaction_id}")


class DevTools:
    """Just enough of the Chrome DevTools protocol to load a page in real time (Chromium's --screenshot runs on
    virtual time, which outruns Open WebUI's socket: a "Reconnected" toast then covers the page), wait for what
    it must show, and capture it."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0

    @staticmethod
    def page_url(port: int) -> str:
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=30).json()
        return next(p["webSocketDebuggerUrl"] for p in pages if p.get("type") == "page")

    def __call__(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=120))
            if reply.get("id") == self.next_id:
                assert "error" not in reply, (method, reply["error"])
                return reply.get("result", {})

    def evaluate(self, expression: str):
        try:
            return self("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")
        except AssertionError:  # the page is between documents
            return None


def screenshot(stack, chat_id: str, shows: list[str]) -> None:
    """The chat page in headless Chromium, once its text includes every string of ``shows``, without toasts."""
    from websockets.sync.client import connect

    api(stack, "POST", "/api/v1/users/user/settings/update", json={"ui": {"showChangelog": False}})  # no "What's new"
    profile = stack["work"] / "chromium"
    browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--window-size=1280,800", "--force-prefers-reduced-motion", "--hide-scrollbars",
         "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline and browser.poll() is None, "Chromium did not start"
            time.sleep(0.5)
        url = DevTools.page_url(int(port_file.read_text().split()[0]))
        with connect(url, max_size=None, open_timeout=30) as ws:
            tools = DevTools(ws)
            tools("Emulation.setDeviceMetricsOverride", width=1280, height=800, deviceScaleFactor=1, mobile=False)
            tools("Page.navigate", url=f"{stack['url']}/c/{chat_id}")
            check = " && ".join(f"document.body.innerText.includes({json.dumps(text)})" for text in shows)
            deadline = time.monotonic() + 180
            while not tools.evaluate(f"!!document.body && {check}"):
                assert time.monotonic() < deadline, tools.evaluate("document.body && document.body.innerText")
                time.sleep(1)
            time.sleep(3)  # fonts, icons and the rating's highlight settle
            tools.evaluate("document.querySelectorAll('[data-sonner-toast]').forEach(t => t.remove())")
            png = base64.b64decode(tools("Page.captureScreenshot", format="png")["data"])
    finally:
        stop(browser)
    assert len(png) > 20_000
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    SHOT.write_bytes(png)


def test_models_chats_attached_file_ratings_sync_and_screenshot(stack):
    models = [m["id"] for m in api(stack, "GET", "/api/models").json()["data"]]
    assert MODEL in models, models
    listed = ours(stack, "/api/tags")["models"]
    upstream = next(m["name"] for m in listed if not (m.get("details") or {}).get("parent_model"))
    assert upstream in models, (upstream, models)

    # a plain chat with the upstream model: passed through
    plain = completion(stack, upstream, "Say hello in one short sentence.", max_tokens=40)
    assert plain.strip()

    # a domain chat: the answer is a validated data_ops plan, not prose
    chat_id, message_id, answer = chat_turn(stack, MODEL, QUESTION, "Sorting by amount")
    assert json.loads(answer)["operations"], answer

    # a domain chat with an attached file: Open WebUI's RAG template around the question, routed as a domain
    # request on the question, the file's text kept as context for our templates
    uploaded = upload(stack, FILE_NAME, FILE_TEXT)
    file_chat, file_message, file_answer = chat_turn(stack, MODEL, FILE_QUESTION, "Sales by amount",
                                                     files=[uploaded])
    assert json.loads(file_answer)["operations"], file_answer

    rate(stack, chat_id, message_id, MODEL, 1)
    rate(stack, file_chat, file_message, MODEL, 1, comment="right order")

    rows = {r["key"]: r for r in sync(stack)}
    domain_row, file_row = rows[f"{chat_id}/{message_id}"], rows[f"{file_chat}/{file_message}"]
    for row in (domain_row, file_row):
        assert (row["action"], row["outcome"], row["matched_by"]) == ("approve", "applied", "chat+message"), row
    assert domain_row["interaction_id"] != file_row["interaction_id"]

    record = ours(stack, f"/rag/interactions/{file_row['interaction_id']}")
    assert record["question"].strip() == FILE_QUESTION and record["status"] == "validated", record
    assert record["request"]["openwebui"]["chat_id"] == file_chat
    assert record["request"]["openwebui"]["message_id"] == file_message
    context = [m["content"] for m in record["request"]["input"] if m["role"] == "system"]
    assert any(c.startswith("Context:") and "north" in c and FILE_NAME in c for c in context), record["request"]
    assert "### Task:" not in json.dumps(record["request"]["input"])  # Open WebUI's template is not the question
    rendered = record["attempts"][0]
    assert "north" in (rendered.get("prompt") or json.dumps(rendered["messages"])), rendered
    assert route_of(stack, file_row["interaction_id"])["route"].endswith("(a question with retrieved context)")
    plain_record = ours(stack, f"/rag/interactions/{domain_row['interaction_id']}")
    assert plain_record["question"].strip() == QUESTION and plain_record["request"]["openwebui"] == {
        "chat_id": chat_id, "message_id": message_id, "user_id": record["request"]["openwebui"]["user_id"]}

    again = {r["key"]: r for r in sync(stack)}
    assert again[domain_row["key"]]["outcome"] == again[file_row["key"]]["outcome"] == "already synced"

    if CHROMIUM is None:
        pytest.skip("headless Chromium is not installed: no screenshot")
    screenshot(stack, file_chat, shows=[FILE_NAME, "pandas.DataFrame.sort_values"])
