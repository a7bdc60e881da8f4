"""State shared by the CLI command groups: settings and a lazily built Middleware."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from ..config import Settings, load_settings

__all__ = ["CliState", "console", "err_console"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@dataclass
class CliState:
    config: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self, **extra: Any) -> Settings:
        overrides = dict(self.overrides)
        for key, value in extra.items():
            if value is None:
                continue
            if "." in key:  # nested, e.g. llm.backend
                section, name = key.split(".", 1)
                overrides.setdefault(section, {})[name] = value
            else:
                overrides[key] = value
        return load_settings(self.config, **overrides)

    def middleware(self, **extra: Any):
        from ..request.pipeline import Middleware

        return Middleware(self.settings(**extra))
