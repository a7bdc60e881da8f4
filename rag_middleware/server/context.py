"""What every handler needs, built once per app: the pipeline, the router, the upstream."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.requests import Request

from ..backends.llm.base import Completion, GenerateRequest
from ..config import Settings
from ..pipeline import Middleware
from .augment import Augmenter, client_options
from .routing import Router
from .upstream import HttpUpstream

__all__ = ["ServerContext", "plain_completion"]


@dataclass
class ServerContext:
    settings: Settings
    mw: Middleware
    router: Router
    augmenter: Augmenter
    upstream: HttpUpstream | None  # None: the embedded model is the upstream
    upstream_label: str

    def tenant_of(self, request: Request) -> str | None:
        return request.headers.get(self.settings.server.tenant_header) or None


async def plain_completion(ctx: ServerContext, messages: list[dict[str, Any]], options: dict[str, Any] | None) -> Completion:
    """A request for no domain, answered by the embedded model (there is no Ollama to pass it to)."""
    prompt = ctx.mw.assembler.flatten_plain(messages)
    opts = {"temperature": 0.7, "num_predict": 256, "stop": ["\nRequest:"], **client_options(options)}
    request = GenerateRequest(model=ctx.settings.llm.model, messages=messages, prompt=prompt, options=opts)
    return await anyio.to_thread.run_sync(functools.partial(ctx.mw.backend.generate, request))
