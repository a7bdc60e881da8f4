"""Example selection: MMR, dedup, token budget and negatives, on hand-made vectors."""

from __future__ import annotations

import numpy as np
import pytest

from rag_middleware.request.selection import Candidate, dedup, fill_budget, mmr_order, rank_candidates, select_negatives


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def cand(cid: str, vector, *, similarity: float = 0.5, question: str | None = None, answer: str | None = None,
         boost: float = 0.0, wrong: str = "") -> Candidate:
    return Candidate(id=cid, source="memory", kind="example", status="validated",
                     question=question if question is not None else f"question {cid}",
                     answer=answer if answer is not None else f"answer {cid}", vector=np.asarray(vector, np.float32),
                     similarity=similarity, boost=boost, wrong=wrong)


QUERY = unit(1, 0, 0)
# best match, its near-duplicate, and a less relevant but different one
BEST = unit(1, 0.05, 0)
TWIN = unit(1, 0.12, 0)
OTHER = unit(0.8, 0, 0.6)
VECTORS = np.stack([OTHER, TWIN, BEST])


# -- MMR --------------------------------------------------------------------------------------------------


def test_mmr_lambda_one_is_pure_similarity():
    order = mmr_order(QUERY, VECTORS, lam=1.0)
    assert order == [2, 1, 0]
    rel = VECTORS @ QUERY
    assert list(np.argsort(-rel)) == order


def test_mmr_lambda_zero_picks_the_diverse_item_second():
    order = mmr_order(QUERY, VECTORS, lam=0.0)
    assert order[0] == 2  # always starts with the most relevant
    assert order[1] == 0  # the different one, not the near-duplicate of the first
    assert order == [2, 0, 1]


def test_mmr_k_and_empty():
    assert mmr_order(QUERY, VECTORS, lam=0.5, k=2) == [2, 0]
    assert len(mmr_order(QUERY, VECTORS, lam=0.5, k=10)) == 3
    assert mmr_order(QUERY, np.zeros((0, 3), np.float32), lam=0.5) == []


def test_mmr_uses_given_relevance():
    order = mmr_order(QUERY, VECTORS, lam=1.0, relevance=np.array([0.9, 0.1, 0.2], np.float32))
    assert order == [0, 2, 1]


# -- dedup ------------------------------------------------------------------------------------------------


def test_dedup_drops_exact_duplicates_keeping_the_better_ranked():
    worse = cand("worse", unit(1, 0, 0), similarity=0.6, question="Sort by  Date", answer="ANSWER x")
    better = cand("better", unit(0, 1, 0), similarity=0.9, question="sort by date", answer="answer   x")
    other = cand("other", unit(0, 0, 1), similarity=0.7)
    kept = dedup([worse, other, better], near_threshold=2.0)  # near-dup check off: only exact keys count
    assert [c.id for c in kept] == ["better", "other"]


def test_dedup_drops_near_duplicates_above_threshold():
    low = cand("low", BEST, similarity=0.5)
    high = cand("high", TWIN, similarity=0.8)
    far = cand("far", OTHER, similarity=0.3)
    cos = float(BEST @ TWIN)
    assert cos > 0.99
    kept = dedup([low, far, high], near_threshold=0.95)
    assert [c.id for c in kept] == ["high", "far"]
    kept = dedup([low, far, high], near_threshold=0.999)  # below the threshold: both twins stay
    assert [c.id for c in kept] == ["high", "low", "far"]


def test_dedup_counts_boost_in_rank():
    a = cand("a", BEST, similarity=0.8)
    b = cand("b", TWIN, similarity=0.7, boost=0.2)
    assert [c.id for c in dedup([a, b], near_threshold=0.95)] == ["b"]


