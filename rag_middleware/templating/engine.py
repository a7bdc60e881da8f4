"""Prompt templates: a sandboxed Jinja2 environment with StrictUndefined, per-domain overrides, versions.

``prompts/<name>.j2`` is the default; ``prompts/<domain>/<name>.j2`` overrides it for one domain.

A :class:`TemplateSnapshot` is an immutable template set held in memory; its **version** is a content hash
of every template file (:func:`version_of`, the one definition), stamped on every record.
:class:`TemplateSet` watches a prompts directory and keeps one snapshot live: an edited file becomes the
next snapshot (checked by stat, at most every ``check_interval`` seconds). With a ``validator`` (the
server's lint), an edit with problems is refused and the last good snapshot stays live
(:meth:`TemplateSet.status` says why). ``with one_version_per_call():`` makes every render inside it (one
request: assembly, repair turns, flattening) use one snapshot of each template set, so a swap never splits a
request; ``with templates.pinned(snapshot):`` renders with a given snapshot (replaying a stored version).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from ..errors import TemplateError

__all__ = ["TEMPLATE_CONTEXT", "TEMPLATE_NAMES", "TemplateSet", "TemplateSnapshot", "one_version_per_call",
           "read_templates", "version_of"]

log = logging.getLogger("rag_middleware.templating.engine")

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


def version_of(files: Mapping[str, str]) -> str:
    """The version of a template set: the first 12 hex digits of sha256 over every file, in path order,
    as ``relative/posix/path NUL utf-8 content NUL``. Content, not location or mtime."""
    digest = hashlib.sha256()
    for rel in sorted(files, key=lambda r: PurePosixPath(r).parts):
        digest.update(rel.encode())
        digest.update(b"\0")
        digest.update(files[rel].encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def _template_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.j2") if p.is_file())


def read_templates(root: Path) -> dict[str, str]:
    """Every ``*.j2`` under ``root`` as {relative posix path: text}."""
    root = Path(root)
    if not root.is_dir():
        raise TemplateError(f"prompts directory {root} does not exist")
    files: dict[str, str] = {}
    for path in _template_files(root):
        try:
            files[path.relative_to(root).as_posix()] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise TemplateError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path)) from None
        except OSError as exc:
            raise TemplateError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    return files


class TemplateSnapshot:
    """An immutable template set in memory. ``root`` (where it was read from) only names files in errors."""

    def __init__(self, files: Mapping[str, str], *, root: Path | None = None, source: str = "") -> None:
        self.files: Mapping[str, str] = MappingProxyType(dict(files))
        self.root = Path(root) if root is not None else None
        self.source = source or (str(root) if root is not None else "")
        self.version = version_of(self.files)
        self._envs: dict[str, SandboxedEnvironment] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, root: Path) -> TemplateSnapshot:
        return cls(read_templates(root), root=Path(root), source=str(Path(root).resolve()))

    def __repr__(self) -> str:
        return f"TemplateSnapshot(version={self.version!r}, files={len(self.files)}, source={self.source!r})"

    def path_of(self, rel: str) -> str:
        return str(self.root / rel) if self.root is not None else rel

    def source_rel(self, name: str, domain: str | None = None) -> str:
        """The file that renders ``name`` for ``domain``: its override if it has one, else the default."""
        if domain and f"{domain}/{name}.j2" in self.files:
            return f"{domain}/{name}.j2"
        return f"{name}.j2"

    def override_domains(self) -> list[str]:
        return sorted({rel.split("/", 1)[0] for rel in self.files if "/" in rel})

    def env(self, domain: str | None = None) -> SandboxedEnvironment:
        key = domain or ""
        with self._lock:
            env = self._envs.get(key)
            if env is None:
                env = new_environment(jinja2.FunctionLoader(self._loader(domain)))
                self._envs[key] = env
            return env

    def _loader(self, domain: str | None) -> Callable[[str], tuple[str, str, Callable[[], bool]] | None]:
        def load(name: str) -> tuple[str, str, Callable[[], bool]] | None:
            for rel in ([f"{domain}/{name}"] if domain else []) + [name]:
                text = self.files.get(rel)
                if text is not None:
                    return text, self.path_of(rel), _always
            return None

        return load

    def render(self, name: str, *, for_domain: str | None = None, **context: Any) -> str:
        """Render ``name`` (with ``for_domain``'s override if it has one) with the given context."""
        env = self.env(for_domain)
        path = self.path_of(self.source_rel(name, for_domain))
        try:
            template = env.get_template(f"{name}.j2")
            return template.render(**context).strip()
        except jinja2.TemplateNotFound:
            raise TemplateError(f"template {name}.j2 not found", path=self.source) from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(exc.message or "syntax error", path=exc.filename or path, line=exc.lineno) from None
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"unsafe operation refused by the sandbox: {exc}", **_where(exc, path)) from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"undefined variable: {exc.message}", **_where(exc, path)) from None
        except TemplateError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure inside a user template
            raise TemplateError(f"{type(exc).__name__}: {exc}", **_where(exc, path)) from None

    def check(self, domain: str | None = None) -> list[str]:
        """Parse every template visible to a domain; return 'file:line: message' strings (empty if fine)."""
        env = self.env(domain)
        problems = []
        for name in TEMPLATE_NAMES:
            path = self.path_of(self.source_rel(name, domain))
            try:
                env.get_template(f"{name}.j2")
            except jinja2.TemplateNotFound:
                problems.append(f"{path}: missing template {name}.j2")
            except jinja2.TemplateSyntaxError as exc:
                problems.append(f"{exc.filename or path}:{exc.lineno}: {exc.message}")
        return problems


