"""What every handler needs, built once per app: the pipeline, the router, the upstream.

Building the context turns on guarded hot reload of the prompt templates: the files are stat'ed at most
every ``TEMPLATE_CHECK_SECONDS``; an edit that passes the lint goes live for the next request, one with lint
errors is refused (the last good version stays live) and shows in ``/rag/health`` and the log.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.requests import Request

from ..backends.llm.base import Completion, GenerateRequest
from ..config import Settings
from ..errors import RequestError, TemplateError
from ..lint import errors_only, lint_snapshot
from ..options import ModelOptions
from ..pipeline import TENANT_RE, Middleware
from ..templates import TemplateSnapshot
from .augment import Augmenter, client_options
from .routing import Router
from .upstream import HttpUpstream
from .wire import clip

__all__ = ["TEMPLATE_CHECK_SECONDS", "ModelNotFoundError", "ServerContext", "plain_completion"]


class ModelNotFoundError(RequestError):
    http_status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f'model "{clip(name)}" not found, try pulling it first')


def _tagged(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"

TEMPLATE_CHECK_SECONDS = 0.5


@dataclass
class ServerContext:
    settings: Settings
    mw: Middleware
    router: Router
    augmenter: Augmenter
    upstream: HttpUpstream | None  # None: the embedded model is the upstream
    upstream_label: str

    def __post_init__(self) -> None:
        self.mw.templates.watch(validator=self.lint_templates, check_interval=TEMPLATE_CHECK_SECONDS)
        try:
            self.mw.templates.current()  # load and lint now: a broken set is logged at start, not at a request
        except TemplateError:
            pass  # logged by the template set; augmented requests answer with the error, /rag/health shows it

    def lint_templates(self, snapshot: TemplateSnapshot) -> list[str]:
        return errors_only(lint_snapshot(snapshot, self.mw.domains))

    def templates_health(self) -> dict[str, Any]:
        started = time.perf_counter()
        status = self.mw.templates.status()
        rejected = status["rejected"]
        if rejected is None:
            detail = f"version {status['version']} live since {status['live_since']}"
        else:
            detail = (f"edit {rejected['version'] or '(unreadable)'} refused, serving "
                      f"{status['version'] or 'nothing'}: " + "; ".join(rejected["problems"][:5]))
        return {"ok": status["ok"], "latency_ms": round((time.perf_counter() - started) * 1000, 2), "detail": detail,
                "version": status["version"], "rejected": rejected}

    def tenant_of(self, request: Request) -> str | None:
        """The tenant header, checked here so that a bad one is refused before the pipeline (and no record)."""
        tenant = request.headers.get(self.settings.server.tenant_header) or None
        if tenant is not None and not TENANT_RE.match(tenant):
            raise RequestError(f"{self.settings.server.tenant_header} {clip(tenant)!r} must match "
                               "[A-Za-z0-9_-]{1,64}")
        return tenant

    def check_embedded_model(self, name: str) -> None:
        """With the embedded upstream, a request that is not augmented must name the embedded model (or one of
        ours): 400 without a model, 404 for any other, as Ollama answers."""
        if not name:
            raise RequestError("model is required")
        if self.router.domain_of_model(name) is None and _tagged(name) != _tagged(self.settings.llm.model):
            raise ModelNotFoundError(name)

    @staticmethod
    def user_of(request: Request, body_user: Any = None) -> str | None:
        """Who asks, for sticky A/B variants: ``X-RAG-User``, else ``X-RAG-Session``, else the OpenAI ``user``."""
        found = request.headers.get("x-rag-user") or request.headers.get("x-rag-session") or body_user
        return str(found)[:200] if found else None


async def plain_completion(ctx: ServerContext, messages: list[dict[str, Any]],
                           options: ModelOptions | None) -> Completion:
    """A request for no domain, answered by the embedded model (there is no Ollama to pass it to)."""
    prompt = ctx.mw.assembler.flatten_plain(messages)
    opts = {"temperature": 0.7, "num_predict": 256, "stop": ["\nRequest:"], **client_options(options)}
    request = GenerateRequest(model=ctx.settings.llm.model, messages=messages, prompt=prompt, options=opts)
    return await anyio.to_thread.run_sync(functools.partial(ctx.mw.backend.generate, request))
