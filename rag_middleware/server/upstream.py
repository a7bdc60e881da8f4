"""Upstream Ollama: byte-for-byte passthrough and the few facts we ask it for (tags, version, health)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..errors import UpstreamResponseError, UpstreamUnavailableError

__all__ = ["EMBEDDED", "HttpUpstream"]

EMBEDDED = "embedded"
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "host", "content-length"}
_REQUEST_DROP = _HOP_BY_HOP - {"content-length"}  # a streamed body keeps its declared length


class HttpUpstream:
    def __init__(self, base_url: str, *, timeout: float, connect_timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        if "://" not in self.base_url:
            self.base_url = "http://" + self.base_url
        self.client = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128), trust_env=False,
        )

    async def forward(self, request: Request, body: bytes | None = None) -> Response:
        """Send the request on unchanged (never the Host header) and stream the answer back unchanged."""
        drop = _HOP_BY_HOP if body is not None else _REQUEST_DROP  # httpx sets the length of a bytes body
        headers = [(k, v) for k, v in request.headers.raw if k.decode().lower() not in drop]
        upstream_request = self.client.build_request(
            request.method, request.url.path, params=request.query_params, headers=headers,
            content=body if body is not None else request.stream(),
        )
        try:
            response = await self.client.send(upstream_request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise UpstreamUnavailableError(self.base_url, type(exc).__name__) from None

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()  # also when the client went away: the upstream request ends

        out_headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
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
        await self.client.aclose()
