"""Which requests we augment, and with which domain.

A domain is advertised as the virtual model ``<domain>:latest``. The ``X-RAG-Domain`` header overrides the
model name; a configured default domain catches requests that name an upstream model; everything else, and
every request that must never be augmented (model loads and unloads: no user text; background ``### Task:``
prompts), passes through unchanged. ``keep_alive: 0`` with a question is still a question: it is augmented.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from ..config import Settings
from ..domains import DomainRegistry
from ..errors import UnknownDomainError
from .wire import clip

__all__ = ["Route", "Router"]

TASK_PROMPT = re.compile(r"^\s*### Task:", re.M)
ZERO_DURATION = re.compile(r"^0+(\.0*)?(ns|us|µs|ms|s|m|h)?$")
UNLOAD = "keep_alive 0 (a model unload)"


@dataclass(frozen=True)
class Route:
    domain: str | None  # None: pass through
    virtual: bool  # the client named one of our virtual models
    reason: str

    @property
    def unload(self) -> bool:
        return self.reason == UNLOAD


def _is_zero(keep_alive: object) -> bool:
    if keep_alive is None or isinstance(keep_alive, bool):
        return False
    if isinstance(keep_alive, (int, float)):
        return keep_alive == 0
    return bool(ZERO_DURATION.match(str(keep_alive).strip()))


class Router:
    def __init__(self, settings: Settings, domains: DomainRegistry) -> None:
        self.settings = settings
        self.domains = domains

    def virtual_models(self) -> list[str]:
        return [f"{name}:latest" for name in self.domains.names()]

    def domain_of_model(self, model: str) -> str | None:
        name = model[: -len(":latest")] if model.endswith(":latest") else model
        return name if name and name in self.domains.names() else None

    def modified_at(self, domain: str) -> datetime:
        """When the domain's definition last changed (what the model lists show for its virtual model)."""
        return datetime.fromtimestamp((self.domains.root / domain / "domain.yaml").stat().st_mtime, timezone.utc)

    def upstream_model(self, domain: str) -> str:
        configured = self.settings.server.domain_models.get(domain)
        return configured or self.domains.get(domain).spec.model or self.settings.llm.model

    def resolve(self, *, model: str, header_domain: str | None, texts: list[str], keep_alive: object) -> Route:
        """``texts`` are the user-visible inputs (message contents or the prompt)."""
        named = self.domain_of_model(model)
        explicit = None
        if header_domain:
            if header_domain not in self.domains.names():
                raise UnknownDomainError(clip(header_domain), self.domains.names())
            explicit = header_domain
        explicit = explicit or named
        virtual = named is not None
        if not any(t.strip() for t in texts):
            return Route(None, virtual, UNLOAD if _is_zero(keep_alive) else "empty request (a model load)")
        if any(TASK_PROMPT.search(t) for t in texts):
            return Route(None, virtual, "background task prompt")
        if explicit:
            return Route(explicit, virtual, "domain named by the " + ("header" if header_domain else "model"))
        default = self.settings.server.default_domain
        if default:
            if default not in self.domains.names():
                raise UnknownDomainError(default, self.domains.names())
            return Route(default, False, "default domain")
        return Route(None, False, "no domain")
