"""Step guidance: what kind of step each clause of a request asks for, by nearest labelled clauses.

A small model picks the wrong operation type far more often than it fills arguments wrongly. A domain can
ship a bank of labelled clauses (``steps.jsonl``: ``{"text", "label"}``) and a splitter; each clause of a
request is then labelled by a similarity vote over the bank (and over clauses of the curated examples whose
clause count matches their step count). The labels go to the domain's grammar hook as ``context["steps"]``,
which can restrict each position of the answer to the labels found, so the model chooses among a few
plausible step types instead of all of them. Clauses labelled ``none`` (chart requests, politeness) ask for
no step.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..memory.embedding import CachedEmbedder
from ..errors import DomainError

__all__ = ["StepGuide", "StepSpec", "StepVote", "default_split", "path_labels", "regex_split", "yaml_rule"]

NO_STEP = "none"
RECENT_REQUESTS = 16  # requests whose clauses a StepGuide keeps


class StepSpec(BaseModel):
    """domain.yaml ``steps:``."""

    model_config = ConfigDict(extra="forbid")
    bank: str = "steps.jsonl"
    split: str  # file.py:function(request) -> list of clauses
    label_of: str | None = None  # file.py:function(answer) -> list of step labels, to learn from examples
    rule: str | None = None  # file.py:function(clause, request) -> labels or None: cues that decide outright
    k: int = Field(5, ge=1, le=50)
    margin: float = Field(0.9, gt=0.0, le=1.0, description="labels scoring within this ratio of the best are allowed")
    max_labels: int = Field(2, ge=1, le=5)
    min_similarity: float = Field(0.3, ge=-1.0, le=1.0, description="below this a clause gets no guidance")


class StepVote(BaseModel):
    clause: str
    labels: list[str]  # allowed labels, best first; empty = no guidance for this clause
    scores: dict[str, float]


def read_bank(path: Path) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    if not path.exists():
        raise DomainError("steps bank not found", path=str(path))
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
            items.append((str(data["text"]), str(data["label"])))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DomainError(f"each line needs text and label ({type(exc).__name__})", path=str(path),
                              line=lineno) from None
    return items


class StepGuide:
    def __init__(self, spec: StepSpec, bank: list[tuple[str, str]], split: Callable[[str], list[str]],
                 embedder: CachedEmbedder, rule: Callable[[str, str], list[str] | None] | None = None) -> None:
        self.spec = spec
        self.split = split
        self.rule = rule
        self.embedder = embedder
        self.texts = [t for t, _ in bank]
        self.labels = np.array([label for _, label in bank], dtype=object)
        self._vectors: np.ndarray | None = None
        self._lock = threading.Lock()
        self._recent: dict[str, list[tuple[str, list[str] | None]]] = {}  # request -> its clauses (a few)

    def _bank_vectors(self) -> np.ndarray:
        with self._lock:
            if self._vectors is None:
                self._vectors = self.embedder.encode(self.texts)
            return self._vectors

    def _clauses(self, request: str) -> list[tuple[str, list[str] | None]]:
        """Each clause with the labels its rule decided outright (None: the vote decides). A request asks for
        them twice (:meth:`pending`, then :meth:`vote`), so the last few requests' are kept."""
        found = self._recent.get(request)
        if found is None:
            found = [(c, (self.rule(c, request) or None) if self.rule is not None else None)
                     for c in self.split(request) if c.strip()]
            with self._lock:
                while len(self._recent) >= RECENT_REQUESTS:
                    self._recent.pop(next(iter(self._recent)))
                self._recent[request] = found
        return found

    def pending(self, request: str) -> list[str]:
        """The clauses that need a vote, so a caller can embed them in the same batch as the request."""
        return [clause for clause, decided in self._clauses(request) if decided is None] if self.texts else []

    def vote(self, request: str, vectors: dict[str, np.ndarray] | None = None) -> list[StepVote]:
        """``vectors`` may carry clause embeddings computed already (see :meth:`pending`)."""
        clauses = self._clauses(request)
        if not clauses or not self.texts:
            return []
        bank = self._bank_vectors()
        vectors = dict(vectors or {})
        missing = [c for c, decided in clauses if decided is None and c not in vectors]
        if missing:
            vectors.update(zip(missing, self.embedder.encode(missing), strict=True))
        votes: list[StepVote] = []
        for clause, decided in clauses:
            if decided:
                votes.append(StepVote(clause=clause, labels=list(decided), scores={"rule": 1.0}))
                continue
            row = bank @ vectors[clause]
            top = np.argsort(-row)[: self.spec.k]
            if row[top[0]] < self.spec.min_similarity:
                votes.append(StepVote(clause=clause, labels=[], scores={}))
                continue
            scores: dict[str, float] = {}
            for i in top:
                scores[self.labels[i]] = scores.get(self.labels[i], 0.0) + float(row[i])
            ranked = sorted(scores.items(), key=lambda kv: -kv[1])
            best = ranked[0][1]
            allowed = [label for label, score in ranked if score >= self.spec.margin * best][: self.spec.max_labels]
            votes.append(StepVote(clause=clause, labels=allowed, scores={k: round(v, 3) for k, v in ranked}))
        return votes

    def steps(self, request: str, vectors: dict[str, np.ndarray] | None = None) -> list[list[str]]:
        """Allowed labels per step, in request order. Clauses voted 'none' are skipped; a clause with no
        confident vote makes the whole plan unguided (an empty list), since the count is then unknown."""
        out: list[list[str]] = []
        for vote in self.vote(request, vectors):
            if not vote.labels:
                return []
            if vote.labels[0] == NO_STEP:
                continue
            out.append([label for label in vote.labels if label != NO_STEP] or [vote.labels[0]])
        return out


