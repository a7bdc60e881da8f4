"""Choosing examples for a prompt: kNN candidates -> dedup -> MMR order -> token budget. See SELECTION.md."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Candidate", "dedup", "fill_budget", "mmr_order", "rank_candidates", "select_negatives"]


@dataclass
class Candidate:
    id: str
    source: str  # curated | memory
    kind: str  # example | interaction | negative
    status: str  # validated | approved | curated | ...
    question: str
    answer: str
    vector: np.ndarray
    similarity: float = 0.0
    boost: float = 0.0
    reason: str = ""
    wrong: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def rank_score(self) -> float:
        return self.similarity + self.boost

    def rescored(self, similarity: float, boost: float | None = None) -> Candidate:
        """A copy with this request's similarity (and boost), as ``dataclasses.replace`` makes it (the other
        fields shared) in a third of the time: the curated candidates are copied for every request."""
        out = object.__new__(Candidate)
        out.__dict__.update(self.__dict__)
        out.similarity = similarity
        if boost is not None:
            out.boost = boost
        return out


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


@functools.lru_cache(maxsize=16_384)  # curated examples and hot memory records come back with every request
def content_key(question: str, answer: str) -> str:
    return hashlib.sha256(f"{_norm_text(question)}\0{_norm_text(answer)}".encode()).hexdigest()


def dedup(candidates: Sequence[Candidate], *, near_threshold: float, limit: int | None = None) -> list[Candidate]:
    """Drop exact duplicates (normalised question+answer) and near-duplicates (question cosine above the
    threshold). Candidates are considered best first, so the better-ranked twin survives. Stops once
    ``limit`` are kept."""
    ordered = sorted(candidates, key=lambda c: -c.rank_score)
    limit = len(ordered) if limit is None else limit
    kept: list[Candidate] = []
    seen: set[str] = set()
    kept_vectors: np.ndarray | None = None
    for cand in ordered:
        if len(kept) >= limit:
            break
        key = content_key(cand.question, cand.answer)
        if key in seen:
            continue
        if kept and near_threshold <= 1.0 and float((kept_vectors[: len(kept)] @ cand.vector).max()) > near_threshold:
            continue
        if kept_vectors is None:
            kept_vectors = np.empty((min(limit, len(ordered)), cand.vector.shape[0]), dtype=np.float32)
        seen.add(key)
        kept_vectors[len(kept)] = cand.vector
        kept.append(cand)
    return kept


def mmr_order(query: np.ndarray, vectors: np.ndarray, *, lam: float, k: int | None = None,
              relevance: np.ndarray | None = None) -> list[int]:
    """Maximal marginal relevance. Start with the most relevant, then repeatedly take the candidate that
    maximises ``lam * rel(q, d) - (1 - lam) * max_j cos(d, d_j)``. ``lam=1`` is pure similarity, ``lam=0``
    pure diversity. Returns indices into ``vectors`` in selection order (all of them when k is None)."""
    n = len(vectors)
    if n == 0:
        return []
    k = n if k is None else min(k, n)
    rel = relevance if relevance is not None else vectors @ query
    chosen = [int(np.argmax(rel))]
    max_sim = vectors @ vectors[chosen[0]]
    remaining = np.ones(n, dtype=bool)
    remaining[chosen[0]] = False
    while len(chosen) < k:
        scores = lam * rel - (1.0 - lam) * max_sim
        scores[~remaining] = -np.inf
        nxt = int(np.argmax(scores))
        chosen.append(nxt)
        remaining[nxt] = False
        max_sim = np.maximum(max_sim, vectors @ vectors[nxt])
    return chosen


def rank_candidates(query: np.ndarray, candidates: Sequence[Candidate], *, fetch_k: int, lam: float,
                    near_threshold: float, min_similarity: float) -> list[Candidate]:
    """Filter by min similarity, dedup, keep the best ``fetch_k``, and order them by MMR."""
    pool = [c for c in candidates if c.similarity >= min_similarity]
    pool = dedup(pool, near_threshold=near_threshold, limit=fetch_k)
    if not pool:
        return []
    vectors = np.stack([c.vector for c in pool])
    relevance = np.array([c.rank_score for c in pool], dtype=np.float32)
    return [pool[i] for i in mmr_order(query, vectors, lam=lam, relevance=relevance)]


def fill_budget(ordered: Sequence[Candidate], *, k: int, available: int,
                cost: Callable[[Candidate], int]) -> tuple[list[tuple[Candidate, int]], list[Candidate]]:
    """Take candidates in order while they fit. A misfit is skipped, not a stop: the next may fit.
    Returns (chosen with their token cost, skipped)."""
    chosen: list[tuple[Candidate, int]] = []
    skipped: list[Candidate] = []
    left = available
    for cand in ordered:
        if len(chosen) >= k:
            break
        tokens = cost(cand)
        if tokens <= left:
            chosen.append((cand, tokens))
            left -= tokens
        else:
            skipped.append(cand)
    return chosen, skipped


def select_negatives(candidates: Sequence[Candidate], *, k: int, min_similarity: float) -> list[Candidate]:
    """The k most similar negatives above a floor (a wrong answer to an unrelated question only confuses)."""
    if k <= 0:
        return []
    pool = sorted((c for c in candidates if c.similarity >= min_similarity), key=lambda c: -c.rank_score)
    out: list[Candidate] = []
    seen: set[str] = set()
    for cand in pool:
        key = content_key(cand.question, cand.wrong)
        if key not in seen:
            seen.add(key)
            out.append(cand)
        if len(out) >= k:
            break
    return out
