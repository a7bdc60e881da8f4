"""The data_ops output model (model.py beside this folder), loaded as the middleware loads it."""

from __future__ import annotations

import pytest

from rag_middleware.domains import DomainRegistry
from tests.conftest import copy_project

COLUMNS = "Columns: region, product, revenue, date, units"


@pytest.fixture
def project(tmp_path):
    """A copy of the shipped knowledge base and prompts. No conftest.py here: a second module named conftest
    shadows tests/conftest.py when pytest is given both folders."""
    return copy_project(tmp_path)


@pytest.fixture
def domain(project):
    return DomainRegistry(project / "knowledge_base").get("data_ops")


@pytest.fixture
def validate(domain):
    return domain.validator.validate_value


@pytest.fixture
def settle(domain):
    """What the core does to an answer before validation: the declared rules and derived fields."""
    return lambda value, request: domain.post(None, request)(value)


def op(kind: str, method: str | None = None, args=None, kwargs=None) -> dict:
    methods = {
        "remove_duplicates": "pandas.DataFrame.drop_duplicates", "remove_empty_rows": "pandas.DataFrame.dropna",
        "filter_rows": "pandas.DataFrame.query", "group_by": "pandas.DataFrame.groupby",
        "sort": "pandas.DataFrame.sort_values", "top_n": "pandas.DataFrame.nlargest",
        "aggregate": "pandas.DataFrame.agg", "rename_column": "pandas.DataFrame.rename",
        "drop_column": "pandas.DataFrame.drop", "convert_type": "pandas.DataFrame.astype",
        "describe": "pandas.DataFrame.describe", "trim_whitespace": "pandas.Series.str.strip",
    }
    return {"type": kind, "execution_instructions": {"method": method or methods[kind], "args": args or [],
                                                      "kwargs": kwargs or {}}}


DEDUP = op("remove_duplicates")
FILTER = op("filter_rows", args=["revenue > 100"])
GROUP = op("group_by", args=["region"], kwargs={"agg": {"revenue": "sum"}})
SORT = op("sort", kwargs={"by": "revenue", "ascending": False})
TOPN = op("top_n", args=[5, "revenue"])
AGG = op("aggregate", kwargs={"func": {"revenue": "sum"}})
DESCRIBE = op("describe")
RENAME = op("rename_column", kwargs={"columns": {"units": "qty"}})
TRIM = op("trim_whitespace", args=["product"])


def plan(task: str, *ops: dict, chart: str = "none") -> dict:
    return {"task": task, "chart_type": chart, "operations": list(ops)}


def ask(text: str) -> str:
    return f"{COLUMNS}\n{text}"


# -- task -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ops", "task"),
    [
        ((FILTER, SORT, GROUP), "group_by"),
        ((SORT, AGG), "formula"),
        ((FILTER, TOPN), "sort"),
        ((FILTER, SORT), "sort"),
        ((DESCRIBE, FILTER), "filter"),
        ((RENAME, DESCRIBE), "summarize"),
        ((DEDUP, RENAME), "transform"),
        ((DEDUP, TRIM), "clean"),
    ],
)
def test_task_precedence(validate, settle, ops, task):
    """task is derived from the operations by domain.yaml's precedence: the model is never asked for it."""
    request = ask("Do it.")
    wrong = "clean" if task != "clean" else "sort"
    for given in (plan(wrong, *ops), {k: v for k, v in plan(task, *ops).items() if k != "task"}):
        value, repairs = settle(given, request)
        assert value["task"] == task and any(r.startswith("/task: ") for r in repairs)
        assert validate(value, request).ok
    assert settle(plan(task, *ops), request)[1] == []


def test_valid_plan_round_trips(validate):
    value = plan("group_by", FILTER, GROUP, SORT)
    outcome = validate(value, ask("Sum revenue per region for big sales, then sort."))
    assert outcome.ok
    assert outcome.value == value


# -- chart_type -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "chart"),
    [
        ("Sort by revenue and plot it as a line chart.", "line"),
        ("Sort by revenue and show a pie chart.", "pie"),
        ("Sort by revenue, then a histogram.", "histogram"),
        ("Sort by revenue as a scatter plot.", "scatter"),
        ("Sort by revenue for the dashboard.", "bar"),
        ("Sort by revenue and chart it.", "bar"),
        ("Sort by revenue and make a graph.", "bar"),
        ("Sort by revenue as a visualization.", "bar"),
        ("Sort by revenue.", "none"),
    ],
)
def test_chart_type_follows_the_request(validate, settle, text, chart):
    """chart_type follows domain.yaml's vote rules on the request, whatever the model wrote."""
    request = ask(text)
    assert settle(plan("sort", SORT, chart=chart), request)[1] == []
    other = "bar" if chart != "bar" else "none"
    value, repairs = settle(plan("sort", SORT, chart=other), request)
    assert value["chart_type"] == chart and repairs[0].startswith(f'/chart_type: "{other}" -> "{chart}" (rule ')
    assert validate(value, request).ok


