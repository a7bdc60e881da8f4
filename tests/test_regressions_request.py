"""Regressions the rest of the suite let through: selection's dedup threshold, escalation timing, JSON
extraction from answers with several fenced blocks, the cap on error summaries, and the total deadline.

Each test pins one boundary that a small, realistic code change would move."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError, create_model

from rag_middleware import Middleware
from rag_middleware.domains.validation import (
    MAX_ERRORS,
    ExtractionError,
    JSONSchemaValidator,
    PydanticValidator,
    extract_json,
    summarize_pydantic_errors,
)
from rag_middleware.errors import GenerationTimeoutError
from rag_middleware.llm.tokens import ApproxTokenCounter
from rag_middleware.request.selection import Candidate, dedup, fill_budget, rank_candidates, select_negatives
from tests.conftest import FakeLLM

Q = "Columns: price, qty\nsort by price, cheapest first"
GOOD = {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "price", "ascending": True}}}]}
WRONG_COLUMN = {**GOOD, "operations": [{"type": "sort", "execution_instructions": {
    "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "cost", "ascending": True}}}]}


# -- selection: the dedup threshold is exclusive ------------------------------------------------------------


def _cand(cid: str, vector, *, similarity: float = 0.5, boost: float = 0.0, question: str | None = None,
          answer: str | None = None, wrong: str = "") -> Candidate:
    return Candidate(id=cid, source="memory", kind="example", status="validated",
                     question=question or f"question {cid}", answer=answer or f"answer {cid}",
                     vector=np.asarray(vector, dtype=np.float32), similarity=similarity, boost=boost, wrong=wrong)


# cosines that are exact in float32: A.B = 0.5, A.C = 0.75
A = [1.0, 0.0]
B = [0.5, float(np.sqrt(0.75))]
C = [0.75, float(np.sqrt(1 - 0.75**2))]


def test_dedup_keeps_a_candidate_exactly_at_the_threshold_and_drops_one_above_it():
    kept = dedup([_cand("a", A, similarity=0.9), _cand("b", B, similarity=0.8)], near_threshold=0.5)
    assert [c.id for c in kept] == ["a", "b"]  # cosine 0.5 is not above 0.5: not a near-duplicate
    kept = dedup([_cand("a", A, similarity=0.9), _cand("c", C, similarity=0.8)], near_threshold=0.5)
    assert [c.id for c in kept] == ["a"]  # cosine 0.75 is above it: the worse twin goes
    kept = dedup([_cand("a", A, similarity=0.9), _cand("c", C, similarity=0.8)], near_threshold=0.75)
    assert [c.id for c in kept] == ["a", "c"]


def test_dedup_keeps_the_better_ranked_twin_and_honours_the_limit():
    worse, better = _cand("worse", A, similarity=0.5), _cand("better", A, similarity=0.4, boost=0.2)
    assert [c.id for c in dedup([worse, better], near_threshold=0.99)] == ["better"]
    same_text = [_cand("x", A, question="Q", answer="A"), _cand("y", B, question=" q ", answer="a")]
    assert [c.id for c in dedup(same_text, near_threshold=2.0)] == ["x"]  # exact duplicates, threshold off
    # a threshold above 1 switches the near-duplicate check off: identical vectors both stay
    assert len(dedup([_cand("p", A), _cand("q", A)], near_threshold=1.01)) == 2
    many = [_cand(str(i), [np.cos(i), np.sin(i)], similarity=1 - i / 10) for i in range(5)]
    assert [c.id for c in dedup(many, near_threshold=2.0, limit=3)] == ["0", "1", "2"]
    assert dedup([], near_threshold=0.5) == []


def test_rank_candidates_filters_below_min_similarity_and_keeps_fetch_k():
    query = np.asarray(A, dtype=np.float32)
    pool = [_cand("hi", A, similarity=0.9), _cand("edge", B, similarity=0.3), _cand("lo", C, similarity=0.29)]
    ranked = rank_candidates(query, pool, fetch_k=5, lam=1.0, near_threshold=2.0, min_similarity=0.3)
    assert [c.id for c in ranked] == ["hi", "edge"]  # 0.3 is at the floor: kept; 0.29 is below
    ranked = rank_candidates(query, pool, fetch_k=1, lam=1.0, near_threshold=2.0, min_similarity=0.0)
    assert [c.id for c in ranked] == ["hi"]
    assert rank_candidates(query, [], fetch_k=3, lam=0.5, near_threshold=0.9, min_similarity=0.0) == []


def test_an_exact_duplicate_is_skipped_without_ending_the_dedup():
    pool = [_cand("a", A, similarity=0.9, question="Q", answer="x"),
            _cand("a2", B, similarity=0.8, question="q", answer="X"),  # the same text: skipped
            _cand("c", C, similarity=0.7)]
    assert [c.id for c in dedup(pool, near_threshold=2.0)] == ["a", "c"]


def test_rank_candidates_orders_by_boosted_relevance_and_diversity():
    query = np.asarray(A, dtype=np.float32)
    # "boosted" is far from the query but boosted above "close"; lam=1: relevance (similarity + boost) decides
    boosted = _cand("boosted", B, similarity=0.5, boost=0.6)
    close = _cand("close", A, similarity=1.0)
    ranked = rank_candidates(query, [close, boosted], fetch_k=5, lam=1.0, near_threshold=2.0, min_similarity=0.0)
    assert [c.id for c in ranked] == ["boosted", "close"]
    # lam=0.5: after the best, the one unlike it beats its near twin of higher relevance
    best, twin, other = _cand("best", A, similarity=0.9), _cand("twin", C, similarity=0.85), \
        _cand("other", [0.0, 1.0], similarity=0.6)
    ranked = rank_candidates(query, [twin, other, best], fetch_k=5, lam=0.5, near_threshold=2.0, min_similarity=0.0)
    assert [c.id for c in ranked] == ["best", "other", "twin"]


def test_fill_budget_skips_a_misfit_takes_an_exact_fit_and_stops_at_k():
    costs = {"a": 5, "b": 20, "c": 5}
    chosen, skipped = fill_budget([_cand(i, A) for i in "abc"], k=3, available=10, cost=lambda c: costs[c.id])
    assert [(c.id, t) for c, t in chosen] == [("a", 5), ("c", 5)]  # 5 + 5 fills 10 exactly
    assert [c.id for c in skipped] == ["b"]
    chosen, skipped = fill_budget([_cand(i, A) for i in "abc"], k=1, available=100, cost=lambda c: 1)
    assert [c.id for c, _ in chosen] == ["a"] and skipped == []


def test_select_negatives_floor_order_dedup_and_k():
    pool = [_cand("low", A, similarity=0.19, wrong="w1"), _cand("mid", A, similarity=0.5, wrong="w2"),
            _cand("top", A, similarity=0.9, wrong="w3"), _cand("edge", A, similarity=0.2, wrong="w4"),
            _cand("dup", A, similarity=0.8, question="question top", wrong="w3")]
    out = select_negatives(pool, k=5, min_similarity=0.2)
    assert [c.id for c in out] == ["top", "mid", "edge"]  # floor inclusive, the repeat of top's wrong answer gone
    assert [c.id for c in select_negatives(pool, k=1, min_similarity=0.2)] == ["top"]
    assert select_negatives(pool, k=0, min_similarity=0.0) == []


# -- escalation: more examples from attempt 3, not earlier, not later ---------------------------------------


def test_escalation_adds_examples_on_attempt_three_exactly(mw, fake_llm):
    fake_llm.enqueue(json.dumps(WRONG_COLUMN), json.dumps({**WRONG_COLUMN, "chart_type": "bar"}), json.dumps(GOOD))
    result = mw.ask(Q, domain="data_ops", learn=False)
    assert result.valid and len(result.attempts) == 3
    n = [sum(1 for m in r.messages if m.get("kind") == "example") // 2 for r in fake_llm.requests]
    assert n[0] == 6 and n[1] == n[0]  # attempt 2: the repair turn only
    assert n[2] > n[1]  # attempt 3: more examples
    temps = [r.options["temperature"] for r in fake_llm.requests]
    assert temps[1] == 0.0 and temps[2] == pytest.approx(0.3)


# -- JSON extraction ---------------------------------------------------------------------------------------


def test_the_fenced_answer_wins_over_an_earlier_unfenced_draft_when_a_second_fence_follows():
    text = ('First guess: {"a": 1}\nFinal answer:\n```json\n{"a": 2}\n```\n'
            'Run it like this:\n```python\nprint(plan)\n```\n')
    assert extract_json(text) == {"a": 2}


def test_the_last_of_two_json_fences_is_taken_whole():
    """When a model writes a draft fence and then the final answer in a later one, the last block that parses
    as JSON wins: a later block is the model's revision of the earlier one (the first-fence rule used to pick
    the draft). Each fence is still taken whole, never merged with the other or cut at an inner brace."""
    text = '```json\n{"a": 2, "b": [1, 2]}\n```\nor, shorter:\n```\n{"a": 3}\n```'
    assert extract_json(text) == {"a": 3}
    text = '```json\n{"a": 2, "b": [1, 2]}\n```\nor, shorter:\n```json\n{"a": 3, "b": [\n```'
    assert extract_json(text) == {"a": 2, "b": [1, 2]}  # the last fence is broken: the earlier one that parses


def test_extraction_strips_think_prefers_fence_and_falls_back_to_the_first_balanced_span():
    assert extract_json('<think>{"no": 1}</think> here: {"yes": "a}b"} and {"later": 1}') == {"yes": "a}b"}
    assert extract_json('```JSON {"x": [1, {"y": 2}]}```') == {"x": [1, {"y": 2}]}
    assert extract_json('```json\nnot json\n```\n{"z": 1}') == {"z": 1}  # a broken fence: the span is tried
    assert extract_json('[1, "]", {"k": "\\"}"}] tail') == [1, "]", {"k": '"}'}]
    with pytest.raises(ExtractionError, match="incomplete"):
        extract_json('{"a": [1, 2}')
    with pytest.raises(ExtractionError, match="no JSON object"):
        extract_json("just words")
    with pytest.raises(ExtractionError, match=r"invalid JSON: .* at line 1 column"):
        extract_json("{'a': 1}")


# -- error summaries: at most MAX_ERRORS lines, then one line saying how many more --------------------------


def _model(n: int) -> type[BaseModel]:
    return create_model(f"M{n}", **{f"f{i}": (int, ...) for i in range(n)})


@pytest.mark.parametrize("n", [MAX_ERRORS - 1, MAX_ERRORS, MAX_ERRORS + 1, MAX_ERRORS + 3])
def test_pydantic_error_summary_cap(n):
    with pytest.raises(ValidationError) as info:
        _model(n).model_validate({})
    lines = summarize_pydantic_errors(info.value)
    if n <= MAX_ERRORS:
        assert lines == [f"f{i}: required field is missing" for i in range(n)]
    else:
        assert lines[:MAX_ERRORS] == [f"f{i}: required field is missing" for i in range(MAX_ERRORS)]
        assert lines[MAX_ERRORS:] == [f"(and {n - MAX_ERRORS} more errors)"]
    outcome = PydanticValidator(_model(n)).validate_text("{}", "q")
    assert not outcome.ok and outcome.errors == lines


@pytest.mark.parametrize("n", [MAX_ERRORS, MAX_ERRORS + 1])
def test_json_schema_error_summary_cap(n):
    schema = {"type": "object", "properties": {f"f{i}": {"type": "integer"} for i in range(n)}}
    outcome = JSONSchemaValidator(schema).validate_text(json.dumps({f"f{i}": "x" for i in range(n)}), "q")
    assert not outcome.ok
    assert len(outcome.errors) == min(n, MAX_ERRORS) + (n > MAX_ERRORS)
    assert all(e.startswith(f"f{i}: ") for i, e in enumerate(outcome.errors[:MAX_ERRORS]))
    assert ("(and 1 more errors)" in outcome.errors) == (n > MAX_ERRORS)


def test_error_summary_lines_are_short_deduplicated_and_without_prefixes():
    from pydantic import field_validator

    class Long(BaseModel):
        a: str

        @field_validator("a")
        @classmethod
        def check(cls, v: str) -> str:
            raise ValueError("x" * 400 + "\nsecond problem\nsecond problem")

    with pytest.raises(ValidationError) as info:
        Long.model_validate({"a": "v"})
    lines = summarize_pydantic_errors(info.value)
    assert lines[0].startswith("a: xxx") and lines[0].endswith("…") and len(lines[0]) == len("a: ") + 160
    assert lines[1:] == ["a: second problem"]
    assert "Value error" not in lines[0]


# -- the total deadline --------------------------------------------------------------------------------------


class SlowLLM(FakeLLM):
    def __init__(self, delay: float, **kw) -> None:
        super().__init__(**kw)
        self.delay = delay

    def generate(self, request):
        time.sleep(self.delay)
        return super().generate(request)


@pytest.mark.parametrize(("total", "delay"), [(1e-6, 0.0), (1.0, 1.1)])
def test_the_total_deadline_is_a_504_timeout(settings, embedder, total, delay):
    """Reached before the first call, or with the answer still invalid when it passes: a timeout (504), and no
    attempt is started after it."""
    cfg = settings.model_copy(update={"retry": settings.retry.model_copy(update={"total_timeout": total})})
    llm = SlowLLM(delay, default="nope")
    with Middleware(cfg, backend=llm, embedder=embedder, token_counter=ApproxTokenCounter()) as m:
        m.render(Q, domain="data_ops")  # the domain loaded before the clock starts
        with pytest.raises(GenerationTimeoutError, match=f"total timeout of {total:g}s") as info:
            m.ask(Q, domain="data_ops", learn=False)
    assert info.value.http_status == 504
    if total < 0.001:
        assert llm.requests == [] and "reached before the call" in str(info.value)
    else:
        assert len(llm.requests) == 1 and "no valid answer within the total timeout of 1s after 1 attempt(s)" in str(
            info.value)