_CLAUSE_BREAK = re.compile(
    r"(?:[.;!?]+\s+|\n+|,?\s+(?:and\s+)?then\s+|,\s*and\s+(?=[a-z])|,\s*(?=(?:also|afterwards|after that|finally|next|"
    r"plus)\b)|\s+(?:after that|afterwards|finally|and also)\s+)", re.I)


def default_split(request: str) -> list[str]:
    """The core's clause splitter: sentences, lines, and 'then' / ', and' / 'after that' joints."""
    return [c.strip(" ,.;") for c in _CLAUSE_BREAK.split(request) if c and c.strip(" ,.;")]


_ABBREVIATIONS = re.compile(r"\b(i\.e|e\.g|etc|vs)\.", re.I)


def regex_split(spec: Any, body_of: Callable[[str], str]) -> Callable[[str], list[str]]:
    """A splitter from domain.yaml's ``split: {breaks, drop, lead}`` (see :class:`SplitSpec`); ``body_of`` takes
    the context lines off a request."""
    breaks = re.compile(spec.breaks, re.I) if spec.breaks else _CLAUSE_BREAK
    drop = re.compile(spec.drop, re.I) if spec.drop else None
    lead = re.compile(spec.lead, re.I) if spec.lead else None

    def split(request: str) -> list[str]:
        body = _ABBREVIATIONS.sub(lambda m: m.group(1), body_of(request)).strip().rstrip(".!?")
        out: list[str] = []
        pending = ""
        for part in breaks.split(body):
            clause = (drop.sub("", part or "") if drop else part or "").strip(" ,.:;")
            if clause and pending:
                clause, pending = f"{pending}, {clause}", ""
            if clause and lead is not None and lead.match(clause) and not out and "," not in clause:
                pending = clause
            elif clause:
                out.append(clause)
        return out + [pending] if pending else out

    return split


_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")  # as votes.expand reads them
_LOOKAROUND = ("(?=", "(?!", "(?<=", "(?<!")
# a group referred to from elsewhere, a comment, verbose mode: parts could not be read apart safely
_UNSPLITTABLE = re.compile(r"\\[1-9]|\(\?P=|\(\?\(|\(\?#|\(\?[aiLmsu-]*x")


def _top_level(pattern: str) -> list[tuple[int, int]]:
    """(index, depth) of each ``(``, ``)`` and ``|`` of a pattern outside escapes and character classes;
    depth is the nesting before the character."""
    out: list[tuple[int, int]] = []
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += 1 + pattern.startswith("^", i + 1)
            i += pattern.startswith("]", i)  # a ] first in a class is a literal
            continue
        elif c in "()|":
            out.append((i, depth))
            depth += (c == "(") - (c == ")")
        i += 1
    return out


