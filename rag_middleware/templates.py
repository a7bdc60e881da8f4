"""Prompt templates: a sandboxed Jinja2 environment with StrictUndefined, per-domain overrides, versions.

``prompts/<name>.j2`` is the default; ``prompts/<domain>/<name>.j2`` overrides it for one domain. The
version of a template set is a content hash of every template file, stamped on every record. Edited files
are picked up on the next render (files are checked by mtime and size).
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from .errors import TemplateError

__all__ = ["TEMPLATE_CONTEXT", "TEMPLATE_NAMES", "TemplateSet"]

TEMPLATE_NAMES = ("system", "cot", "fewshot", "negatives", "repair", "completion")

#: The documented context each template receives from the assembler (the context contract).
TEMPLATE_CONTEXT: dict[str, tuple[str, ...]] = {
    "system": ("domain", "schema", "rules", "cot", "negatives", "has_examples", "free_text"),
    "cot": ("domain", "steps"),
    "fewshot": ("domain", "question", "is_request"),
    "negatives": ("domain", "negatives"),
    "repair": ("domain", "errors", "attempt", "max_attempts", "previous_output", "truncated"),
    "completion": ("domain", "messages", "free_text"),
}


def _json_filter(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


class TemplateSet:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise TemplateError(f"prompts directory {self.root} does not exist")
        self._lock = threading.Lock()
        self._envs: dict[str, SandboxedEnvironment] = {}
        self._signature: tuple | None = None
        self._version = ""

    # -- versions ------------------------------------------------------------------------------------

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*.j2") if p.is_file())

    def _current_signature(self) -> tuple:
        sig = []
        for p in self.files():
            st = p.stat()
            sig.append((str(p), st.st_mtime_ns, st.st_size))
        return tuple(sig)

    @property
    def version(self) -> str:
        """Content hash of the whole set (first 12 hex digits of sha256 over relative paths and contents)."""
        with self._lock:
            sig = self._current_signature()
            if sig != self._signature:
                digest = hashlib.sha256()
                for p in self.files():
                    digest.update(str(p.relative_to(self.root)).encode())
                    digest.update(b"\0")
                    digest.update(p.read_bytes())
                    digest.update(b"\0")
                self._version = digest.hexdigest()[:12]
                self._signature = sig
                self._envs.clear()
            return self._version

    # -- rendering -----------------------------------------------------------------------------------

    def _env(self, domain: str | None) -> SandboxedEnvironment:
        self.version  # refreshes environments when a file changed
        key = domain or ""
        with self._lock:
            env = self._envs.get(key)
            if env is None:
                paths = [str(self.root)]
                if domain and (self.root / domain).is_dir():
                    paths.insert(0, str(self.root / domain))
                env = SandboxedEnvironment(
                    loader=jinja2.FileSystemLoader(paths),
                    undefined=jinja2.StrictUndefined,
                    autoescape=False,
                    keep_trailing_newline=False,
                    trim_blocks=True,
                    lstrip_blocks=True,
                    auto_reload=True,
                )
                env.filters["json"] = _json_filter
                self._envs[key] = env
            return env

    def source_path(self, name: str, domain: str | None = None) -> Path:
        override = self.root / domain / f"{name}.j2" if domain else None
        if override is not None and override.is_file():
            return override
        return self.root / f"{name}.j2"

    def render(self, name: str, *, for_domain: str | None = None, **context: Any) -> str:
        """Render ``name`` (with ``for_domain``'s override if it has one) with the given context."""
        env = self._env(for_domain)
        path = self.source_path(name, for_domain)
        try:
            template = env.get_template(f"{name}.j2")
            return template.render(**context).strip()
        except jinja2.TemplateNotFound:
            raise TemplateError(f"template {name}.j2 not found", path=str(self.root)) from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(exc.message or "syntax error", path=exc.filename or str(path), line=exc.lineno) from None
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"unsafe operation refused by the sandbox: {exc}", path=str(path),
                                line=_template_line(exc)) from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"undefined variable: {exc.message}", path=str(path), line=_template_line(exc)) from None
        except TemplateError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure inside a user template
            raise TemplateError(f"{type(exc).__name__}: {exc}", path=str(path), line=_template_line(exc)) from None

    def check(self, domain: str | None = None) -> list[str]:
        """Parse every template visible to a domain; return 'file:line: message' strings (empty if fine)."""
        env = self._env(domain)
        problems = []
        for name in TEMPLATE_NAMES:
            path = self.source_path(name, domain)
            try:
                env.get_template(f"{name}.j2")
            except jinja2.TemplateNotFound:
                problems.append(f"{path}: missing template {name}.j2")
            except jinja2.TemplateSyntaxError as exc:
                problems.append(f"{exc.filename or path}:{exc.lineno}: {exc.message}")
        return problems


def _template_line(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(".j2"):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
