"""A fake Ollama server on 127.0.0.1 speaking enough of the protocol for POST /api/chat.

Scripted: ``enqueue`` replies, each one of
  * a str            -> a normal chat answer with that content (streamed as NDJSON when the request asks),
  * a dict           -> extra top-level fields merged into the answer, with ``content`` for the message,
  * (status, body)   -> an HTTP error with that status and JSON body,
  * Slow(seconds, x) -> wait (interruptible by ``stop``) and then answer x,
  * Trickle(text, delay) -> stream text in 5-character chunks, ``delay`` seconds apart (a slow model),
  * Broken(text, pieces, how) -> stream ``pieces`` chunks, then fail: ``how="drop"`` closes the connection in
    the middle of the body, ``how="error"`` sends one ``{"error": ...}`` line (what Ollama does mid-stream),
    ``how="eof"`` ends the body cleanly but without the done:true line.
When the queue is empty it answers ``default``. Every POST /api/chat body is recorded in ``bodies``.

A load or unload (``/api/chat`` without messages, ``/api/generate`` without a prompt) gets what Ollama answers
without touching the queue: one JSON object, ``done_reason`` "load", or "unload" with ``keep_alive: 0``.

Other paths: ``route(method, path, payload)`` answers that path with fixed bytes (a dict is sent as JSON)
without touching the queue; unrouted paths answer 404. Every request of any kind (method, path, headers,
raw body) is recorded in ``requests``. A streamed answer whose write fails because the client went away
sets ``client_gone`` and counts in ``disconnects``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Broken", "FakeOllama", "Seen", "Slow", "Trickle", "free_port"]


@dataclass
class Slow:
    seconds: float
    reply: Any = "{}"


@dataclass
class Trickle:
    content: str
    delay: float = 0.05


@dataclass
class Broken:
    content: str
    pieces: int = 3
    how: str = "drop"  # or "error" or "eof"
    error: str = "upstream model crashed"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # many concurrent clients (load tests) must not overflow the listen backlog


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening on it (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeOllama:
    def __init__(self, *, default: Any = "{}", model: str = "gemma3:270m") -> None:
        self.default = default
        self.model = model
        self.queue: deque = deque()
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.requests: list[Seen] = []
        self.routes: dict[tuple[str, str], tuple[int, str, bytes]] = {}
        self.client_gone = threading.Event()
        self.disconnects = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = False  # server_close joins the handler threads
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def enqueue(self, *replies: Any) -> FakeOllama:
        self.queue.extend(replies)
        return self

    def route(self, method: str, path: str, payload: Any, *, status: int = 200,
              content_type: str = "application/json; charset=utf-8") -> bytes:
        """Answer ``method path`` with these exact bytes (a dict/list is serialized once, here); returns them."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.routes[(method.upper(), path)] = (status, content_type, data)
        return data

    def seen(self, path: str) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def start(self) -> FakeOllama:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- protocol ------------------------------------------------------------------------------------

    def _next(self, path: str, body: dict[str, Any]) -> Any:
        with self._lock:
            self.paths.append(path)
            self.bodies.append(body)
            return self.queue.popleft() if self.queue else self.default

    def _record(self, method: str, path: str, headers: Any, raw: bytes) -> None:
        with self._lock:
            self.requests.append(Seen(method, path, {k.lower(): v for k, v in headers.items()}, raw))

    def _gone(self) -> None:
        with self._lock:
            self.disconnects += 1
        self.client_gone.set()

    def _final(self, body: dict[str, Any], content: str, extra: dict[str, Any]) -> dict[str, Any]:
        out = {
            "model": body.get("model") or self.model,
            "created_at": "2025-01-01T00:00:00.000000Z",
            "message": {"role": "assistant", "content": content},
            "done": True,
            "done_reason": "stop",
            "total_duration": 123456789,
            "load_duration": 1000,
            "prompt_eval_count": 42,
            "prompt_eval_duration": 1000,
            "eval_count": 7,
            "eval_duration": 1000,
        }
        out.update(extra)
        return out

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"fake": self})


