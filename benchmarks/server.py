"""What the drop-in server costs on top of Ollama: added latency and throughput, against a fast fake upstream.

Three kinds of process, all on 127.0.0.1, each its own interpreter (``multiprocessing`` spawn), so none shares
a GIL with another:

- **the fake upstream**: a minimal raw-asyncio (uvloop when installed) HTTP/1.1 server speaking just enough of
  Ollama's protocol: ``POST /api/chat`` and ``/api/generate`` (JSON, or chunked NDJSON when the body does not
  say ``"stream": false``), ``GET /api/tags``, ``/api/version`` and ``/``. Every answer is a fixed, pre-encoded
  reply whose content is a valid data_ops ActionPlan (``sort by a``), so the model time is zero unless the
  request carries ``X-Bench-Delay-Ms: <ms>`` (the server passes that header through), in which case the
  upstream answers after ``loop.call_later(ms)`` -- simulated model time that costs the upstream no CPU.
- **our server**: ``create_app`` from ``rag_middleware.server`` run by uvicorn (the same ``uvicorn.run``
  arguments as ``rag-middleware serve``: ``access_log=False``, our own structured access log at ``--log-level``,
  default ``info`` as the CLI's default, written to a file) on a factory defined here: :func:`hash_app` builds
  ``create_app(settings, middleware=Middleware(settings, embedder=HashEmbedder(), token_counter=ApproxTokenCounter()))``
  with ``llm.backend="ollama"``, ``llm.ollama_host`` = ``server.upstream`` = the fake upstream, learn on and a
  fresh temporary data dir; :func:`minilm_app` is the same with the real all-MiniLM-L6-v2 embedder.
  Either can also be served by hand: ``BENCH_UPSTREAM=http://127.0.0.1:PORT BENCH_DATA_DIR=/tmp/x
  uvicorn --app-dir benchmarks server:hash_app --factory``.
- **this process**: the load generator (httpx, on uvloop when installed).

Measurements:

1. *Latency added* (sequential, one keep-alive ``httpx.Client`` per target, warm-up first, direct and
   through-server requests interleaved so drift hits both alike): p50/p95 of the through-server latency minus
   p50/p95 of the same request sent straight to the upstream, for

   - passthrough: ``POST /api/chat`` naming the non-domain model ``gemma3:270m`` (``stream: false``, and
     also ``stream: true`` as an extra row without a target);
   - augmented: ``POST /api/chat`` naming ``data_ops:latest`` with ``Columns: a, b, note_<i>\\nsort by a``
     (every text new, so every embedding is really computed), which runs the whole pipeline -- embed, kNN,
     MMR, render, one Ollama call (answered at once with a valid plan), validation, journal and memory
     writes; the direct baseline is one plain chat call to the upstream. With ``HashEmbedder`` and, unless
     ``--skip-minilm``, with the real MiniLM embedder (a separate server process).

2. *Throughput* of passthrough: ``--concurrency`` asyncio workers, each with its own ``httpx.AsyncClient``
   (one keep-alive connection; see :func:`_load` for why not one shared client), each sending the next
   request as soon as the last one is answered (the first ones staggered over one model time), for ``--seconds``
   after a 1 s warm-up; through-server req/s divided by direct req/s. Run with simulated model time
   ``--delay-ms`` (default 50 ms; a comma-separated list gives several runs: the target is judged on each) and
   again with zero delay.

   Why the delay: the machine has 2 cores. With a zero-delay upstream, "direct" is client + upstream
   spinning as fast as Python can, and adding the server adds a third CPU-bound process on the same 2 cores,
   so the zero-delay ratio mostly says how the cores are shared, not what a real deployment (where the model
   takes tens of ms to seconds) loses. With a fixed delay d and c clients the ideal is c/d req/s; the ratio
   then shows the server's extra latency and whether its CPU keeps up at that rate. ``direct/ideal`` shows how
   close the direct run gets to c/d (well below 1 means the client or upstream is the limit, and the ratio then
   measures core sharing rather than the server). The CPU each process used during the window (% of one
   core, from /proc) and the server's CPU time per request are printed alongside, and so is the CPU every *other*
   process on the machine used: on a shared machine the numbers are only meaningful when that is near zero.

Targets: passthrough adds <= 3 ms at p50; through/direct throughput >= 0.9 at 32 concurrent clients (with the
simulated model time). ``--check`` makes the exit status 1 when a target is missed.

Usage::

    python benchmarks/server.py
    python benchmarks/server.py --requests 1000 --concurrency 32 --seconds 15 --delay-ms 20,50,100 --check
    python benchmarks/server.py --skip-minilm --profile-server /tmp/server.prof   # cProfile of the server loop
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import os
import platform
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

UPSTREAM_MODEL = "gemma3:270m"
DOMAIN_MODEL = "data_ops:latest"
PLAN = {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "a", "ascending": True}}}]}
PLAN_TEXT = json.dumps(PLAN)
DELAY_HEADER = "X-Bench-Delay-Ms"
TARGET_PASSTHROUGH_P50_MS = 3.0
TARGET_THROUGHPUT_RATIO = 0.9
CLK_TCK = os.sysconf("SC_CLK_TCK")

console = Console(width=max(Console().width, 200))


# -- the fast fake upstream ---------------------------------------------------------------------------

def _http(status: str, content_type: str, body: bytes, *, chunked: bool = False) -> bytes:
    if chunked:
        head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        return head + body
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    return head + body


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _content(kind: str, text: str) -> dict[str, Any]:
    """The answer field of a chat or a generate reply."""
    return {"message": {"role": "assistant", "content": text}} if kind == "chat" else {"response": text}


def _replies() -> dict[str, bytes]:
    """Every answer the fake upstream gives, encoded once."""
    created = "2025-01-01T00:00:00.000000Z"
    metrics = {"done_reason": "stop", "total_duration": 1000, "load_duration": 0, "prompt_eval_count": 42,
               "prompt_eval_duration": 500, "eval_count": 40, "eval_duration": 500}
    out: dict[str, bytes] = {}
    for kind in ("chat", "generate"):
        content = partial(_content, kind)
        final = {"model": UPSTREAM_MODEL, "created_at": created, **content(PLAN_TEXT), "done": True, **metrics}
        out[f"{kind}-json"] = _http("200 OK", "application/json; charset=utf-8", json.dumps(final).encode())
        pieces = [PLAN_TEXT[i : i + 40] for i in range(0, len(PLAN_TEXT), 40)]
        lines = [json.dumps({"model": UPSTREAM_MODEL, "created_at": created, **content(p), "done": False}).encode()
                 + b"\n" for p in pieces]
        lines.append(json.dumps({"model": UPSTREAM_MODEL, "created_at": created, **content(""), "done": True,
                                 **metrics}).encode() + b"\n")
        body = b"".join(_chunk(x) for x in lines) + b"0\r\n\r\n"
        out[f"{kind}-stream"] = _http("200 OK", "application/x-ndjson", body, chunked=True)
    tags = {"models": [{"name": UPSTREAM_MODEL, "model": UPSTREAM_MODEL, "modified_at": created, "size": 291554930,
                        "digest": "e" * 64, "details": {"format": "gguf", "family": "gemma3", "parameter_size": "268M",
                                                       "quantization_level": "Q8_0"}}]}
    out["tags"] = _http("200 OK", "application/json; charset=utf-8", json.dumps(tags).encode())
    out["version"] = _http("200 OK", "application/json; charset=utf-8", b'{"version":"0.12.0"}')
    out["root"] = _http("200 OK", "text/plain; charset=utf-8", b"Ollama is running")
    out["404"] = _http("404 Not Found", "application/json; charset=utf-8", b'{"error":"not found"}')
    out["400"] = _http("400 Bad Request", "application/json; charset=utf-8", b'{"error":"bad request"}')
    return out


_STREAM_FALSE = re.compile(rb'"stream"\s*:\s*false')


class _FakeOllamaProtocol(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection. Requests are parsed by hand (Content-Length or chunked bodies)."""

    def __init__(self, replies: dict[str, bytes], default_delay_ms: float) -> None:
        self.replies = replies
        self.default_delay_ms = default_delay_ms
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            while self._one_request():
                pass
        except (ValueError, IndexError):
            self._write(self.replies["400"], True)

    def _one_request(self) -> bool:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(buf[:end]).split(b"\r\n")
        method, target, _ = lines[0].split(b" ", 2)
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            key, _, value = line.partition(b":")
            headers[key.strip().lower()] = value.strip()
        start = end + 4
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            body, pos = bytearray(), start
            while True:
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    return False
                size = int(bytes(buf[pos:nl]).split(b";")[0], 16)
                if size == 0:  # the last chunk, then optional trailer lines, then an empty line
                    if len(buf) < nl + 4:
                        return False
                    if buf[nl + 2 : nl + 4] == b"\r\n":
                        consumed = nl + 4
                    else:
                        trailers_end = buf.find(b"\r\n\r\n", nl + 2)
                        if trailers_end < 0:
                            return False
                        consumed = trailers_end + 4
                    break
                if len(buf) < nl + 2 + size + 2:
                    return False
                body += buf[nl + 2 : nl + 2 + size]
                pos = nl + 2 + size + 2
            body = bytes(body)
        else:
            length = int(headers.get(b"content-length", b"0") or 0)
            if len(buf) < start + length:
                return False
            body = bytes(buf[start : start + length])
            consumed = start + length
        del buf[:consumed]
        self._respond(method, target.split(b"?", 1)[0], headers, body)
        return True

    def _respond(self, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes) -> None:
        close = headers.get(b"connection", b"").lower() == b"close"
        if method == b"POST" and path in (b"/api/chat", b"/api/generate"):
            kind = "chat" if path == b"/api/chat" else "generate"
            reply = self.replies[f"{kind}-json" if _STREAM_FALSE.search(body) else f"{kind}-stream"]
            raw_delay = headers.get(b"x-bench-delay-ms")
            delay = float(raw_delay) if raw_delay else self.default_delay_ms
            if delay > 0:
                self.loop.call_later(delay / 1000.0, self._write, reply, close)
                return
        elif method == b"GET" and path == b"/api/tags":
            reply = self.replies["tags"]
        elif method in (b"GET", b"HEAD") and path == b"/api/version":
            reply = self.replies["version"]
        elif method in (b"GET", b"HEAD") and path == b"/":
            reply = self.replies["root"]
        else:
            reply = self.replies["404"]
        self._write(reply, close)

    def _write(self, reply: bytes, close: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(reply)
        if close:
            self.transport.close()


async def _serve_upstream(port: int, default_delay_ms: float) -> None:
    loop = asyncio.get_running_loop()
    replies = _replies()
    server = await loop.create_server(lambda: _FakeOllamaProtocol(replies, default_delay_ms), "127.0.0.1", port,
                                      backlog=1024, reuse_address=True)
    async with server:
        await server.serve_forever()


def run_async(coro: Any) -> Any:
    """uvloop when installed (as uvicorn uses it for our server), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _upstream_main(port: int, default_delay_ms: float) -> None:
    """Process entry point of the fake upstream (stopped with SIGINT)."""
    with contextlib.suppress(KeyboardInterrupt):
        run_async(_serve_upstream(port, default_delay_ms))


# -- our server, as uvicorn factories -----------------------------------------------------------------

def _settings():
    from rag_middleware import load_settings

    upstream = os.environ["BENCH_UPSTREAM"]
    return load_settings(
        data_dir=os.environ["BENCH_DATA_DIR"], knowledge_base=ROOT / "knowledge_base", prompts_dir=ROOT / "prompts",
        learn=True, llm={"backend": "ollama", "ollama_host": upstream},
        server={"upstream": upstream, "host": "127.0.0.1"},
    )


def hash_app():
    """uvicorn factory: the server with the tests' HashEmbedder and the approximate token counter."""
    from conftest import HashEmbedder

    from rag_middleware import Middleware
    from rag_middleware.server import create_app
    from rag_middleware.llm.tokens import ApproxTokenCounter

    settings = _settings()
    return create_app(settings, middleware=Middleware(settings, embedder=HashEmbedder(),
                                                      token_counter=ApproxTokenCounter()))


def minilm_app():
    """uvicorn factory: the same with the real (packaged) all-MiniLM-L6-v2 embedder."""
    from rag_middleware import Middleware
    from rag_middleware.memory.embedding import SentenceTransformerEmbedder
    from rag_middleware.server import create_app
    from rag_middleware.llm.tokens import ApproxTokenCounter

    settings = _settings()
    embedder = SentenceTransformerEmbedder(settings.embedding.model, batch_size=settings.embedding.batch_size,
                                           device=settings.embedding.device)
    return create_app(settings, middleware=Middleware(settings, embedder=embedder, token_counter=ApproxTokenCounter()))


FACTORIES: dict[str, Callable[[], Any]] = {"hash": hash_app, "minilm": minilm_app}


def _server_main(factory: str, port: int, upstream: str, data_dir: str, log_level: str, log_file: str,
                 profile: str | None) -> None:
    """Process entry point of our server: as ``rag-middleware serve`` runs it, on one of the factories."""
    import uvicorn

    os.environ["BENCH_UPSTREAM"] = upstream
    os.environ["BENCH_DATA_DIR"] = data_dir
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO), format="%(message)s", force=True,
                        filename=log_file)
    config = uvicorn.Config(FACTORIES[factory], factory=True, host="127.0.0.1", port=port, log_level=log_level,
                            access_log=False, timeout_graceful_shutdown=3, log_config=None)
    server = uvicorn.Server(config)
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        try:
            server.run()
        except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it handled
            pass
        finally:
            prof.disable()
            prof.dump_stats(profile)
    else:
        with contextlib.suppress(KeyboardInterrupt):
            server.run()


