"""Per-domain overrides kept in the data dir, never in the repo: what ``tune`` chose and what an applied
suggestion (``stats --edits``) added. Versioned like templates: each version is an immutable file named by
its number and content hash, ``<data_dir>/overrides/<domain>/<n>-<hash>.yaml``, and ``live`` names the one in
use. The loader merges the live version over ``domain.yaml``:

- ``selection``, ``vote``, ``derive``, ``ground``, ``units``, ``cot``: merged key by key (the override wins);
- ``rules``: appended;
- ``negatives``: extra negative examples (``{id, question, wrong, why, right}``), after the curated ones.

Every version records why it was written (``reason``) and when.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["OverrideStore", "merge_override"]

MERGED = ("selection", "vote", "derive", "ground", "units", "cot")
ALLOWED = {*MERGED, "rules", "negatives", "reason", "created_at", "based_on"}


class OverrideStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, domain: str) -> Path:
        return self.root / domain

    def versions(self, domain: str) -> list[dict[str, Any]]:
        """Every version, oldest first: {version, file, reason, created_at, live}."""
        folder = self._dir(domain)
        if not folder.is_dir():
            return []
        live = self.live_name(domain)
        out = []
        for file in sorted(folder.glob("*.yaml"),
                           key=lambda p: int(p.name.split("-", 1)[0]) if p.name[0].isdigit() else -1):
            if not file.name[0].isdigit():
                continue
            data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
            out.append({"version": file.stem, "file": str(file), "reason": data.get("reason", ""),
                        "created_at": data.get("created_at", ""), "live": file.stem == live})
        return out

    def live_name(self, domain: str) -> str | None:
        pointer = self._dir(domain) / "live"
        return pointer.read_text(encoding="utf-8").strip() or None if pointer.is_file() else None

    def live(self, domain: str) -> dict[str, Any]:
        """The override in use ({} when there is none)."""
        name = self.live_name(domain)
        if not name:
            return {}
        file = self._dir(domain) / f"{name}.yaml"
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"override {file} cannot be read: {exc}") from None
        unknown = set(data) - ALLOWED
        if unknown:
            raise ConfigError(f"override {file}: unknown key(s) {', '.join(sorted(unknown))}")
        return data

    def write(self, domain: str, patch: dict[str, Any], *, reason: str, go_live: bool = True) -> str:
        """A new version: the live override with ``patch`` merged in. Returns its name."""
        unknown = set(patch) - ALLOWED
        if unknown:
            raise ConfigError(f"override: unknown key(s) {', '.join(sorted(unknown))}")
        base = self.live(domain)
        data = merge_override(base, patch)
        data.update(reason=reason, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    based_on=self.live_name(domain) or "")
        text = yaml.safe_dump(data, sort_keys=True, allow_unicode=True)
        folder = self._dir(domain)
        folder.mkdir(parents=True, exist_ok=True)
        number = 1 + max((int(p.name.split("-", 1)[0]) for p in folder.glob("*.yaml") if p.name[0].isdigit()),
                         default=0)
        name = f"{number}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
        _atomic_write(folder / f"{name}.yaml", text)
        if go_live:
            self.set_live(domain, name)
        return name

    def set_live(self, domain: str, name: str | None) -> None:
        """Point ``live`` at a version (None: no override)."""
        folder = self._dir(domain)
        if name is not None and not (folder / f"{name}.yaml").is_file():
            raise ConfigError(f"no override version {name!r} for {domain}")
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / "live", (name or "") + "\n")


def merge_override(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(base))  # a deep copy of plain data
    for key, value in patch.items():
        if key in MERGED and isinstance(value, dict):
            merged = dict(out.get(key) or {})
            for k, v in value.items():
                merged[k] = {**merged[k], **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
            out[key] = merged
        elif key in ("rules", "negatives"):
            out[key] = [*(out.get(key) or []), *[v for v in value if v not in (out.get(key) or [])]]
        else:
            out[key] = value
    return out


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
