"""Routing: the one place a request's tenant, domain and A/B variant are resolved, and the assembler that
renders with the variant's template set is chosen."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..domains import Domain, DomainRegistry
from ..errors import RequestError
from ..templating.variants import VariantSpec, assign
from .ask import AskRequest
from .assembly import Assembler
from .taught import TaughtDomains

__all__ = ["TENANT_RE", "Route", "Router"]

TENANT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Route:
    ask: AskRequest  # with its tenant resolved
    domain: Domain
    variant: VariantSpec | None
    assembler: Assembler

    @property
    def tenant(self) -> str:
        assert self.ask.tenant is not None
        return self.ask.tenant


class Router:
    def __init__(self, *, settings: Settings, domains: DomainRegistry, assembler: Callable[[], Assembler],
                 taught: TaughtDomains | None = None) -> None:
        self.settings = settings
        self.domains = domains
        self.taught = taught  # the tenant's reviewed answers teach its copy of the domain
        self._base = assembler  # built lazily: the token counter needs the backend
        self._variants: dict[Path, Assembler] = {}
        self._lock = threading.Lock()

    def tenant(self, tenant: str | None) -> str:
        tenant = tenant or self.settings.default_tenant
        if not TENANT_RE.match(tenant):
            raise RequestError(f"tenant {tenant!r} must match [A-Za-z0-9_-]{{1,64}}")
        return tenant

    def route(self, ask: AskRequest) -> Route:
        tenant = self.tenant(ask.tenant)
        domain = self.domains.get(ask.domain)
        variant = assign(domain.spec.variants, domain=domain.name, tenant=tenant, key=ask.user, forced=ask.variant)
        if ask.tenant != tenant:  # a frozen model: one that names its tenant is used as it is
            ask = ask.model_copy(update={"tenant": tenant})
        if self.taught is not None:
            domain = self.taught.domain(domain, ask)
        return Route(ask=ask, domain=domain, variant=variant, assembler=self.assembler_for(domain, variant))

    def assembler_for(self, domain: Domain, variant: VariantSpec | None) -> Assembler:
        """The assembler that renders with the variant's template set (the default one without a variant)."""
        base = self._base()
        if variant is None or variant.prompts is None:
            return base
        root = (domain.path / variant.prompts).resolve()
        with self._lock:
            found = self._variants.get(root)
            if found is None:
                found = self._variants[root] = base.with_templates(base.templates.derive(root))
            return found