def test_the_named_chart_wins_over_an_unrelated_chart_word(settle):
    """'line items' is not a chart type; the request names a bar chart."""
    request = ask("Keep the top line items by revenue and plot them as a bar chart.")
    assert settle(plan("sort", TOPN, chart="bar"), request)[1] == []


def test_chart_words_in_the_columns_line_do_not_count(settle):
    request = "Columns: line, pie, revenue\nSort by revenue."
    good = plan("sort", op("sort", kwargs={"by": "revenue", "ascending": True}))
    assert settle(good, request)[1] == []
    value, _ = settle({**good, "chart_type": "line"}, request)
    assert value["chart_type"] == "none"


def test_chart_type_must_be_a_known_literal(validate):
    outcome = validate(plan("sort", SORT, chart="donut"), ask("Sort by revenue as a donut chart."))
    assert not outcome.ok
    assert any(e.startswith("chart_type: must be one of") for e in outcome.errors)


# -- columns ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_op", "unknown"),
    [
        (op("sort", kwargs={"by": "Revenue", "ascending": True}), "Revenue"),
        (op("group_by", args=["country"], kwargs={"agg": {"revenue": "sum"}}), "country"),
        (op("group_by", args=["region"], kwargs={"agg": {"profit": "sum"}}), "profit"),
        (op("filter_rows", args=["profit > 3 and region == 'north'"]), "profit"),
        (op("top_n", args=[3, "profit"]), "profit"),
        (op("drop_column", kwargs={"columns": ["profit"]}), "profit"),
        (op("drop_column", kwargs={"columns": ["profit", "units", "cost"]}), "profit, cost"),
    ],
)
def test_unknown_columns_are_rejected_with_the_column_list(validate, bad_op, unknown):
    ops = (bad_op, SORT) if bad_op["type"] == "group_by" else (bad_op,)
    task = {"sort": "sort", "group_by": "group_by", "filter_rows": "filter", "top_n": "sort",
            "drop_column": "transform"}[bad_op["type"]]
    outcome = validate(plan(task, *ops), ask("Do it."))
    assert not outcome.ok, outcome
    assert outcome.errors == [
        f"operations.0: unknown column {unknown}; use one of region, product, revenue, date, units"]


def test_unknown_columns_name_the_operation_index(validate):
    outcome = validate(plan("sort", FILTER, op("sort", kwargs={"by": "profit", "ascending": True})), ask("Do it."))
    assert outcome.errors == ["operations.1: unknown column profit; use one of region, product, revenue, date, units"]


def test_query_strings_and_backticks_are_understood(validate):
    request = "Columns: region, unit price, revenue\nKeep north rows over 5."
    query = op("filter_rows", args=["region == 'north and south' and `unit price` > 5"])
    assert validate(plan("filter", query), request).ok


def test_without_a_columns_line_columns_are_not_checked(validate):
    assert validate(plan("sort", op("sort", kwargs={"by": "anything", "ascending": True})), "Sort it.").ok


# -- method and args shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "wrong_method", "right_method"),
    [
        ("sort", "pandas.DataFrame.sort_index", "pandas.DataFrame.sort_values"),
        ("top_n", "pandas.DataFrame.head", "pandas.DataFrame.nlargest"),
        ("filter_rows", "pandas.DataFrame.filter", "pandas.DataFrame.query"),
    ],
)
def test_the_method_follows_the_op_type(validate, settle, kind, wrong_method, right_method):
    """domain.yaml derives the method from the type: the model is never asked for it."""
    template = {"sort": SORT, "top_n": TOPN, "filter_rows": FILTER}[kind]
    bad = op(kind, method=wrong_method, args=template["execution_instructions"]["args"],
             kwargs=template["execution_instructions"]["kwargs"])
    task = "filter" if kind == "filter_rows" else "sort"
    value, repairs = settle(plan(task, bad), ask("Do it."))
    assert value["operations"][0]["execution_instructions"]["method"] == right_method
    assert repairs == [f'/operations/0/execution_instructions/method: "{wrong_method}" -> "{right_method}" '
                       "(derived from /operations/*/type)"]
    assert validate(value, ask("Do it.")).ok


@pytest.mark.parametrize(
    "args",
    [[5], ["revenue", 5], [0, "revenue"], [-2, "revenue"], [True, "revenue"], [2.5, "revenue"],
     [5, "revenue", "extra"], []],
)
def test_top_n_args_must_be_n_then_column(validate, args):
    outcome = validate(plan("sort", op("top_n", args=args)), ask("Top rows by revenue."))
    assert not outcome.ok
    assert "operations.0.execution_instructions.args: must be [n, column] with n a positive integer" in outcome.errors


