"""data_ops step guidance: its clause splitter (hooks.py), its cue-word rules (domain.yaml) and the grammar they
steer, loaded as the middleware loads them."""

from __future__ import annotations

import pytest

from rag_middleware.domains import DomainRegistry
from tests.conftest import copy_project


@pytest.fixture
def project(tmp_path):
    """A copy of the shipped knowledge base and prompts. No conftest.py here: a second module named conftest
    shadows tests/conftest.py when pytest is given both folders."""
    return copy_project(tmp_path)


@pytest.fixture
def data_ops(project):
    return DomainRegistry(project / "knowledge_base").get("data_ops")


def test_data_ops_splitter_keeps_chart_phrases_out_of_the_steps(data_ops):
    split_steps = data_ops.split
    assert split_steps("Columns: a, b\nRemove duplicates, then total b per a as a bar chart.") == [
        "Remove duplicates", "total b per a"]
    assert split_steps("Columns: a\nKeep rows for Paris and sort by a, i.e. ascending") == [
        "Keep rows for Paris", "sort by a, i.e ascending"]
    assert split_steps("Columns: region\nTotal by region") == ["Total by region"]  # 'on' inside 'region'


def test_data_ops_rules_name_strong_cues(data_ops):
    rule = data_ops.step_rule
    request = "Columns: price, notes, city\n..."
    assert rule("fill missing price with 0", request) == ["fill_missing"]
    assert rule("drop rows that are completely empty", request) == ["remove_empty_rows"]
    assert rule("remove the notes column", request) == ["drop_column"]
    assert rule("remove rows with no price", request) == ["drop_missing"]
    assert rule("the 5 most expensive by price", request) == ["top_n"]
    assert rule("average price per city", request) == ["group_by"]
    assert rule("the overall average price", request) is None  # a whole-table figure is left to the vote
    assert rule("sort by price", request) is None


@pytest.mark.parametrize(("clause", "labels"), [
    ("use the price column", ["none"]),  # says which column, asks for no step
    ("what do the mean, spread and quartiles look like", ["describe"]),
    ("tidy the padding around city names", ["trim_whitespace"]),
    ("the notes strings have leading blanks to strip", ["trim_whitespace"]),
    ("monthly mean of price", ["group_by"]),
    ("take out notes first", ["drop_column"]),
    ("cities above 500 price only", ["filter_rows"]),
    ("flights delayed by more than 30 minutes", ["filter_rows"]),  # 'minutes' is not 'min'
    ("the three best by price", ["top_n"]),
    ("Keep the runners from Kenya", ["filter_rows"]),  # a selection by a named value
    ("keep the cheapest price", None),  # no named value: left to the vote
    ("exclude orders that came from the notes channel", None),  # not a whole-clause column removal
    ("only keep rows that have a price", None),  # a presence condition, not a value filter
    ("the total price of orders above 100", None),  # filter and aggregate in one clause: left to the vote
])
def test_data_ops_rules_for_common_phrasings(data_ops, clause, labels):
    assert data_ops.step_rule(clause, "Columns: price, notes, city\n...") == labels


def test_data_ops_splitter_keeps_a_leading_condition_with_its_clause(data_ops):
    assert data_ops.split("Columns: a, b\nWhere a is blank, put 0.") == ["Where a is blank, put 0"]
    assert data_ops.split("Columns: plan, mrr\nOnly the enterprise plan: what's their combined mrr?") == [
        "Only the enterprise plan", "what's their combined mrr"]
    assert data_ops.split("Columns: a\nGive me an overview: count, mean, min, max.") == [
        "Give me an overview: count, mean, min, max"]


def test_guided_grammar_fixes_the_step_types_and_their_number(data_ops):
    request = "Columns: a, b\nRemove duplicates then sort by a"
    schema = data_ops.grammar_schema(request, steps=[["remove_duplicates"], ["sort", "top_n"]])
    ops = schema["properties"]["operations"]
    assert ops["minItems"] == ops["maxItems"] == 2 and ops["items"] is False
    kinds = [[branch["properties"]["type"]["const"] for branch in item["anyOf"]] for item in ops["prefixItems"]]
    assert kinds == [["remove_duplicates"], ["sort", "top_n"]]
    free = data_ops.grammar_schema(request)
    assert len(free["properties"]["operations"]["items"]["anyOf"]) == 14
