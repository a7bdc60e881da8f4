"""The domains of a knowledge base directory: loaded on first use, cached, reloaded when their override
changes, and taught copies of them (request/taught.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ..errors import UnknownDomainError
from .loader import CuratedExample, Domain, load_domain
from .overrides import OverrideStore

__all__ = ["DomainRegistry"]


class DomainRegistry:
    """All domains under a knowledge base directory, loaded on first use and cached."""

    def __init__(self, root: Path, *, overrides: Path | None = None) -> None:
        self.root = Path(root)
        self.overrides = OverrideStore(overrides) if overrides is not None else None
        self._cache: dict[str, tuple[str | None, Domain]] = {}
        self._lock = threading.Lock()
        self._names: tuple[float, list[str]] | None = None

    NAMES_TTL = 1.0  # seconds a directory listing is reused (the server asks on every request)

    def names(self) -> list[str]:
        now = time.monotonic()
        cached = self._names
        if cached is not None and now - cached[0] < self.NAMES_TTL:
            return list(cached[1])
        names = (sorted(p.name for p in self.root.iterdir() if (p / "domain.yaml").is_file())
                 if self.root.is_dir() else [])
        self._names = (now, names)
        return list(names)

    def get(self, name: str) -> Domain:
        with self._lock:
            live = self.overrides.live_name(name) if self.overrides is not None and name else None
            if name in self._cache and self._cache[name][0] == live:
                return self._cache[name][1]
            if name and name not in self.names():
                self._names = None  # a domain created within the last second: look again before refusing
            if not name or name not in self.names():
                raise UnknownDomainError(name, self.names())
            override = self.overrides.live(name) if self.overrides is not None and live else None
            domain = load_domain(self.root / name, override=override)
            self._cache[name] = (live, domain)
            return domain

    def taught(self, base: Domain, learnt: list[CuratedExample], key: str) -> Domain:
        """``base`` loaded again (with the same override), learning also from ``learnt``: reviewed answers."""
        with self._lock:
            live = self.overrides.live_name(base.name) if self.overrides is not None else None
            override = self.overrides.live(base.name) if self.overrides is not None and live else None
        domain = load_domain(base.path, override=override, learnt=learnt)
        domain.learnt_key = key
        return domain

    def load_all(self) -> list[Domain]:
        return [self.get(n) for n in self.names()]
