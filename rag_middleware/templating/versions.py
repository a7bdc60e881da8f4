"""Template versions and labels under the data dir.

A **version** is an immutable snapshot of a template set, named by its content hash
(:func:`rag_middleware.templating.engine.version_of`) and kept as a directory of files,
``<data_dir>/templates/<version>/`` (written to a temporary directory and renamed into place, and checked
against its name when loaded). A **label** (production, candidate, ...) points at a version; ``promote``
moves it and appends to the label history. Versions and labels are listed in SQLite (migration
``0007_template_versions``). Anything that names a version accepts a unique prefix of it or a label.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime, UTC
from pathlib import Path

from pydantic import BaseModel

from ..config import Settings
from ..memory.db import connect
from ..errors import ConfigError, StoreError, TemplateError
from .engine import TemplateSnapshot, read_templates, version_of

__all__ = ["LabelEvent", "TemplateStore", "TemplateVersion", "resolve_template_dir"]

LABEL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
VERSION_RE = re.compile(r"^[0-9a-f]{12}$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class TemplateVersion(BaseModel):
    version: str
    created_at: str
    source: str = ""
    files: int
    labels: list[str] = []


class LabelEvent(BaseModel):
    label: str
    version: str
    previous: str | None = None
    at: str
    note: str = ""


class TemplateStore:
    def __init__(self, data_dir: Path, db_path: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "templates"
        self.db_path = Path(db_path) if db_path is not None else self.data_dir / "rag.db"

    @classmethod
    def from_settings(cls, settings: Settings) -> TemplateStore:
        return cls(settings.data_dir, settings.db_path)

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        conn = connect(self.db_path)  # a short-lived connection: the store is used rarely (new versions, CLI)
        try:
            yield conn
        except sqlite3.Error as exc:
            raise StoreError(f"template store {self.db_path}: {exc}") from None
        finally:
            conn.close()

    # -- versions ------------------------------------------------------------------------------------

    def path(self, version: str) -> Path:
        return self.root / version

    def save(self, snapshot: TemplateSnapshot, *, source: str | None = None) -> str:
        """Store a snapshot (idempotent: a version is written once and never changed). Returns its version."""
        version = snapshot.version
        target = self.path(version)
        if not target.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
            try:
                for rel, text in snapshot.files.items():
                    path = tmp / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text, encoding="utf-8")
                tmp.mkdir(parents=True, exist_ok=True)  # an empty set is a version too
                try:
                    tmp.rename(target)
                except OSError:
                    if not target.is_dir():  # not a concurrent writer of the same version: a real failure
                        raise
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        with self._db() as conn:
            conn.execute("INSERT OR IGNORE INTO template_versions (version, created_at, source, files)"
                         " VALUES (?, ?, ?, ?)", (version, _now(), source if source is not None else snapshot.source,
                                                  len(snapshot.files)))
        return version

    def save_dir(self, path: Path) -> TemplateSnapshot:
        """Snapshot a prompts directory as it is now."""
        snapshot = TemplateSnapshot.load(path)
        self.save(snapshot, source=str(Path(path).resolve()))
        return snapshot

    def versions(self) -> list[TemplateVersion]:
        """Stored versions, newest first, with the labels pointing at each."""
        with self._db() as conn:
            rows = conn.execute("SELECT version, created_at, source, files FROM template_versions"
                                " ORDER BY created_at DESC, version").fetchall()
            labels = conn.execute("SELECT label, version FROM template_labels ORDER BY label").fetchall()
        by_version: dict[str, list[str]] = {}
        for label, version in labels:
            by_version.setdefault(version, []).append(label)
        return [TemplateVersion(version=v, created_at=c, source=s, files=f, labels=by_version.get(v, []))
                for v, c, s, f in rows]

    def labels(self) -> dict[str, tuple[str, str]]:
        """label -> (version, updated_at)."""
        with self._db() as conn:
            rows = conn.execute("SELECT label, version, updated_at FROM template_labels ORDER BY label").fetchall()
        return {label: (version, at) for label, version, at in rows}

    def history(self, label: str | None = None) -> list[LabelEvent]:
        with self._db() as conn:
            rows = conn.execute(
                "SELECT label, version, previous, at, note FROM template_label_events"
                + (" WHERE label = ?" if label else "") + " ORDER BY seq", (label,) if label else ()).fetchall()
        return [LabelEvent(label=r[0], version=r[1], previous=r[2], at=r[3], note=r[4]) for r in rows]

    def resolve(self, ref: str) -> str:
        """A label, a version or a unique prefix of one (4+ hex digits) -> the full version."""
        ref = ref.strip()
        with self._db() as conn:
            row = conn.execute("SELECT version FROM template_labels WHERE label = ?", (ref,)).fetchone()
            if row:
                return row[0]
            if not re.fullmatch(r"[0-9a-f]{4,12}", ref):
                known = [r[0] for r in conn.execute("SELECT label FROM template_labels ORDER BY label")]
                raise TemplateError(f"no template label {ref!r} (labels: {', '.join(known) or 'none yet'}); "
                                    "a version is 4-12 hex digits of its hash")
            matches = [r[0] for r in conn.execute(
                "SELECT version FROM template_versions WHERE version LIKE ? ORDER BY version", (ref + "%",))]
        if not matches:
            raise TemplateError(f"no stored template version {ref!r}; `rag-middleware prompts list` shows them")
        if len(matches) > 1:
            raise TemplateError(f"template version prefix {ref!r} is ambiguous: {', '.join(matches)}")
        return matches[0]

    def load(self, ref: str) -> TemplateSnapshot:
        """The stored snapshot a label or version names, checked against its content hash."""
        version = self.resolve(ref)
        path = self.path(version)
        if not path.is_dir():
            raise TemplateError(f"template version {version} is listed but its files are gone", path=str(path))
        files = read_templates(path)
        if version_of(files) != version:
            raise TemplateError(f"template version {version} was modified after it was stored "
                                f"(its content hashes to {version_of(files)}); versions are immutable",
                                path=str(path))
        return TemplateSnapshot(files, root=path, source=f"version {version}")

    # -- labels --------------------------------------------------------------------------------------

    def promote(self, label: str, ref: str, *, note: str = "") -> tuple[str | None, str]:
        """Point ``label`` at the version ``ref`` names; returns (previous version or None, version)."""
        if not LABEL_RE.match(label):
            raise ConfigError(f"label {label!r} must match {LABEL_RE.pattern}")
        if VERSION_RE.match(label):
            raise ConfigError(f"label {label!r} looks like a version hash; pick a name")
        version = self.load(ref).version  # exists and is intact
        with self._db() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT version FROM template_labels WHERE label = ?", (label,)).fetchone()
                previous = row[0] if row else None
                at = _now()
                conn.execute("INSERT INTO template_labels (label, version, updated_at) VALUES (?, ?, ?)"
                             " ON CONFLICT(label) DO UPDATE SET version = excluded.version,"
                             " updated_at = excluded.updated_at", (label, version, at))
                conn.execute("INSERT INTO template_label_events (label, version, previous, at, note)"
                             " VALUES (?, ?, ?, ?, ?)", (label, version, previous, at, note))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return previous, version


def resolve_template_dir(settings: Settings, ref: str | Path) -> Path:
    """``--template-set``: a prompts directory as given, else a label or version from the store."""
    path = Path(ref)
    if path.is_dir():
        return path
    text = str(ref)
    if "/" in text or text.startswith("."):
        raise ConfigError(f"--template-set {text} is not a directory of templates")
    try:
        return TemplateStore.from_settings(settings).load(text).root  # type: ignore[return-value]
    except TemplateError as exc:
        raise ConfigError(f"--template-set {text} is neither a directory nor a stored label or version: "
                          f"{exc.one_line().removeprefix('template error: ')}") from None