def rule_parts(pattern: str) -> list[str]:
    """A rule pattern ``^(?=A)(?!B)REST`` as its parts ``["(?=A)", "(?!B)", "REST"]``: at the start of a text
    (``^`` without MULTILINE) the whole matches exactly when every part matches there, since each lookaround
    is tested at that one position and REST starts there too. The parts without a ``{context}`` come first.
    Any other shape (no leading ``^``, a ``|`` at the top level, a backreference, a repeated lookaround ...)
    is one part: the pattern itself."""
    if not pattern.startswith("^") or _UNSPLITTABLE.search(pattern):
        return [pattern]
    marks = _top_level(pattern)
    if any(pattern[i] == "|" and depth == 0 for i, depth in marks):
        return [pattern]
    closing = {}  # index of each top-level ( -> index of its )
    opened: list[int] = []
    for i, depth in marks:
        if pattern[i] == "(":
            opened.append(i)
        elif pattern[i] == ")" and opened:
            start = opened.pop()
            if depth == 1:
                closing[start] = i
    parts, i = [], 1
    while pattern.startswith(_LOOKAROUND, i) and i in closing:
        end = closing[i]
        if pattern[end + 1 : end + 2] in ("*", "+", "?", "{"):
            return [pattern]
        parts.append(pattern[i : end + 1])
        i = end + 1
    if not parts:
        return [pattern]
    parts += [pattern[i:]] if i < len(pattern) else []
    return sorted(parts, key=lambda part: bool(_PLACEHOLDER.search(part)))  # stable: static parts first


def yaml_rule(rules: list[Any], hook: Callable[[str, str], list[str] | None] | None = None, *,
              context_of: Callable[[str], dict[str, list[str]]] | None = None
              ) -> Callable[[str, str], list[str] | None] | None:
    """A clause rule from domain.yaml ``{pattern, label}`` pairs (the first pattern found in the clause
    decides; ``{name}`` in a pattern stands for the values of a declared context), before an optional
    Python rule hook."""
    if not rules:
        return hook
    from .grounding import compiled, gate
    from .rule_match import expand

    # (label, whole pattern?, [(part, names a context?, its gate)]): only the parts that name a context change
    # with a request's values (and are compiled per set of values), and only when the others matched and the
    # part's gate (any text where its one context stands, compiled once) finds it could
    prepared = [(spec.label, len(parts) == 1, [(p, bool(names), gate(p, r"(?:[\s\S]+?)", names[0], re.I)
                                                if len(names) == 1 else None)
                                               for p in parts for names in [_PLACEHOLDER.findall(p)]])
                for spec in rules for parts in [rule_parts(spec.pattern)]]

    def found(part: str, dynamic: bool, screen: re.Pattern[str] | None, context: dict[str, list[str]], clause: str,
              whole: bool) -> bool:
        if screen is not None and not (screen.search(clause) if whole else screen.match(clause)):
            return False
        regex = compiled(expand(part, context, clause) if dynamic else part, re.I)
        return bool(regex.search(clause) if whole else regex.match(clause))

    def rule(clause: str, request: str) -> list[str] | None:
        context = context_of(request) if context_of is not None else {}
        for label, whole, parts in prepared:
            if all(found(part, dynamic, screen, context, clause, whole) for part, dynamic, screen in parts):
                return [label]
        return hook(clause, request) if hook is not None else None

    return rule


def path_labels(path: tuple[str, ...]) -> Callable[[Any], list[str]]:
    """The step labels of an answer: the values at a path such as ``/operations/*/type``, in order."""
    from .paths import values_at

    def labels(answer: Any) -> list[str]:
        return [str(v) for v in values_at(answer, path)]

    return labels


def example_clauses(examples: list[Any], split: Callable[[str], list[str]],
                    label_of: Callable[[Any], list[str]]) -> list[tuple[str, str]]:
    """(clause, label) pairs from curated examples whose clauses line up one to one with their steps."""
    pairs: list[tuple[str, str]] = []
    for example in examples:
        clauses = [c for c in split(example.question) if c.strip()]
        labels = label_of(example.answer)
        if clauses and len(clauses) == len(labels):
            pairs.extend(zip(clauses, labels, strict=True))
    return pairs
