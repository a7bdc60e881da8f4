"""A cross-validation fold's domain, learnt from the fold's training examples only (for ``tune``).

A domain learns from its curated examples when it is loaded: inferred mechanisms (domains/infer.py), cue
words (votes.mine_cues), the per-clause bank (clauses.example_clauses) and the anchored lists
(anchors.AnchorBank); the retriever then judges its votes leave-one-out on the same examples. Holding a
fold's examples out of the prompt (``exclude_ids``) is not enough: all of that would still have seen them, and
a held-out answer would help score itself. So a fold's domain is loaded from a copy of the domain directory
whose examples.jsonl lacks the held-out examples (their lines left blank, so line numbers stay the same): the
loader rebuilds everything from the rest.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = ["FoldDomains"]


def _example_id(line: str) -> str | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return str(data["id"]) if isinstance(data, dict) and "id" in data else None


class FoldDomains:
    """Knowledge-base roots, one per held-out set, each holding a copy of the domain directory ``source``
    without the held-out examples; made on first use, removed by :meth:`close`."""

    def __init__(self, source: Path) -> None:
        self.source = Path(source)
        examples = self.source / "examples.jsonl"
        self._lines = examples.read_text(encoding="utf-8").splitlines() if examples.is_file() else []
        self._ids = [_example_id(line) if line.strip() and not line.lstrip().startswith("//") else None
                     for line in self._lines]
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._roots: dict[frozenset[str], Path] = {}

    def root(self, held_out: Iterable[str]) -> Path | None:
        """The root whose ``<domain>/`` was trained without ``held_out``; None when none of them is a curated
        example (the domain's own directory serves: nothing to leave out)."""
        drop = frozenset(held_out) & {i for i in self._ids if i is not None}
        if not drop:
            return None
        if drop not in self._roots:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="rag-mw-folds-")
            root = Path(self._tmp.name) / f"fold-{len(self._roots)}"
            copy = root / self.source.name
            shutil.copytree(self.source, copy, ignore=shutil.ignore_patterns("__pycache__", "examples.jsonl"))
            kept = ["" if i in drop else line for i, line in zip(self._ids, self._lines, strict=True)]
            (copy / "examples.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
            self._roots[drop] = root
        return self._roots[drop]

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._roots.clear()
