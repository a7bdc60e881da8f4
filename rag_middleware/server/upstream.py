"""Upstream Ollama: byte-for-byte passthrough and the few facts we ask it for (tags, version, health).

Two things never pass unchanged: the admin token (an ``Authorization`` header carrying it is dropped: it is
ours, not the upstream's), and, for a request that named one of our virtual models, the upstream model's name
in the answer (``rename``: every JSON object of the body, NDJSON line or SSE event, that names the upstream
model names the virtual one instead, as Ollama names the model it was asked for).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..errors import RagMiddlewareError, UpstreamResponseError, UpstreamUnavailableError

__all__ = ["EMBEDDED", "HttpUpstream", "Rename", "bearer"]

log = logging.getLogger("rag_middleware.server")

EMBEDDED = "embedded"
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "host", "content-length"}
_REQUEST_DROP = _HOP_BY_HOP - {"content-length"}  # a streamed body keeps its declared length
BUFFER_LIMIT = 256 * 1024  # answers up to this size with a Content-Length are relayed in one piece


def bearer(authorization: str) -> str | None:
    """The credentials of an ``Authorization: Bearer ...`` header; the scheme in any case (RFC 7235)."""
    scheme, _, credentials = authorization.strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


class Rename:
    """Rewrites ``"model": <upstream>`` to ``"model": <virtual>`` in each JSON object of a body, line by line
    (NDJSON, and SSE ``data:`` lines); other bytes pass as they are."""

    def __init__(self, upstream: str, virtual: str) -> None:
        self.upstream = upstream
        self.virtual = virtual
        self._rest = b""

    def line(self, line: bytes) -> bytes:
        prefix, payload = (b"data: ", line[6:]) if line.startswith(b"data: ") else (b"", line)
        try:
            obj = json.loads(payload)
        except ValueError:
            return line
        if not isinstance(obj, dict) or obj.get("model") != self.upstream:
            return line
        obj["model"] = self.virtual
        return prefix + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()

    def body(self, content: bytes) -> bytes:
        return b"\n".join(self.line(line) for line in content.split(b"\n"))

    def chunk(self, data: bytes) -> bytes:
        """The complete lines of what has come so far; the tail waits for the next chunk (or ``end``)."""
        head, sep, self._rest = (self._rest + data).rpartition(b"\n")
        return self.body(head) + sep if sep else b""

    def end(self) -> bytes:
        rest, self._rest = self._rest, b""
        return self.line(rest) if rest else b""


class _ClientPool:
    """Idle one-connection clients. httpx's shared pool scans every pooled connection on each request
    (quadratic under load: 39% of the server's CPU at 32 clients); a client per connection skips that."""

    def __init__(self, make: Callable[[], httpx.AsyncClient], *, keep: int) -> None:
        self._make = make
        self._idle: list[httpx.AsyncClient] = []
        self._keep = keep
        self._all: set[httpx.AsyncClient] = set()

    def acquire(self) -> httpx.AsyncClient:
        if self._idle:
            return self._idle.pop()
        client = self._make()
        self._all.add(client)
        return client

    async def release(self, client: httpx.AsyncClient) -> None:
        if len(self._idle) < self._keep and not client.is_closed:
            self._idle.append(client)
        else:
            self._all.discard(client)
            await client.aclose()

    async def aclose(self) -> None:
        clients, self._idle, self._all = list(self._all), [], set()
        for client in clients:
            await client.aclose()


class HttpUpstream:
    def __init__(self, base_url: str, *, timeout: float, connect_timeout: float = 5.0,
                 admin_token: str | None = None) -> None:
        self.admin_token = admin_token
        self.base_url = base_url.rstrip("/")
        if "://" not in self.base_url:
            self.base_url = "http://" + self.base_url
        timeouts = httpx.Timeout(timeout, connect=connect_timeout)
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=timeouts, trust_env=False)  # tags, health
        self._pool = _ClientPool(
            lambda: httpx.AsyncClient(base_url=self.base_url, timeout=timeouts, trust_env=False,
                                      limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)),
            keep=256,
        )

    def _ours(self, name: str, value: bytes) -> bool:
        """An Authorization header that carries the admin token."""
        if not self.admin_token or name != "authorization":
            return False
        given = bearer(value.decode("latin-1"))
        return given is not None and hmac.compare_digest(given.encode(), self.admin_token.encode())

    async def forward(self, request: Request, body: bytes | None = None, *, rename: Rename | None = None) -> Response:
        """Send the request on unchanged (never the Host header nor the admin token) and relay the answer back
        unchanged (but for ``rename``): a short answer of known length in one piece, anything else (NDJSON
        streams) chunk by chunk as it comes."""
        drop = _HOP_BY_HOP if body is not None else _REQUEST_DROP  # httpx sets the length of a bytes body
        headers = [(k, v) for k, v in request.headers.raw
                   if k.decode().lower() not in drop and not self._ours(k.decode().lower(), v)]
        client = self._pool.acquire()
        upstream_request = client.build_request(
            request.method, request.url.path, params=request.query_params, headers=headers,
            content=body if body is not None else request.stream(),
        )
        try:
            response = await client.send(upstream_request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            await self._pool.release(client)
            raise UpstreamUnavailableError(self.base_url, type(exc).__name__) from None
        except BaseException:
            await self._pool.release(client)
            raise
        out_headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
        if rename is not None:
            out_headers.pop("content-encoding", None)  # the body is decoded to be rewritten
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) <= BUFFER_LIMIT:
            try:
                if rename is None:
                    content = b"".join([chunk async for chunk in response.aiter_raw()])
                else:
                    content = rename.body(b"".join([chunk async for chunk in response.aiter_bytes()]))
            finally:
                await response.aclose()
                await self._pool.release(client)
            return Response(content, status_code=response.status_code, headers=out_headers)
        return StreamingResponse(self._relay(response, client, rename), status_code=response.status_code,
                                 headers=out_headers)

    async def _relay(self, response: httpx.Response, client: httpx.AsyncClient,
                     rename: Rename | None) -> AsyncIterator[bytes]:
        try:
            if rename is None:
                async for chunk in response.aiter_raw():
                    yield chunk
                return
            async for chunk in response.aiter_bytes():
                if out := rename.chunk(chunk):
                    yield out
            if out := rename.end():
                yield out
        finally:
            await response.aclose()  # also when the client went away: the upstream request ends
            await self._pool.release(client)

    async def get_json(self, path: str) -> Any:
        try:
            response = await self.client.get(path)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailableError(self.base_url, type(exc).__name__) from None
        if response.status_code >= 400:
            raise UpstreamResponseError(f"upstream {self.base_url}{path} answered {response.status_code}",
                                        status_code=response.status_code)
        try:
            return response.json()
        except ValueError:
            raise UpstreamResponseError(f"upstream {self.base_url}{path} answered with invalid JSON") from None

    async def models(self, path: str, key: str) -> list[dict[str, Any]]:
        """The upstream's model list (``/api/tags`` "models", ``/v1/models`` "data"); empty, with one log line,
        when it cannot be had: our own models are still worth listing, and /rag/health says what is wrong."""
        try:
            body = await self.get_json(path)
        except RagMiddlewareError as exc:
            log.warning(json.dumps({"event": "upstream_models_failed", "path": path, "error": exc.one_line()}))
            return []
        items = body.get(key, []) if isinstance(body, dict) else []
        return [m for m in items if isinstance(m, dict)] if isinstance(items, list) else []

    async def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            response = await self.client.get("/api/version", timeout=3.0)
            ok = response.status_code == 200
            detail = response.json().get("version", "") if ok else f"status {response.status_code}"
        except (httpx.HTTPError, ValueError) as exc:
            ok, detail = False, type(exc).__name__
        return {"ok": ok, "url": self.base_url, "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                "detail": detail}

    async def aclose(self) -> None:
        await self._pool.aclose()
        await self.client.aclose()