def test_rank_candidates_filters_dedups_and_orders():
    pool = [
        cand("best", BEST, similarity=0.99),
        cand("twin", TWIN, similarity=0.98),
        cand("other", OTHER, similarity=0.8),
        cand("weak", unit(0, 0, 1), similarity=0.1),
    ]
    out = rank_candidates(QUERY, pool, fetch_k=10, lam=0.5, near_threshold=0.95, min_similarity=0.2)
    assert [c.id for c in out] == ["best", "other"]
    out = rank_candidates(QUERY, pool, fetch_k=1, lam=0.5, near_threshold=0.95, min_similarity=0.2)
    assert [c.id for c in out] == ["best"]
    assert rank_candidates(QUERY, pool, fetch_k=5, lam=0.5, near_threshold=0.95, min_similarity=1.5) == []


# -- budget -----------------------------------------------------------------------------------------------


def test_fill_budget_skips_a_misfit_and_takes_a_later_smaller_one():
    ordered = [cand("a", BEST), cand("big", TWIN), cand("small", OTHER)]
    costs = {"a": 40, "big": 80, "small": 30}
    chosen, skipped = fill_budget(ordered, k=5, available=100, cost=lambda c: costs[c.id])
    assert [(c.id, t) for c, t in chosen] == [("a", 40), ("small", 30)]
    assert [c.id for c in skipped] == ["big"]


def test_fill_budget_honours_k_and_exact_fit():
    ordered = [cand(str(i), BEST) for i in range(5)]
    chosen, skipped = fill_budget(ordered, k=2, available=1000, cost=lambda c: 10)
    assert [c.id for c, _ in chosen] == ["0", "1"]
    assert skipped == []
    chosen, _ = fill_budget(ordered, k=5, available=30, cost=lambda c: 10)
    assert len(chosen) == 3  # 3 * 10 == 30 fits exactly
    chosen, skipped = fill_budget(ordered, k=5, available=0, cost=lambda c: 1)
    assert chosen == [] and len(skipped) == 5


# -- negatives --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "floor", "expected"), [
    (2, 0.0, ["n1", "n2"]),
    (5, 0.0, ["n1", "n2", "n3", "n4"]),
    (5, 0.5, ["n1", "n2"]),
    (5, 0.95, []),
])
def test_select_negatives_k_and_floor(k, floor, expected):
    negs = [
        cand("n3", OTHER, similarity=0.4, wrong="w3"),
        cand("n1", BEST, similarity=0.9, wrong="w1"),
        cand("n4", OTHER, similarity=0.1, wrong="w4"),
        cand("n2", TWIN, similarity=0.6, wrong="w2"),
    ]
    assert [c.id for c in select_negatives(negs, k=k, min_similarity=floor)] == expected


def test_select_negatives_k_zero_selects_nothing():
    negs = [cand("n1", BEST, similarity=0.9, wrong="w1"), cand("n2", TWIN, similarity=0.8, wrong="w2")]
    assert select_negatives(negs, k=0, min_similarity=0.0) == []


def test_select_negatives_drops_duplicate_wrong_answers():
    negs = [
        cand("n1", BEST, similarity=0.9, question="Q", wrong="same wrong"),
        cand("n2", TWIN, similarity=0.8, question="q", wrong="Same  wrong"),
        cand("n3", OTHER, similarity=0.7, question="q", wrong="another wrong"),
    ]
    assert [c.id for c in select_negatives(negs, k=2, min_similarity=0.0)] == ["n1", "n3"]


def test_rescored_is_a_replaced_copy():
    import dataclasses

    original = cand("a", unit(1, 0, 0), similarity=0.1, boost=0.2)
    original.extra["value"] = {"x": 1}
    for kwargs in ({"similarity": 0.7}, {"similarity": 0.7, "boost": 0.05}):
        copy = original.rescored(kwargs["similarity"], boost=kwargs.get("boost"))
        assert copy == dataclasses.replace(original, **kwargs) and type(copy) is Candidate
        assert copy.extra is original.extra and copy.vector is original.vector  # shared, as replace shares them
    assert (original.similarity, original.boost) == (0.1, 0.2)
