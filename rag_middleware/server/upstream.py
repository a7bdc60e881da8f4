"""Upstream Ollama: byte-for-byte passthrough and the few facts we ask it for (tags, version, health)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..errors import RagMiddlewareError, UpstreamResponseError, UpstreamUnavailableError

__all__ = ["EMBEDDED", "HttpUpstream"]

log = logging.getLogger("rag_middleware.server")

EMBEDDED = "embedded"
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "host", "content-length"}
_REQUEST_DROP = _HOP_BY_HOP - {"content-length"}  # a streamed body keeps its declared length
BUFFER_LIMIT = 256 * 1024  # answers up to this size with a Content-Length are relayed in one piece


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
    def __init__(self, base_url: str, *, timeout: float, connect_timeout: float = 5.0) -> None:
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

    async def forward(self, request: Request, body: bytes | None = None) -> Response:
        """Send the request on unchanged (never the Host header) and relay the answer back unchanged: a short
        answer of known length in one piece, anything else (NDJSON streams) chunk by chunk as it comes."""
        drop = _HOP_BY_HOP if body is not None else _REQUEST_DROP  # httpx sets the length of a bytes body
        headers = [(k, v) for k, v in request.headers.raw if k.decode().lower() not in drop]
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
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) <= BUFFER_LIMIT:
            try:
                content = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
                await self._pool.release(client)
            return Response(content, status_code=response.status_code, headers=out_headers)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()  # also when the client went away: the upstream request ends
                await self._pool.release(client)

        return StreamingResponse(relay(), status_code=response.status_code, headers=out_headers)

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
