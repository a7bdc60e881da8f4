"""Stage 2, select: pool the retrieved candidates with their boosts, rank them (kNN + dedup + MMR), pick the
negatives, and name the neighbours that vote. The algorithms are in ``selection.py``."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import SelectionSettings
from ..domains.votes import REVIEWED_STATUSES, Neighbour
from .ask import Switches
from .retriever import Retrieved
from .selection import Candidate, rank_candidates, select_negatives

__all__ = ["Selection", "Selector", "voters"]


@dataclass
class Selection:
    pool: list[Candidate]  # every example candidate with its similarity and boost (the voters come from here)
    ranked: list[Candidate]  # in the order the prompt builder takes them
    negatives: list[Candidate]


class Selector:
    def select(self, found: Retrieved, *, params: SelectionSettings, switches: Switches,
               exclude_ids: frozenset[str]) -> Selection:
        pool = self.pool(found, params=params, switches=switches, exclude_ids=exclude_ids)
        ranked = rank_candidates(found.query, pool, fetch_k=params.fetch_k, lam=params.mmr_lambda,
                                 near_threshold=params.near_dup_threshold, min_similarity=params.min_similarity)
        negatives: list[Candidate] = []
        if switches.negatives and params.use_negatives and params.negatives_k:
            candidates = [c.rescored(float(c.vector @ found.query)) for c in found.curated_negatives
                          if c.id not in exclude_ids]
            negatives = select_negatives(candidates + found.memory_negatives, k=params.negatives_k,
                                         min_similarity=params.negatives_min_similarity)
        return Selection(pool=pool, ranked=ranked, negatives=negatives)

    @staticmethod
    def pool(found: Retrieved, *, params: SelectionSettings, switches: Switches,
             exclude_ids: frozenset[str]) -> list[Candidate]:
        """Curated examples (a small boost) and reviewed answers (a larger one; a reviewed answer to a
        near-identical question comes first). Held-out ids never enter (cross-validation in tune)."""
        if not (switches.examples and params.use_examples):
            return []
        pool = [c.rescored(float(c.vector @ found.query), boost=params.curated_boost)
                for c in found.curated_examples if c.id not in exclude_ids]
        for cand in found.memory_examples:
            reviewed = cand.status in REVIEWED_STATUSES
            cand.boost = params.approved_boost if reviewed else 0.0
            if reviewed and cand.similarity >= params.near_identical:
                cand.boost = 1.0  # a reviewed answer to the same question is the first example
            pool.append(cand)
        if not switches.derive:  # derived fields off: the model writes them, so it is shown them
            for cand in pool:
                if "full" in cand.extra:
                    cand.answer = cand.extra["full"]
        return pool


def voters(pool: list[Candidate], params: SelectionSettings) -> list[Neighbour]:
    """Curated examples and reviewed answers vote; unreviewed answers (only pooled when learn = "all") count
    half, a reviewed answer to a near-identical question counts most, a close one (``reviewed_close``)
    ``reviewed_weight`` times, a far one as much as a curated example."""
    out = []
    for cand in pool:
        if cand.kind == "negative" or cand.extra.get("value") is None:
            continue
        if cand.source == "curated":
            out.append(Neighbour(cand.id, cand.similarity, cand.extra["value"], 1.0))
        elif cand.status in REVIEWED_STATUSES:
            near = cand.similarity >= params.near_identical
            trust = (params.near_identical_weight if near else params.reviewed_weight
                     if cand.similarity >= params.reviewed_close else 1.0)
            out.append(Neighbour(cand.id, cand.similarity, cand.extra["value"], trust, reviewed=True,
                                 near_identical=near, question=cand.question, vector=cand.vector))
        else:
            out.append(Neighbour(cand.id, cand.similarity, cand.extra["value"], 0.5))
    return out
