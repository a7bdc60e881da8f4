"""Which requests we augment, and with which domain.

A domain is advertised as the virtual model ``<domain>:latest``. The ``X-RAG-Domain`` header overrides the
model name; a configured default domain catches requests that name an upstream model; everything else, and
every request that must never be augmented (model loads and unloads: no user text; background task prompts),
passes through unchanged. ``keep_alive: 0`` with a question is still a question: it is augmented.

Chatbots put more than the user's words in a message (``server.context_patterns``, ``server.task_patterns``;
Open WebUI's shapes by default): a message that carries retrieved context for a question is a domain request
on that question, the context kept for the templates; a background task (a chat title, tags, follow-ups,
search queries, an emoji, merged responses, tool choice) is recognised by its shape and passed through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, UTC
from typing import Any

from ..config import Settings
from ..domains import DomainRegistry
from ..errors import ConfigError, UnknownDomainError
from .wire import clip

__all__ = ["Route", "Router", "system_text"]

ZERO_DURATION = re.compile(r"^0+(\.0*)?(ns|us|µs|ms|s|m|h)?$")
UNLOAD = "keep_alive 0 (a model unload)"


@dataclass(frozen=True)
class Route:
    domain: str | None  # None: pass through
    virtual: bool  # the client named one of our virtual models
    reason: str
    task: str | None = None  # the background task's name (task_patterns) when it is one
    question: str | None = None  # the question, when the last user message wraps it in retrieved context
    context: str | None = None  # that retrieved context

    @property
    def unload(self) -> bool:
        return self.reason == UNLOAD

    @property
    def background(self) -> bool:
        return self.task is not None

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages the pipeline answers: with retrieved context, the last user message is the question
        and the context is a system message just before it (the templates get it as the request's system
        text); otherwise unchanged."""
        if self.question is None:
            return messages
        last = max(i for i, m in enumerate(messages) if m["role"] == "user")
        context = [{"role": "system", "content": f"Context:\n{self.context.strip()}"}] if self.context else []
        return [*messages[:last], *context, {**messages[last], "content": self.question}, *messages[last + 1:]]


def system_text(messages: list[dict[str, Any]]) -> str:
    """The system messages' text, where chatbots may put retrieved context or a task's instructions."""
    return "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m["content"])


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
        server = settings.server
        try:
            self.context_patterns = [re.compile(p) for p in server.context_patterns]
            self.task_patterns = {name: re.compile(p) for name, p in server.task_patterns.items()}
        except re.error as exc:
            raise ConfigError(f"server.context_patterns/task_patterns: bad regex {exc.pattern!r}: {exc}") from None

    def _with_context(self, user: str, system: str) -> tuple[str, str] | None:
        """(question, context) when the last user message, or else the system message, carries retrieved
        context; a user message must name the question, from a system message the user message is it."""
        for pattern in self.context_patterns:
            found = pattern.search(user)
            if found and (found.groupdict().get("question") or "").strip():
                return found["question"].strip(), (found.groupdict().get("context") or "").strip()
        for pattern in self.context_patterns:
            found = pattern.search(system) if system else None
            if found and "context" in found.groupdict() and user.strip():
                return user.strip(), ""  # the context stays in the system message, where the templates get it
        return None

    def _task(self, user: str, system: str) -> str | None:
        for name, pattern in self.task_patterns.items():
            if pattern.search(user) or (system and pattern.search(system)):
                return name
        return None

    def virtual_models(self) -> list[str]:
        return [f"{name}:latest" for name in self.domains.names()]

    def domain_of_model(self, model: str) -> str | None:
        name = model[: -len(":latest")] if model.endswith(":latest") else model
        return name if name and name in self.domains.names() else None

    def modified_at(self, domain: str) -> datetime:
        """When the domain's definition last changed (what the model lists show for its virtual model)."""
        return datetime.fromtimestamp((self.domains.root / domain / "domain.yaml").stat().st_mtime, UTC)

    def upstream_model(self, domain: str) -> str:
        configured = self.settings.server.domain_models.get(domain)
        return configured or self.domains.get(domain).spec.model or self.settings.llm.model

    def resolve(self, *, model: str, header_domain: str | None, texts: list[str], keep_alive: object,
                system: str = "") -> Route:
        """``texts`` are the user-visible inputs (message contents or the prompt), ``system`` the system text."""
        named = self.domain_of_model(model)
        explicit = self._header_domain(header_domain) or named
        virtual = named is not None
        if not any(t.strip() for t in texts):
            return Route(None, virtual, UNLOAD if _is_zero(keep_alive) else "empty request (a model load)")
        last = next((t for t in reversed(texts) if t.strip()), "")
        rag = self._with_context(last, system)
        if rag is None and (task := self._task(last, system)) is not None:
            return Route(None, virtual, f"background task: {task}", task=task)
        question, context = rag if rag is not None else (None, None)
        extra = " (a question with retrieved context)" if rag is not None else ""
        if explicit:
            return Route(explicit, virtual, "domain named by the " + ("header" if header_domain else "model") + extra,
                         question=question, context=context)
        return self._default_route(extra, question, context)

    def _header_domain(self, header_domain: str | None) -> str | None:
        if header_domain and header_domain not in self.domains.names():
            raise UnknownDomainError(clip(header_domain), self.domains.names())
        return header_domain or None

    def _default_route(self, extra: str, question: str | None, context: str | None) -> Route:
        default = self.settings.server.default_domain
        if not default:
            return Route(None, False, "no domain" + extra)
        if default not in self.domains.names():
            raise UnknownDomainError(default, self.domains.names())
        return Route(default, False, "default domain" + extra, question=question, context=context)