def _always() -> bool:
    return True


def new_environment(loader: jinja2.BaseLoader | None = None) -> SandboxedEnvironment:
    """The one environment every template renders in: sandboxed, strict, no autoescape, the ``json`` filter."""
    env = SandboxedEnvironment(loader=loader, undefined=jinja2.StrictUndefined, autoescape=False,
                               keep_trailing_newline=False, trim_blocks=True, lstrip_blocks=True)
    env.filters["json"] = _json_filter
    return env


@dataclass
class Rejection:
    """An edit that was not served: its version, why, and when."""

    version: str
    problems: list[str]
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


Validator = Callable[[TemplateSnapshot], list[str]]

# id(TemplateSet) -> the snapshot it renders with in the current call (see one_version_per_call)
_CALL: contextvars.ContextVar[dict[int, TemplateSnapshot] | None] = contextvars.ContextVar(
    "rag_mw_template_call", default=None)


@contextlib.contextmanager
def one_version_per_call() -> Iterator[None]:
    """Inside, each template set renders with the snapshot it had at its first use (nested calls share it)."""
    if _CALL.get() is not None:
        yield
        return
    token = _CALL.set({})
    try:
        yield
    finally:
        _CALL.reset(token)


class TemplateSet:
    """A prompts directory and its live snapshot.

    ``on_version(snapshot)`` is called once for each snapshot that becomes live (the middleware stores it, so
    every recorded version exists). ``validator(snapshot) -> problems`` guards the swap: a snapshot with
    problems is refused and the last good one stays live. ``check_interval`` (seconds) bounds how often the
    files are stat'ed; 0 checks on every use. With a validator, a change is loaded once two checks in a row
    see the same files (an editor that is still writing is not caught half way).
    """

    def __init__(self, root: Path, *, on_version: Callable[[TemplateSnapshot], None] | None = None,
                 validator: Validator | None = None, check_interval: float = 0.0) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise TemplateError(f"prompts directory {self.root} does not exist")
        self.on_version = on_version
        self.validator = validator
        self.check_interval = check_interval
        self._lock = threading.RLock()
        self._live: TemplateSnapshot | None = None
        self._signature: tuple | None = None
        self._settling: tuple | None = None
        self._checked = float("-inf")
        self._rejected: Rejection | None = None
        self._live_since: datetime | None = None
        self._pin: contextvars.ContextVar[TemplateSnapshot | None] = contextvars.ContextVar(
            f"rag_mw_template_pin_{id(self)}", default=None)

    # -- the live snapshot ---------------------------------------------------------------------------

    def files(self) -> list[Path]:
        return _template_files(self.root)

    def _current_signature(self) -> tuple:
        sig = []
        for p in self.files():
            try:
                st = p.stat()
            except FileNotFoundError:  # removed between the listing and the stat
                continue
            sig.append((str(p), st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino))  # ino: atomic renames
        return tuple(sig)

    def watch(self, *, validator: Validator | None, check_interval: float) -> None:
        """Turn on guarded hot reload (the server): edits are validated before they go live."""
        with self._lock:
            self.validator = validator
            self.check_interval = check_interval
            self._checked = float("-inf")

    def current(self) -> TemplateSnapshot:
        """The live snapshot, after picking up edits (at most every ``check_interval`` seconds)."""
        live = self._live
        if live is not None:
            if time.monotonic() - self._checked < self.check_interval:
                return live
            if not self._lock.acquire(blocking=False):
                return live  # another thread is checking (maybe linting an edit): never wait behind it
        else:
            self._lock.acquire()
        try:
            return self._refresh()
        finally:
            self._lock.release()

    def _refresh(self) -> TemplateSnapshot:
        with self._lock:
            if self._live is not None and time.monotonic() - self._checked < self.check_interval:
                return self._live
            self._checked = time.monotonic()
            sig = self._current_signature()
            if sig == self._signature:
                return self._live_or_raise()
            if self.validator is not None and self._live is not None and sig != self._settling:
                self._settling = sig  # an editor may still be writing: load once the files stop changing
                return self._live
            try:
                snapshot = TemplateSnapshot.load(self.root)
            except TemplateError as exc:
                if self.validator is None:
                    raise
                self._reject(sig, "", [exc.one_line()])
                return self._live_or_raise()
            if self._live is not None and snapshot.version == self._live.version:
                self._signature = sig  # touched, same content
                self._rejected = None
                return self._live
            problems = self.validator(snapshot) if self.validator is not None else []
            if problems:
                self._reject(sig, snapshot.version, problems)
                return self._live_or_raise()
            previous = self._live
            self._live, self._signature, self._rejected = snapshot, sig, None
            self._live_since = datetime.now(UTC)
            if previous is not None:
                log.info(json.dumps({"event": "templates_reloaded", "from": previous.version,
                                     "to": snapshot.version, "root": str(self.root)}))
            self._announce(snapshot)
            return snapshot

    def _reject(self, sig: tuple, version: str, problems: list[str]) -> None:
        self._signature = sig  # the same broken content is not checked again; the next edit is
        self._rejected = Rejection(version=version, problems=problems)
        log.error(json.dumps({"event": "templates_rejected", "version": version, "root": str(self.root),
                              "live": self._live.version if self._live else None, "problems": problems[:20]}))

    def _live_or_raise(self) -> TemplateSnapshot:
        if self._live is not None:
            return self._live
        problems = self._rejected.problems if self._rejected else ["no template set loaded"]
        raise TemplateError(f"no good template set to serve: {problems[0]}"
                            + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""), path=str(self.root))

    def _announce(self, snapshot: TemplateSnapshot) -> None:
        if self.on_version is None:
            return
        try:
            self.on_version(snapshot)
        except Exception as exc:  # noqa: BLE001 - storing a snapshot must not take requests down
            log.warning("template version %s not stored: %s", snapshot.version, exc)

    def status(self) -> dict[str, Any]:
        """For /rag/health: the live version and, when the newest edit was refused, why."""
        try:
            live = self.current()
        except TemplateError:
            live = None
        rejected = self._rejected
        return {
            "ok": rejected is None and live is not None,
            "version": live.version if live else None,
            "live_since": self._live_since.isoformat() if self._live_since else None,
            "rejected": None if rejected is None else {"version": rejected.version, "problems": rejected.problems,
                                                       "at": rejected.at.isoformat()},
        }

    @contextlib.contextmanager
    def pinned(self, snapshot: TemplateSnapshot | None = None) -> Iterator[TemplateSnapshot]:
        """Every render of this set inside uses one snapshot (``snapshot``, or the live one). Nested pins
        without a snapshot keep the outer one."""
        outer = self._pin.get()
        if snapshot is None and outer is not None:
            yield outer
            return
        token = self._pin.set(snapshot or self.current())
        try:
            yield self._pin.get()  # type: ignore[misc]
        finally:
            self._pin.reset(token)

    def snapshot(self) -> TemplateSnapshot:
        """The snapshot a render uses now: the pinned one, else the one this call started with, else the live one."""
        pinned = self._pin.get()
        if pinned is not None:
            return pinned
        call = _CALL.get()
        if call is None:
            return self.current()
        found = call.get(id(self))
        if found is None:
            found = call[id(self)] = self.current()
        return found

    def derive(self, root: Path) -> TemplateSet:
        """Another prompts directory watched the same way (stored versions, validator, check interval): an A/B
        variant's template set."""
        return TemplateSet(root, on_version=self.on_version, validator=self.validator,
                           check_interval=self.check_interval)

    # -- the API the assembler uses -------------------------------------------------------------------

    @property
    def version(self) -> str:
        """Content hash of the set in use (see :func:`version_of`)."""
        return self.snapshot().version

    def source_path(self, name: str, domain: str | None = None) -> Path:
        override = self.root / domain / f"{name}.j2" if domain else None
        if override is not None and override.is_file():
            return override
        return self.root / f"{name}.j2"

    def render(self, name: str, *, for_domain: str | None = None, **context: Any) -> str:
        """Render ``name`` (with ``for_domain``'s override if it has one) with the given context."""
        return self.snapshot().render(name, for_domain=for_domain, **context)

    def check(self, domain: str | None = None) -> list[str]:
        """Parse every template on disk visible to a domain; 'file:line: message' strings (empty if fine)."""
        try:
            return TemplateSnapshot.load(self.root).check(domain)
        except TemplateError as exc:
            return [exc.one_line()]


def _where(exc: BaseException, path: str) -> dict[str, Any]:
    """The file and line of the innermost template frame (an included file names itself, not its includer)."""
    tb = exc.__traceback__
    where: dict[str, Any] = {"path": path, "line": None}
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(".j2"):
            where = {"path": tb.tb_frame.f_code.co_filename, "line": tb.tb_lineno}
        tb = tb.tb_next
    return where