class _Handler(BaseHTTPRequestHandler):
    """Serves one FakeOllama: ``fake`` is set on the subclass each FakeOllama makes."""

    protocol_version = "HTTP/1.0"
    fake: FakeOllama

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the access log
        pass

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _routed(self, method: str, raw: bytes) -> bool:
        self.fake._record(method, self.path, self.headers, raw)
        found = self.fake.routes.get((method, self.path.split("?")[0]))
        if found is None:
            return False
        status, content_type, data = found
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)
        return True

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if not self._routed("GET", b""):
            self._send_json(404, {"error": f"unknown path {self.path}"})

    def do_HEAD(self) -> None:  # noqa: N802 - http.server API
        if not self._routed("HEAD", b""):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def do_DELETE(self) -> None:  # noqa: N802 - http.server API
        if not self._routed("DELETE", self._read_body()):
            self._send_json(404, {"error": f"unknown path {self.path}"})

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():  # a streamed request body
            out = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return out
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        raw = self._read_body()
        if self._routed("POST", raw):
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        if self._load(body):
            return
        reply = self.fake._next(self.path, body)
        try:
            self._reply(body, reply)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            self.fake._gone()

    def _reply(self, body: dict[str, Any], reply: Any) -> None:
        """Answer with the scripted ``reply`` (after its delay, for a Slow one); only /api/chat is scripted."""
        if isinstance(reply, Slow):
            if self.fake._stopping.wait(reply.seconds):
                return
            reply = reply.reply
        if self.path != "/api/chat":
            self._send_json(404, {"error": f"unknown path {self.path}"})
        elif isinstance(reply, Trickle):
            self._stream(body, reply.content, {}, delay=reply.delay)
        elif isinstance(reply, Broken):
            self._broken(body, reply)
        elif isinstance(reply, tuple):
            self._send_json(reply[0], reply[1])
        else:
            extra = dict(reply) if isinstance(reply, dict) else {"content": reply}
            content = extra.pop("content", "")
            if body.get("stream", True):
                self._stream(body, content, extra)
            else:
                self._send_json(200, self.fake._final(body, content, extra))

    def _load(self, body: dict[str, Any]) -> bool:
        if self.path not in ("/api/chat", "/api/generate") or body.get("messages") or body.get("prompt"):
            return False
        with self.fake._lock:
            self.fake.paths.append(self.path)
            self.fake.bodies.append(body)
        unload = body.get("keep_alive") in (0, "0", "0s")
        content = {"message": {"role": "assistant", "content": ""}} if self.path == "/api/chat" else {
            "response": ""}
        self._send_json(200, {"model": body.get("model") or self.fake.model, "created_at": "2025-01-01T00:00:00Z",
                              **content, "done_reason": "unload" if unload else "load", "done": True})
        return True

    def _piece(self, body: dict[str, Any], piece: str) -> bytes:
        line = {"model": body.get("model") or self.fake.model, "created_at": "2025-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": piece}, "done": False}
        return json.dumps(line).encode() + b"\n"

    def _stream(self, body: dict[str, Any], content: str, extra: dict[str, Any], delay: float = 0.0) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        pieces = [content[i : i + 5] for i in range(0, len(content), 5)]
        for piece in pieces:
            self.wfile.write(self._piece(body, piece))
            self.wfile.flush()
            if delay and self.fake._stopping.wait(delay):
                return
        self.wfile.write(json.dumps(self.fake._final(body, "", extra)).encode() + b"\n")
        self.wfile.flush()

    def _broken(self, body: dict[str, Any], reply: Broken) -> None:
        pieces = [reply.content[i : i + 5] for i in range(0, len(reply.content), 5)][: reply.pieces]
        data = b"".join(self._piece(body, p) for p in pieces)
        if reply.how == "error":
            data += json.dumps({"error": reply.error}).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        if reply.how == "drop":  # promise more than is sent, then hang up: a truncated body
            self.send_header("Content-Length", str(len(data) + 4096))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