# -- process plumbing ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: mp.process.BaseProcess, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.is_alive():
            raise RuntimeError(f"the process behind {url} exited with code {proc.exitcode}")
        try:
            if httpx.get(url, timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


def stop(proc: mp.process.BaseProcess) -> None:
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGINT)  # as Ctrl-C: uvicorn shuts down gracefully (and a profile is written)
        proc.join(10)
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join(5)


def system_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle, not iowait) since boot, from /proc/stat."""
    with open("/proc/stat", "rb") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK  # user nice system idle iowait irq softirq steal


def background_load(seconds: float = 1.0) -> float:
    """% of one core used by everything on the machine over ``seconds`` (call while we are idle)."""
    busy0, t0 = system_busy_seconds(), time.perf_counter()
    time.sleep(seconds)
    return 100.0 * (system_busy_seconds() - busy0) / (time.perf_counter() - t0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# -- measurements -------------------------------------------------------------------------------------

JSON_HEADERS = {"Content-Type": "application/json"}


def chat_body(model: str, text: str, *, stream: bool) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}).encode()


def augmented_text(i: int) -> str:
    return f"Columns: a, b, note_{i}\nsort by a"


@dataclass
class Scenario:
    name: str
    direct_body: Callable[[int], bytes]
    through_body: Callable[[int], bytes]
    check: Callable[[httpx.Response], str | None]  # an error message, or None
    target_ms: float | None = None


def check_plain(response: httpx.Response) -> str | None:
    if response.status_code != 200:
        return f"status {response.status_code}: {response.text[:200]}"
    return None


def check_plan(response: httpx.Response) -> str | None:
    if response.status_code != 200:
        return f"status {response.status_code}: {response.text[:200]}"
    if response.headers.get("x-rag-valid") == "false":
        return "the server answered X-RAG-Valid: false"
    try:
        plan = json.loads(response.json()["message"]["content"])
    except (ValueError, KeyError, TypeError) as exc:
        return f"not an Ollama chat answer with a JSON plan: {exc}"
    return None if plan == PLAN else f"unexpected plan {plan}"


@dataclass
class LatencyResult:
    name: str
    direct: np.ndarray
    through: np.ndarray
    errors: list[str] = field(default_factory=list)
    target_ms: float | None = None
    server_cpu_ms: float = 0.0  # CPU time of the server process (all threads) per request

    def p(self, which: str, q: float) -> float:
        return float(np.percentile(getattr(self, which), q))

    def added(self, q: float) -> float:
        return self.p("through", q) - self.p("direct", q)

    @property
    def passed(self) -> bool | None:
        if self.target_ms is None:
            return None
        return not self.errors and self.added(50) <= self.target_ms


def measure_latency(sc: Scenario, direct_url: str, server_url: str, server_pid: int, *, n: int,
                    warmup: int) -> LatencyResult:
    errors: list[str] = []
    direct_ms, through_ms = np.empty(n), np.empty(n)
    headers = {**JSON_HEADERS, DELAY_HEADER: "0"}
    with httpx.Client(base_url=direct_url, trust_env=False, timeout=300) as direct, \
            httpx.Client(base_url=server_url, trust_env=False, timeout=300) as through:
        cpu0 = 0.0
        for i in range(-warmup, n):
            k = i + warmup
            if i == 0:
                cpu0 = cpu_seconds(server_pid)
            for client, body, out, check in ((direct, sc.direct_body(k), direct_ms, check_plain),
                                             (through, sc.through_body(k), through_ms, sc.check)):
                t0 = time.perf_counter_ns()
                response = client.post("/api/chat", content=body, headers=headers)
                elapsed = (time.perf_counter_ns() - t0) / 1e6
                if (problem := check(response)) is not None and len(errors) < 5:
                    errors.append(problem)
                if i >= 0:
                    out[i] = elapsed
        server_cpu_ms = (cpu_seconds(server_pid) - cpu0) * 1000 / max(n, 1)
    return LatencyResult(sc.name, direct_ms, through_ms, errors, sc.target_ms, server_cpu_ms)


@dataclass
class LoadResult:
    rps: float
    completed: int
    errors: int
    cpu: dict[str, float]  # % of one core during the window
    p50_ms: float  # latency of one request under this load
    other_cpu: float  # % of one core used by every other process on the machine during the window


async def _load(url: str, body: bytes, delay_ms: float, *, concurrency: int, seconds: float, warm_s: float,
                pids: dict[str, int]) -> LoadResult:
    headers = {**JSON_HEADERS, DELAY_HEADER: f"{delay_ms:g}"}
    stamps: list[tuple[float, float]] = []  # (finished, latency in ms) of every answered request
    errors = 0
    stopping = False
    # one AsyncClient (one keep-alive connection) per worker: httpcore's pool walks every pooled connection,
    # with a poll() syscall each, on every request and every response, so one shared 32-connection client
    # spends ~3 ms of CPU per request and the load generator itself would be the bottleneck (~300 req/s)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    ssl_context = httpx.create_ssl_context()  # never used (plain http), but built once instead of 32 times
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(httpx.AsyncClient(base_url=url, trust_env=False, timeout=60,
                                                                     limits=limits, verify=ssl_context))
                   for _ in range(concurrency)]

        async def worker(i: int, client: httpx.AsyncClient) -> None:
            nonlocal errors
            # spread the first requests over one model time, so the workers do not move in lockstep
            await asyncio.sleep(i / concurrency * max(delay_ms, 5.0) / 1000)
            while not stopping:
                started = time.perf_counter()
                try:
                    response = await client.post("/api/chat", content=body, headers=headers)
                    if response.status_code == 200:
                        now = time.perf_counter()
                        stamps.append((now, (now - started) * 1000))
                    else:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1

        tasks = [asyncio.create_task(worker(i, client)) for i, client in enumerate(clients)]
        await asyncio.sleep(warm_s)
        t0, cpu0, sys0 = time.perf_counter(), {name: cpu_seconds(pid) for name, pid in pids.items()}, \
            system_busy_seconds()
        await asyncio.sleep(seconds)
        t1, cpu1, sys1 = time.perf_counter(), {name: cpu_seconds(pid) for name, pid in pids.items()}, \
            system_busy_seconds()
        stopping = True
        await asyncio.gather(*tasks)
    window = [ms for t, ms in stamps if t0 <= t < t1]
    return LoadResult(rps=len(window) / (t1 - t0), completed=len(window), errors=errors,
                      cpu={name: 100.0 * (cpu1[name] - cpu0[name]) / (t1 - t0) for name in pids},
                      other_cpu=100.0 * ((sys1 - sys0) - sum(cpu1[n] - cpu0[n] for n in pids)) / (t1 - t0),
                      p50_ms=float(np.percentile(window, 50)) if window else float("nan"))


@dataclass
class ThroughputResult:
    delay_ms: float
    direct: LoadResult
    through: LoadResult
    judged: bool

    @property
    def ratio(self) -> float:
        return self.through.rps / self.direct.rps if self.direct.rps else 0.0

    @property
    def passed(self) -> bool | None:
        if not self.judged:
            return None
        return self.direct.errors == 0 and self.through.errors == 0 and self.ratio >= TARGET_THROUGHPUT_RATIO


# -- report -------------------------------------------------------------------------------------------

def verdict(passed: bool | None) -> str:
    return "info" if passed is None else ("PASS" if passed else "FAIL")


def latency_rows(results: list[LatencyResult]) -> list[list[str]]:
    rows = []
    for r in results:
        target = f"added p50 <= {r.target_ms:g} ms" if r.target_ms is not None else "-"
        status = verdict(r.passed) + (f" ({len(r.errors)}+ errors: {r.errors[0]})" if r.errors else "")
        rows.append([r.name, f"{len(r.through)}", f"{r.p('direct', 50):.2f}", f"{r.p('direct', 95):.2f}",
                     f"{r.p('through', 50):.2f}", f"{r.p('through', 95):.2f}", f"{r.added(50):.2f}",
                     f"{r.added(95):.2f}", f"{r.server_cpu_ms:.2f}", target, status])
    return rows


LAT_COLS = ["scenario", "n", "direct p50", "direct p95", "server p50", "server p95", "added p50", "added p95",
            "server CPU/req", "target", "result"]
THR_COLS = ["passthrough, model time", "direct req/s", "server req/s", "ratio", "ideal req/s", "direct/ideal",
            "p50 ms direct/server", "server CPU ms/req",
            "CPU% direct (client/upstream)", "CPU% server (client/server/upstream)", "CPU% others (direct/server)",
            "target", "result"]


def throughput_rows(results: list[ThroughputResult], concurrency: int) -> list[list[str]]:
    rows = []
    for r in results:
        ideal = f"{concurrency / (r.delay_ms / 1000):.0f}" if r.delay_ms > 0 else "-"
        d, t = r.direct.cpu, r.through.cpu
        errs = r.direct.errors + r.through.errors
        rows.append([f"{r.delay_ms:g} ms" + (" (judged)" if r.judged else " (CPU-bound, info)"),
                     f"{r.direct.rps:.0f}", f"{r.through.rps:.0f}", f"{r.ratio:.3f}", ideal,
                     f"{r.direct.rps * r.delay_ms / 1000 / concurrency:.2f}" if r.delay_ms > 0 else "-",
                     f"{r.direct.p50_ms:.1f}/{r.through.p50_ms:.1f}",
                     f"{t['server'] * 10 / r.through.rps:.2f}" if r.through.rps else "-",
                     f"{d['client']:.0f}/{d['upstream']:.0f}",
                     f"{t['client']:.0f}/{t['server']:.0f}/{t['upstream']:.0f}",
                     f"{r.direct.other_cpu:.0f}/{r.through.other_cpu:.0f}",
                     f"ratio >= {TARGET_THROUGHPUT_RATIO:g}" if r.judged else "-",
                     verdict(r.passed) + (f" ({errs} errors)" if errs else "")])
    return rows


def rich_table(title: str, cols: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(cols):
        table.add_column(col, justify="left" if i == 0 or col in ("target", "result") else "right")
    for row in rows:
        style = "red" if "FAIL" in row[-1] else ("green" if row[-1].startswith("PASS") else None)
        table.add_row(*row, style=style)
    return table


def markdown(cols: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500, help="sequential requests per latency scenario")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up requests before each latency scenario")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients for throughput")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per throughput run")
    parser.add_argument("--delay-ms", default="50",
                        help="simulated model time(s) of the upstream for the judged throughput runs, comma-separated "
                             "(each non-zero one is judged; a zero-delay run is always added for reference)")
    parser.add_argument("--skip-minilm", action="store_true", help="no augmented run with the real MiniLM embedder")
    parser.add_argument("--log-level", default="info",
                        help="our server's log level (info = the CLI default: one access-log line per request)")
    parser.add_argument("--profile-server", metavar="FILE",
                        help="cProfile the HashEmbedder server's main thread (event loop) to FILE and print the top")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    delays = [float(x) for x in str(args.delay_ms).split(",") if x.strip()]

    ctx = mp.get_context("spawn")
    tmp = Path(tempfile.mkdtemp(prefix="rag-bench-server-"))
    procs: list[mp.process.BaseProcess] = []
    console.print(f"[bold]rag_middleware server benchmark[/] - Python {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs, {args.requests} sequential requests/scenario (+{args.warmup} warm-up), "
                  f"{args.concurrency} clients x {args.seconds:g} s, "
                  f"simulated model time {'/'.join(f'{d:g}' for d in delays)} ms, "
                  f"server log level {args.log_level}; work dir {tmp}")
    idle_load = background_load()
    console.print(f"CPU used by other processes before the run: {idle_load:.0f}% of one core"
                  + (" [yellow](the machine is not idle: numbers below are contended)[/]" if idle_load > 15 else ""))

    def start_server(factory: str, upstream_url: str, profile: str | None = None) -> tuple[str, mp.process.BaseProcess]:
        port = free_port()
        data_dir = tmp / f"data-{factory}"
        proc = ctx.Process(target=_server_main, name=f"rag-server-{factory}", daemon=True,
                           args=(factory, port, upstream_url, str(data_dir), args.log_level,
                                 str(tmp / f"server-{factory}.log"), profile))
        proc.start()
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/", proc)
        return url, proc

    latency: list[LatencyResult] = []
    throughput: list[ThroughputResult] = []
    try:
        up_port = free_port()
        upstream = ctx.Process(target=_upstream_main, args=(up_port, 0.0), name="fake-ollama", daemon=True)
        upstream.start()
        procs.append(upstream)
        upstream_url = f"http://127.0.0.1:{up_port}"
        wait_ready(upstream_url + "/api/version", upstream)
        server_url, server = start_server("hash", upstream_url, args.profile_server)
        tags = httpx.get(server_url + "/api/tags", trust_env=False).json()
        console.print(f"upstream {upstream_url} (pid {upstream.pid}), server {server_url} (pid {server.pid}), "
                      f"models: {', '.join(m['name'] for m in tags['models'])}")

        scenarios = [
            Scenario("passthrough /api/chat (stream false)", lambda i: chat_body(UPSTREAM_MODEL, "hello", stream=False),
                     lambda i: chat_body(UPSTREAM_MODEL, "hello", stream=False), check_plain,
                     TARGET_PASSTHROUGH_P50_MS),
            Scenario("passthrough /api/chat (stream true)", lambda i: chat_body(UPSTREAM_MODEL, "hello", stream=True),
                     lambda i: chat_body(UPSTREAM_MODEL, "hello", stream=True), check_plain),
            Scenario("augmented data_ops, HashEmbedder",
                     lambda i: chat_body(UPSTREAM_MODEL, augmented_text(i), stream=False),
                     lambda i: chat_body(DOMAIN_MODEL, augmented_text(i), stream=False), check_plan),
        ]
        for sc in scenarios:
            with console.status(f"latency: {sc.name}"):
                latency.append(measure_latency(sc, upstream_url, server_url, server.pid, n=args.requests,
                                               warmup=args.warmup))

        pids = {"client": os.getpid(), "server": server.pid, "upstream": upstream.pid}
        body = chat_body(UPSTREAM_MODEL, "hello", stream=False)
        for delay, judged in [(d, True) for d in delays if d > 0] + [(0.0, False)]:
            runs = {}
            for target, url in (("direct", upstream_url), ("through", server_url)):
                with console.status(f"throughput: {target}, model time {delay:g} ms"):
                    runs[target] = run_async(_load(url, body, delay, concurrency=args.concurrency,
                                                   seconds=args.seconds, warm_s=1.0, pids=pids))
            throughput.append(ThroughputResult(delay, runs["direct"], runs["through"], judged))

        stop(server)  # writes the profile, if any
        if not args.skip_minilm:
            with console.status("starting the MiniLM server"):
                minilm_url, minilm = start_server("minilm", upstream_url)
            sc = Scenario("augmented data_ops, MiniLM embedder (real)",
                          lambda i: chat_body(UPSTREAM_MODEL, augmented_text(i), stream=False),
                          lambda i: chat_body(DOMAIN_MODEL, augmented_text(i), stream=False), check_plan)
            with console.status(f"latency: {sc.name}"):
                latency.append(measure_latency(sc, upstream_url, minilm_url, minilm.pid, n=args.requests,
                                               warmup=args.warmup))
            stop(minilm)
    finally:
        for proc in procs:
            stop(proc)

    lat_rows = latency_rows(latency)
    thr_rows = throughput_rows(throughput, args.concurrency)
    console.print()
    console.print(rich_table("Latency added by the server (ms; sequential, keep-alive, added = server - direct)",
                             LAT_COLS, lat_rows))
    console.print(rich_table(f"Passthrough throughput, {args.concurrency} concurrent clients, {args.seconds:g} s "
                             "(CPU% = % of one core; 2 cores = 200%)", THR_COLS, thr_rows))
    print()
    print("Latency added by the server (ms):\n")
    print(markdown(LAT_COLS, lat_rows))
    print(f"\nPassthrough throughput at {args.concurrency} concurrent clients:\n")
    print(markdown(THR_COLS, thr_rows))

    if args.profile_server and Path(args.profile_server).is_file():
        import io
        import pstats

        out = io.StringIO()
        stats = pstats.Stats(args.profile_server, stream=out)
        stats.sort_stats("tottime").print_stats(30)
        console.print("\n[bold]cProfile of the server's event-loop thread (top 30 by own time)[/]")
        print(out.getvalue())

    verdicts = [r.passed for r in latency] + [r.passed for r in throughput]
    failed = any(v is False for v in verdicts)
    console.print(("[red]FAIL[/]" if failed else "[green]PASS[/]") + ": "
                  + ", ".join(f"{name}={verdict(v)}" for name, v in
                              [(r.name, r.passed) for r in latency if r.passed is not None]
                              + [(f"throughput@{r.delay_ms:g}ms", r.passed) for r in throughput if r.judged]))
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if (failed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
