"""Step guidance: clause splitting, similarity votes, rules, and the grammar it steers."""

from __future__ import annotations

import pytest

from rag_middleware.memory.embedding import CachedEmbedder
from rag_middleware.domains.clauses import StepGuide, StepSpec
from tests.conftest import HashEmbedder

BANK = [("remove duplicate rows", "remove_duplicates"), ("drop duplicates", "remove_duplicates"),
        ("sort by price", "sort"), ("order the rows by date", "sort"),
        ("as a bar chart", "none"), ("plot it", "none")]


def split(request: str) -> list[str]:
    return [part.strip() for part in request.split(" then ") if part.strip()]


@pytest.fixture
def guide():
    return StepGuide(StepSpec(split="x.py:split", k=2, margin=0.9, max_labels=2, min_similarity=0.2), BANK, split,
                     CachedEmbedder(HashEmbedder()))


def test_each_clause_gets_the_label_of_its_nearest_bank_entries(guide):
    votes = guide.vote("remove duplicate rows then sort by price")
    assert [v.labels[0] for v in votes] == ["remove_duplicates", "sort"]
    assert guide.steps("remove duplicate rows then sort by price") == [["remove_duplicates"], ["sort"]]


def test_clauses_voted_none_ask_for_no_step(guide):
    assert guide.steps("sort by price then plot it") == [["sort"]]


def test_an_unrecognised_clause_leaves_the_plan_unguided(guide):
    assert guide.steps("sort by price then xyzzy qwerty") == []


def test_a_rule_decides_outright(guide):
    ruled = StepGuide(guide.spec, BANK, split, guide.embedder,
                      rule=lambda clause, request: ["top_n"] if "top" in clause else None)
    assert ruled.steps("top 3 by price then sort by price") == [["top_n"], ["sort"]]


def test_guidance_can_be_switched_off(mw):
    from rag_middleware import Switches

    on = mw.render("Columns: a, b\nRemove duplicate rows then sort by a", domain="data_ops")
    off = mw.render("Columns: a, b\nRemove duplicate rows then sort by a", domain="data_ops",
                    switches=Switches(guide=False))
    assert off.steps == [] and "items" in off.json_schema["properties"]["operations"]
    # on: the clauses are labelled and the grammar has one position per clause (strict: guidance must reach it)
    assert on.steps == [["remove_duplicates"], ["sort"]]
    ops = on.json_schema["properties"]["operations"]
    assert ops["minItems"] == ops["maxItems"] == 2 and ops["items"] is False
    assert on.json_schema != off.json_schema
