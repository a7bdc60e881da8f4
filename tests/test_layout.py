"""The package's layout is its flow: each room imports only rooms on a lower floor (or its own).

Floors, lowest first (each package's docstring says the same in words):
ground (errors, config, records, options) < llm, memory < templating < domains < request < analytics
< learning < server < cli. Two packages on one floor never import each other. Imports under
``if TYPE_CHECKING:`` are annotations, not dependencies, and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rag_middleware"
FLOORS = {
    "errors": 0, "config": 0, "records": 0, "options": 0,
    "llm": 1, "memory": 1,
    "templating": 2,
    "domains": 3,
    "request": 4,
    "analytics": 5,
    "learning": 6,
    "server": 7,
    "cli": 8,
}


def _room(module: str) -> str:
    """``rag_middleware.request.pipeline`` -> ``request``; the package face itself -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for each import of a rag_middleware module in one file."""
    module = _module_of(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if node.lineno in skip if hasattr(node, "lineno") else False:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target == "rag_middleware":  # from .. import x: x names the room
                found += [(node.lineno, f"rag_middleware.{a.name}") for a in node.names]
            elif target.startswith("rag_middleware"):
                found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("rag_middleware")]
    return found


def violations() -> list[str]:
    bad: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _room(_module_of(path))
        if source == "" or source == "__version__":  # the package face re-exports the public API
            continue
        assert source in FLOORS, f"{path}: room {source!r} has no floor in tests/test_layout.py"
        for line, target in imports_of(path):
            room = _room(target)
            if room in ("", "__version__") or room == source:
                continue
            assert room in FLOORS, f"{path}:{line}: imports {target}, a room with no floor"
            if FLOORS[room] >= FLOORS[source] and not (FLOORS[source] == 0 and FLOORS[room] == 0):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {source} (floor {FLOORS[source]}) "
                           f"imports {target} (floor {FLOORS[room]})")
    return bad


def test_imports_only_go_down_the_flow():
    assert violations() == []


def test_every_package_says_what_it_owns_and_may_import():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc, f"{init}: the docstring must say what the package may import"


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    """A lower room reaching up is reported (the test above cannot pass vacuously)."""
    fake = PACKAGE / "memory" / "_layout_probe.py"
    fake.write_text("from ..request.pipeline import Middleware\n")
    try:
        assert any("_layout_probe.py:1: memory (floor 1) imports rag_middleware.request.pipeline" in v
                   for v in violations())
    finally:
        fake.unlink()


@pytest.mark.parametrize("room", sorted(set(FLOORS) - {"errors", "config", "records", "options"}))
def test_every_floor_is_a_package(room):
    assert (PACKAGE / room / "__init__.py").is_file()


MAX_MODULE_LINES = 500


def test_no_module_is_over_the_size_guideline():
    """A module of more than ~500 lines does more than one thing: split it by what it does (as
    ``domains/authoring.py``, 509 lines, became ``scaffolding.py`` for ``domains new`` and ``authoring.py``
    for ``domains check``)."""
    long = {str(p.relative_to(PACKAGE.parent)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}, f"over {MAX_MODULE_LINES} lines, split by concern: {long}"