def test_top_n_good_args(validate):
    assert validate(plan("sort", op("top_n", args=[1, "units"])), ask("The top row by units.")).ok


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (op("group_by", args=["region"], kwargs={"agg": {"revenue": "total"}}),
         "kwargs.agg: functions must be one of count, max, mean, median, min, sum"),
        (op("aggregate", kwargs={"func": {"revenue": "average"}}),
         "kwargs.func: functions must be one of count, max, mean, median, min, sum"),
        (op("group_by", args=[], kwargs={"agg": {"revenue": "sum"}}), "args: must be [the column to group by]"),
        (op("sort", kwargs={"by": "revenue"}), 'kwargs: must be {"by": column, "ascending": true or false}'),
        (op("sort", kwargs={"by": "revenue", "ascending": "no"}),
         'kwargs: must be {"by": column, "ascending": true or false}'),
        (op("remove_empty_rows", kwargs={"how": "any"}), 'kwargs: must be {"how": "all"}'),
        (op("filter_rows", args=["  "]), "args: must be [one pandas query string]"),
        (op("trim_whitespace", args=[]), "args: must be [the column]"),
        (op("drop_column", kwargs={"columns": []}), 'kwargs: must be {"columns": [columns]}'),
        (op("rename_column", kwargs={}), 'kwargs: must be {"columns": {old: new}}'),
        # argument-free types that got args, keyword-free types that got kwargs
        (op("describe", args=["revenue"]), "args: must be []"),
        (op("sort", args=["revenue"], kwargs={"by": "revenue", "ascending": True}), "args: must be []"),
        (op("top_n", args=[5, "revenue"], kwargs={"keep": "all"}), "kwargs: must be {}"),
        (op("filter_rows", args=["revenue > 1"], kwargs={"engine": "python"}), "kwargs: must be {}"),
    ],
)
def test_other_shapes(validate, bad, message):
    task = {"group_by": "group_by", "sort": "sort", "remove_empty_rows": "clean", "filter_rows": "filter",
            "aggregate": "formula", "trim_whitespace": "clean", "drop_column": "transform",
            "rename_column": "transform", "describe": "summarize", "top_n": "sort"}[bad["type"]]
    outcome = validate(plan(task, bad), ask("Do it."))
    assert not outcome.ok
    assert outcome.errors == [f"operations.0.execution_instructions.{message}"]


def test_every_problem_is_reported_at_once(validate):
    """One line per problem, each ``path: message``, in the order: shapes, then columns (task, chart_type and
    the method are domain.yaml's: derived and ruled before validation)."""
    bad = plan(
        "clean",
        op("filter_rows", method="pandas.DataFrame.filter", args=["profit > 1"]),
        op("sort", args=["revenue"], kwargs={"by": "revenue"}),
        chart="pie",
    )
    outcome = validate(bad, ask("Keep big rows and sort them."))
    assert outcome.errors == [
        'operations.1.execution_instructions.kwargs: must be {"by": column, "ascending": true or false}',
        "operations.1.execution_instructions.args: must be []",
        "operations.0: unknown column profit; use one of region, product, revenue, date, units",
    ]


def test_structure_errors(validate):
    outcome = validate({"task": "sort", "chart_type": "none", "operations": []}, ask("Sort."))
    assert not outcome.ok and any(e.startswith("operations: ") for e in outcome.errors)
    outcome = validate({**plan("sort", SORT), "extra": 1}, ask("Sort by revenue."))
    assert not outcome.ok and any(e.startswith("extra: ") for e in outcome.errors)
    outcome = validate(plan("sort", {"type": "teleport", "execution_instructions": {"method": "x"}}), ask("Sort."))
    assert not outcome.ok and any(e.startswith("operations.0.type: must be one of") for e in outcome.errors)
    assert not any("[" in e.split(":")[0] for e in outcome.errors)
    outcome = validate(plan("sort", {"type": "sort", "execution_instructions": {"method": "x", "extra": 1}}),
                       ask("Sort."))
    assert not outcome.ok and any(e.startswith("operations.0.execution_instructions.extra: ") for e in outcome.errors)


def test_an_answer_of_the_wrong_shape_is_invalid_never_a_crash(validate):
    """With the grammar hook off the model can write anything: a dict where a function name belongs."""
    odd = plan("group_by", op("group_by", args=["region"], kwargs={"agg": {"revenue": {"sum": 1}}}))
    outcome = validate(odd, ask("Sum revenue per region."))
    assert not outcome.ok
    assert any(e.startswith("operations.0.execution_instructions.kwargs.agg: functions must be one of")
               for e in outcome.errors)
