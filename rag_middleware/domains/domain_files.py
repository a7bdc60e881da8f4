"""A domain directory's files, read with errors that name file and line: domain.yaml's key lines, the
domain's own Python objects (``file.py:Name``, imported as a fresh package) and its jsonl files."""

from __future__ import annotations

import importlib
import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import DomainError

__all__ = ["fresh_package", "key_lines", "line_of", "load_object", "read_jsonl"]


def key_lines(path: Path, text: str) -> dict[str, int]:
    """Key -> line number in a YAML file, for error messages: top-level keys (``vote``) and the keys of a
    top-level mapping (``vote./level``), so an error in one entry of a section names that entry's line."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[str(key.value)] = key.start_mark.line + 1
            if isinstance(value, yaml.MappingNode):
                for inner, _ in value.value:
                    lines.setdefault(f"{key.value}.{inner.value}", inner.start_mark.line + 1)
    return lines


def line_of(lines: dict[str, int], where: str) -> int | None:
    """The line of the most specific key that ``where`` (``vote./level.rules.0``, ``ground``) starts with."""
    parts = where.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in lines:
            return lines[".".join(parts[:n])]
    return None


def _domain_package(base: Path) -> str:
    return f"rag_mw_domain_{re.sub(r'[^0-9A-Za-z_]', '_', base.name)}"


def fresh_package(base: Path) -> None:
    """Make the domain dir a fresh package, so its files can import each other (``from .model import X``)
    and a load after an edit executes the edited files, never a stale copy."""
    package = _domain_package(base)
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]
    module = types.ModuleType(package)
    module.__path__ = [str(base)]
    module.__file__ = None
    sys.modules[package] = module


def load_object(ref: str, base: Path, *, what: str, spec_path: Path, line: int | None) -> Any:
    """Resolve 'file.py:Name' (relative to the domain dir, imported as a module of the domain's package) or
    'package.module:Name'."""
    if ":" not in ref:
        raise DomainError(f"{what} must look like 'file.py:Name' or 'package.module:Name', got {ref!r}",
                          path=str(spec_path), line=line)
    module_ref, attr = ref.rsplit(":", 1)
    try:
        if module_ref.endswith(".py"):
            file = (base / module_ref).resolve()
            if not file.is_file() or file.parent != base.resolve():
                raise DomainError(f"{what}: file {module_ref} not found in {base.name}/", path=str(spec_path),
                                  line=line)
            package = _domain_package(base)
            if package not in sys.modules:
                fresh_package(base)
            module = importlib.import_module(f"{package}.{file.stem}")
        else:
            module = importlib.import_module(module_ref)
        return getattr(module, attr)
    except DomainError:
        raise
    except AttributeError:
        raise DomainError(f"{what}: {module_ref} has no {attr!r}", path=str(spec_path), line=line) from None
    except Exception as exc:  # noqa: BLE001 - user code failing to import
        raise DomainError(f"{what}: cannot import {module_ref}: {type(exc).__name__}: {exc}",
                          path=str(spec_path), line=line) from None


def read_jsonl(path: Path, model: type[BaseModel]) -> list[Any]:
    items: list[Any] = []
    if not path.exists():
        return items
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("//"):
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DomainError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=str(path), line=lineno) from None
        try:
            item = model.model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in err["loc"]) or "(line)"
            raise DomainError(f"{loc}: {err['msg']}", path=str(path), line=lineno) from None
        if item.id in seen:
            raise DomainError(f"duplicate id {item.id!r} (first on line {seen[item.id]})", path=str(path), line=lineno)
        seen[item.id] = lineno
        item.__dict__["_line"] = lineno
        items.append(item)
    return items
