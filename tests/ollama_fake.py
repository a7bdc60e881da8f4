"""A fake Ollama server on 127.0.0.1 speaking enough of the protocol for POST /api/chat.

Scripted: ``enqueue`` replies, each one of
  * a str            -> a normal chat answer with that content (streamed as NDJSON when the request asks),
  * a dict           -> extra top-level fields merged into the answer, with ``content`` for the message,
  * (status, body)   -> an HTTP error with that status and JSON body,
  * Slow(seconds, x) -> wait (interruptible by ``stop``) and then answer x.
When the queue is empty it answers ``default``. Every request body is recorded in ``bodies``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOllama", "Slow", "free_port"]


@dataclass
class Slow:
    seconds: float
    reply: Any = "{}"


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
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
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
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the access log
                pass

            def _send_json(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                reply = fake._next(self.path, body)
                try:
                    if isinstance(reply, Slow):
                        if fake._stopping.wait(reply.seconds):
                            return
                        reply = reply.reply
                    if self.path != "/api/chat":
                        self._send_json(404, {"error": f"unknown path {self.path}"})
                    elif isinstance(reply, tuple):
                        self._send_json(reply[0], reply[1])
                    else:
                        extra = dict(reply) if isinstance(reply, dict) else {"content": reply}
                        content = extra.pop("content", "")
                        if body.get("stream", True):
                            self._stream(body, content, extra)
                        else:
                            self._send_json(200, fake._final(body, content, extra))
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

            def _stream(self, body: dict[str, Any], content: str, extra: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()
                pieces = [content[i : i + 5] for i in range(0, len(content), 5)]
                for piece in pieces:
                    line = {"model": body.get("model") or fake.model, "created_at": "2025-01-01T00:00:00Z",
                            "message": {"role": "assistant", "content": piece}, "done": False}
                    self.wfile.write(json.dumps(line).encode() + b"\n")
                    self.wfile.flush()
                self.wfile.write(json.dumps(fake._final(body, "", extra)).encode() + b"\n")
                self.wfile.flush()

        return Handler
