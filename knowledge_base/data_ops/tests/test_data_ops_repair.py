"""The data_ops deterministic repair (repair.py) and decoding grammar (model.py), loaded through domain.yaml
as the middleware loads them."""

from __future__ import annotations

import copy
import json

import pytest
import xllamacpp
from jsonschema import Draft202012Validator

from rag_middleware import Switches
from rag_middleware.domains import DomainRegistry
from tests.conftest import copy_project

METHODS = {
    "remove_duplicates": "pandas.DataFrame.drop_duplicates",
    "remove_empty_rows": "pandas.DataFrame.dropna",
    "drop_missing": "pandas.DataFrame.dropna",
    "fill_missing": "pandas.DataFrame.fillna",
    "filter_rows": "pandas.DataFrame.query",
    "group_by": "pandas.DataFrame.groupby",
    "sort": "pandas.DataFrame.sort_values",
    "top_n": "pandas.DataFrame.nlargest",
    "aggregate": "pandas.DataFrame.agg",
    "rename_column": "pandas.DataFrame.rename",
    "drop_column": "pandas.DataFrame.drop",
    "convert_type": "pandas.DataFrame.astype",
    "trim_whitespace": "pandas.Series.str.strip",
    "describe": "pandas.DataFrame.describe",
}
TASKS = {"remove_duplicates": "clean", "remove_empty_rows": "clean", "drop_missing": "clean",
         "fill_missing": "clean", "trim_whitespace": "clean", "filter_rows": "filter", "group_by": "group_by",
         "sort": "sort", "top_n": "sort", "aggregate": "formula", "rename_column": "transform",
         "drop_column": "transform", "convert_type": "transform", "describe": "summarize"}
# one valid operation of every type, on the columns of REQUEST
VALID_OPS = {
    "remove_duplicates": ([], {"subset": ["order_total"]}),
    "remove_empty_rows": ([], {"how": "all"}),
    "drop_missing": ([], {"subset": ["customer"]}),
    "fill_missing": ([], {"value": {"order_total": 0}}),
    "filter_rows": (["order_total > 100 and region == 'north'"], {}),
    "group_by": (["region"], {"agg": {"order_total": "sum"}}),
    "sort": ([], {"by": "order_total", "ascending": True}),
    "top_n": ([5, "order_total"], {}),
    "aggregate": ([], {"func": {"order_total": "mean"}}),
    "rename_column": ([], {"columns": {"order_total": "total"}}),
    "drop_column": ([], {"columns": ["region"]}),
    "convert_type": ([], {"dtype": {"order_total": "float"}}),
    "trim_whitespace": (["customer"], {}),
    "describe": ([], {}),
}
COLUMNS = ["customer", "order_total", "region"]
REQUEST = "Columns: customer, order_total, region\nDo it."


@pytest.fixture
def project(tmp_path):
    """A copy of the shipped knowledge base and prompts. No conftest.py here: a second module named conftest
    shadows tests/conftest.py when pytest is given both folders."""
    return copy_project(tmp_path)


def op(kind: str, args=None, kwargs=None, method: str | None = None) -> dict:
    return {"type": kind, "execution_instructions": {"method": method or METHODS[kind],
                                                      "args": [] if args is None else args,
                                                      "kwargs": {} if kwargs is None else kwargs}}


def plan(*ops: dict, task: str | None = None, chart: str = "none") -> dict:
    """A plan whose task, unless given, follows the precedence from the operations' types."""
    if task is None:
        present = {TASKS[o["type"]] for o in ops}
        task = next(t for t in ("group_by", "formula", "sort", "filter", "summarize", "transform", "clean")
                    if t in present or t == "clean")
    return {"task": task, "chart_type": chart, "operations": list(ops)}


def ei(value: dict, i: int = 0) -> dict:
    return value["operations"][i]["execution_instructions"]


@pytest.fixture
def domain(project):
    return DomainRegistry(project / "knowledge_base").get("data_ops")


@pytest.fixture
def repair(domain):
    """repair(value, request) -> (value, changes) as validation runs it: the core's declared fixes
    (domain.yaml: chart_type rules, task derived, hardening), then the domain's repair hook with the context
    the validator builds for the request. Also checks that the input is never modified in place."""

    def run(value, request: str = REQUEST):
        before = copy.deepcopy(value)
        settled, core = domain.post(None, request)(value)
        out, changes = domain.validator.repair(settled, domain.validator.context(request))
        assert value == before, "repair modified its input"
        return out, core + changes

    return run


@pytest.fixture
def grammar(domain):
    """The hook's grammar with task still in it (derive off), so whole plans can be checked against it."""
    return lambda request, **kw: domain.grammar_schema(request, flags=Switches(derive=False), **kw)


# -- a valid plan is a fixed point ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(VALID_OPS))
def test_a_valid_plan_comes_back_unchanged_with_no_changes(domain, repair, kind):
    value = plan(op(kind, *VALID_OPS[kind]))
    assert domain.validator.validate_value(value, REQUEST).ok
    assert repair(value) == (value, [])


def test_a_valid_multi_step_plan_with_a_chart_is_unchanged(domain, repair):
    request = "Columns: customer, order_total, region\nTotal per region, largest first, as a line chart."
    value = plan(op("group_by", *VALID_OPS["group_by"]), op("sort", [], {"by": "order_total", "ascending": False}),
                 chart="line")
    assert domain.validator.validate_value(value, request).ok
    assert repair(value, request) == (value, [])


def _curated(domain):
    return [(e.id, e.question, e.answer) for e in domain.examples] + [
        (n.id, n.question, n.right) for n in domain.negatives]


def test_every_curated_answer_is_a_fixed_point_of_repair(domain, repair):
    """The curated answers are read at test time (others keep adding to them)."""
    changed = {}
    for item_id, question, answer in _curated(domain):
        out, changes = repair(answer, question)
        if out != answer or changes:
            changed[item_id] = changes
    assert len(_curated(domain)) >= 10
    assert changed == {}


def test_repair_is_idempotent(repair):
    messy = plan(op("top_n", ["Order Total", 3]), op("sort", ["x"], {"by": "REGION"}, method="sort_values"),
                 task="clean", chart="pie")
    once, changes = repair(messy)
    assert changes
    assert repair(once) == (once, [])


# -- method ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(VALID_OPS))
@pytest.mark.parametrize("wrong", ["pandas.DataFrame.apply", "", None])
def test_the_canonical_method_is_set_per_type(repair, kind, wrong):
    value = plan(op(kind, *VALID_OPS[kind]))
    if wrong is None:
        del ei(value)["method"]
    else:
        ei(value)["method"] = wrong
    out, changes = repair(value)
    assert ei(out)["method"] == METHODS[kind]  # derived from the type by domain.yaml's map
    was = "missing" if wrong is None else json.dumps(wrong)
    assert changes == [f'/operations/0/execution_instructions/method: {was} -> "{METHODS[kind]}" '
                       "(derived from /operations/*/type)"]
    assert ei(out)["args"] == VALID_OPS[kind][0] and ei(out)["kwargs"] == VALID_OPS[kind][1]


def test_the_method_change_names_the_operation_index(repair):
    value = plan(op("filter_rows", ["region == 'north'"]), op("sort", [], {"by": "region", "ascending": True},
                                                               method="pandas.DataFrame.sort_index"))
    out, changes = repair(value)
    assert changes == ['/operations/1/execution_instructions/method: "pandas.DataFrame.sort_index" -> '
                       '"pandas.DataFrame.sort_values" (derived from /operations/*/type)']
    assert ei(out, 1)["method"] == "pandas.DataFrame.sort_values"


# -- argument shapes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    ["remove_duplicates", "remove_empty_rows", "drop_missing", "fill_missing", "sort", "aggregate", "rename_column",
     "drop_column", "convert_type", "describe"],
)
def test_args_are_emptied_for_types_that_take_none(domain, repair, kind):
    value = plan(op(kind, ["order_total", 3], VALID_OPS[kind][1]))
    assert "operations.0.execution_instructions.args: must be []" in domain.validator.validate_value(
        value, REQUEST).errors
    out, _ = repair(value)
    assert ei(out)["args"] == []
    assert ei(out)["kwargs"] == VALID_OPS[kind][1]
    assert domain.validator.validate_value(out, REQUEST).ok


@pytest.mark.parametrize("kind", ["filter_rows", "top_n", "trim_whitespace", "describe"])
def test_kwargs_are_emptied_for_types_that_take_none(domain, repair, kind):
    value = plan(op(kind, VALID_OPS[kind][0], {"n": 5, "inplace": True}))
    assert "operations.0.execution_instructions.kwargs: must be {}" in domain.validator.validate_value(
        value, REQUEST).errors
    out, _ = repair(value)
    assert ei(out)["kwargs"] == {}
    assert ei(out)["args"] == VALID_OPS[kind][0]
    assert domain.validator.validate_value(out, REQUEST).ok


@pytest.mark.parametrize("kwargs", [{}, {"how": "any"}, {"how": "all", "subset": ["region"]}, {"axis": 0}])
def test_remove_empty_rows_kwargs_are_forced_to_how_all(domain, repair, kwargs):
    out, _ = repair(plan(op("remove_empty_rows", [], kwargs)))
    assert ei(out)["kwargs"] == {"how": "all"}
    assert domain.validator.validate_value(out, REQUEST).ok


def test_a_drop_missing_subset_string_becomes_a_list(domain, repair):
    out, _ = repair(plan(op("drop_missing", [], {"subset": "Customer"})))
    assert ei(out)["kwargs"] == {"subset": ["customer"]}
    assert domain.validator.validate_value(out, REQUEST).ok


# -- near-miss column names --------------------------------------------------------------------------------


@pytest.mark.parametrize("near", ["Order Total", "order total", "ORDER_TOTAL", "ordertotal", "Order-Total",
                                  " order_total "])
@pytest.mark.parametrize(
    ("kind", "args", "kwargs", "path"),
    [
        ("remove_duplicates", [], {"subset": ["{c}", "region"]}, ("kwargs", "subset", 0)),
        ("drop_missing", [], {"subset": ["{c}"]}, ("kwargs", "subset", 0)),
        ("drop_column", [], {"columns": ["region", "{c}"]}, ("kwargs", "columns", 1)),
        ("sort", [], {"by": "{c}", "ascending": True}, ("kwargs", "by")),
        ("sort", [], {"by": ["region", "{c}"], "ascending": True}, ("kwargs", "by", 1)),
        ("group_by", ["region"], {"agg": {"{c}": "sum"}}, ("kwargs", "agg", "key")),
        ("group_by", ["{c}"], {"agg": {"customer": "count"}}, ("args", 0)),
        ("aggregate", [], {"func": {"{c}": "max"}}, ("kwargs", "func", "key")),
        ("fill_missing", [], {"value": {"{c}": 0}}, ("kwargs", "value", "key")),
        ("convert_type", [], {"dtype": {"{c}": "float"}}, ("kwargs", "dtype", "key")),
        ("rename_column", [], {"columns": {"{c}": "Total Renamed"}}, ("kwargs", "columns", "key")),
        ("trim_whitespace", ["{c}"], {}, ("args", 0)),
        ("top_n", [3, "{c}"], {}, ("args", 1)),
    ],
)
def test_near_miss_columns_map_to_the_one_real_column(domain, repair, near, kind, args, kwargs, path):
    def fill(x):
        if isinstance(x, str):
            return near if x == "{c}" else x
        if isinstance(x, list):
            return [fill(v) for v in x]
        if isinstance(x, dict):
            return {fill(k): fill(v) for k, v in x.items()}
        return x

    value = plan(op(kind, fill(args), fill(kwargs)))
    bad = domain.validator.validate_value(value, REQUEST)
    assert not bad.ok and any("unknown column" in e for e in bad.errors)
    out, _ = repair(value)
    node = ei(out)
    for step in path:
        node = next(iter(node)) if step == "key" else node[step]
    assert node == "order_total"
    assert domain.validator.validate_value(out, REQUEST).ok
    if kind == "rename_column":  # the new name is not a column of the table and is left as written
        assert ei(out)["kwargs"]["columns"] == {"order_total": "Total Renamed"}


@pytest.mark.parametrize(
    ("query", "fixed"),
    [
        ("Order_Total > 100", "order_total > 100"),
        ("ORDER_TOTAL > 100 and Region == 'north'", "order_total > 100 and region == 'north'"),
        ("`Order Total` >= 5", "`order_total` >= 5"),
        ("region == 'north' or Customer != 'x'", "region == 'north' or customer != 'x'"),
    ],
)
def test_identifiers_in_filter_queries_are_mapped(domain, repair, query, fixed):
    out, _ = repair(plan(op("filter_rows", [query])))
    assert ei(out)["args"] == [fixed]
    assert domain.validator.validate_value(out, REQUEST).ok


def test_a_query_identifier_is_not_rewritten_to_a_column_that_is_not_an_identifier(repair):
    """'unit price' cannot stand bare in a query, so unit_price is left for validation to report."""
    request = "Columns: unit price, qty\nKeep cheap rows."
    value = plan(op("filter_rows", ["unit_price < 5"]))
    out, _ = repair(value, request)
    assert ei(out)["args"] == ["unit_price < 5"]


def test_an_ambiguous_near_miss_is_left_alone(domain, repair):
    request = "Columns: order_total, Order Total, region\nSort by order total."
    value = plan(op("sort", [], {"by": "ORDER TOTAL", "ascending": True}))
    out, _ = repair(value, request)
    assert ei(out)["kwargs"]["by"] == "ORDER TOTAL"
    outcome = domain.validator.validate_value(out, request)
    assert outcome.errors == [
        "operations.0: unknown column ORDER TOTAL; use one of order_total, Order Total, region"]


def test_an_unfixable_unknown_column_is_left_for_validation_to_report(domain, repair):
    value = plan(op("sort", [], {"by": "cost", "ascending": True}))
    out, changes = repair(value)
    assert out == value and changes == []
    text = json.dumps(value)
    outcome = domain.validator.validate_text(text, REQUEST)
    assert not outcome.ok
    assert outcome.errors == ["operations.0: unknown column cost; use one of customer, order_total, region"]
    assert outcome.repairs == []


def test_without_a_columns_line_columns_are_not_touched(repair):
    value = plan(op("sort", [], {"by": "Order Total", "ascending": True}))
    assert repair(value, "Sort by order total, cheapest first.") == (value, [])


# -- top_n argument order ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "column"), [("order_total", "order_total"), ("Order Total", "order_total")])
def test_top_n_args_given_as_column_then_n_are_swapped(domain, repair, given, column):
    value = plan(op("top_n", [given, 5]))
    out, changes = repair(value)
    assert ei(out)["args"] == [5, column]
    assert changes[-1] == "operations.0.execution_instructions.args -> [n, column]"
    assert ("operations.0.execution_instructions: column names matched to the Columns line" in changes) == (
        given != column)
    assert domain.validator.validate_value(out, REQUEST).ok


@pytest.mark.parametrize("args", [[5, "order_total"], ["5", "order_total"], ["order_total"], [5]])
def test_top_n_args_that_are_not_column_then_n_are_not_swapped(repair, args):
    out, changes = repair(plan(op("top_n", args)))
    assert ei(out)["args"] == args and changes == []


# -- sort direction ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ascending"),
    [
        ("Sort by order total, largest first.", False),
        ("Sort by order total descending.", False),
        ("Order by order total, highest first.", False),
        ("Newest orders first, by order total.", False),
        ("Sort by order total from high to low.", False),
        ("Sort by customer, Z to A.", False),
        ("Sort by order total.", True),
        ("Sort by order total, cheapest first.", True),
        ("Sort by customer, A to Z.", True),
    ],
)
def test_a_missing_sort_direction_is_inferred_from_the_request(domain, repair, text, ascending):
    request = f"Columns: customer, order_total, region\n{text}"
    value = plan(op("sort", [], {"by": "order_total"}))
    out, changes = repair(value, request)
    assert ei(out)["kwargs"] == {"by": "order_total", "ascending": ascending}
    assert changes == ["operations.0: ascending inferred from the request"]
    assert domain.validator.validate_value(out, request).ok


@pytest.mark.parametrize("given", [True, False])
def test_an_explicit_sort_direction_is_kept(repair, given):
    request = "Columns: customer, order_total, region\nSort by order total, largest first."
    value = plan(op("sort", [], {"by": "order_total", "ascending": given}))
    assert repair(value, request) == (value, [])


def test_a_non_boolean_direction_is_replaced_by_the_inferred_one(repair):
    request = "Columns: customer, order_total, region\nSort by order total descending."
    out, changes = repair(plan(op("sort", [], {"by": "order_total", "ascending": "desc"})), request)
    assert ei(out)["kwargs"]["ascending"] is False
    assert changes == ["operations.0: ascending inferred from the request"]


def test_no_direction_is_invented_without_a_sort_column(domain, repair):
    value = plan(op("sort", [], {}))
    out, changes = repair(value)
    assert out == value and changes == []
    assert domain.validator.validate_value(out, REQUEST).errors == [
        'operations.0.execution_instructions.kwargs: must be {"by": column, "ascending": true or false}']


# -- task and chart_type -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kinds", "task"),
    [
        (("filter_rows", "sort", "group_by"), "group_by"),
        (("sort", "aggregate"), "formula"),
        (("filter_rows", "top_n"), "sort"),
        (("describe", "filter_rows"), "filter"),
        (("rename_column", "describe"), "summarize"),
        (("remove_duplicates", "rename_column"), "transform"),
        (("remove_duplicates", "trim_whitespace"), "clean"),
    ],
)
def test_task_is_derived_from_the_operations(domain, repair, kinds, task):
    wrong = "clean" if task != "clean" else "sort"
    value = plan(*(op(k, *VALID_OPS[k]) for k in kinds), task=wrong)
    out, changes = repair(value)
    assert out == {**value, "task": task}
    assert changes == [f'/task: "{wrong}" -> "{task}" (derived from /operations/*/type)']
    assert domain.validator.validate_value(out, REQUEST).ok


@pytest.mark.parametrize(
    ("text", "chart"),
    [
        ("Sort by order total and plot it as a line chart.", "line"),
        ("Sort by order total, then a histogram.", "histogram"),
        ("Sort by order total for the dashboard.", "bar"),
        ("Sort by order total.", "none"),
    ],
)
def test_chart_type_is_derived_from_the_request(domain, repair, text, chart):
    request = f"Columns: customer, order_total, region\n{text}"
    value = plan(op("sort", *VALID_OPS["sort"]), chart="scatter")
    out, changes = repair(value, request)
    assert out == {**value, "chart_type": chart}
    assert len(changes) == 1 and changes[0].startswith(f'/chart_type: "scatter" -> "{chart}" (rule ')
    assert domain.validator.validate_value(out, request).ok


def test_without_a_request_chart_type_is_not_touched(domain, repair):
    value = plan(op("sort", *VALID_OPS["sort"]), chart="pie")
    assert domain.validator.repair(value, {"columns": COLUMNS}) == (value, [])


# -- what repair must not do -------------------------------------------------------------------------------


def test_unknown_operation_types_are_untouched(domain, repair):
    teleport = {"type": "teleport", "execution_instructions": {"method": "x", "args": ["Order Total"],
                                                               "kwargs": {"by": "Order Total"}}}
    value = plan(teleport, op("sort", [], {"by": "Order Total", "ascending": True}), task="clean")
    out, changes = repair(value)
    assert len(out["operations"]) == 2
    assert out["operations"][0] == teleport
    assert ei(out, 1)["kwargs"]["by"] == "order_total"  # the known operation is still repaired
    assert out["task"] == "sort"  # derived from the known types; the unknown one fails validation below
    outcome = domain.validator.validate_value(out, REQUEST)
    assert not outcome.ok and any(e.startswith("operations.0.type: must be one of") for e in outcome.errors)


@pytest.mark.parametrize(
    "bad_op",
    ["sort", None, {"type": "sort"}, {"type": "sort", "execution_instructions": "sort_values"}],
)
def test_malformed_operations_are_untouched(repair, bad_op):
    value = plan(op("describe"), task="summarize")
    value["operations"].append(bad_op)
    out, _ = repair(value)
    assert out["operations"][1] == bad_op and len(out["operations"]) == 2


@pytest.mark.parametrize(
    "value",
    [None, "a plan", [1, 2], {}, {"task": "sort"}, {"task": "sort", "operations": "sort"}],
)
def test_what_is_not_a_plan_comes_back_as_it_was(domain, value):
    """The repair hook leaves what is not a plan alone (the core still fills the declared fields of an object)."""
    assert domain.validator.repair(value, domain.validator.context(REQUEST)) == (value, [])


def test_no_operation_is_invented(domain, repair):
    value = {"task": "sort", "chart_type": "bar", "operations": []}
    out, changes = repair(value)
    assert out["operations"] == [] and out["task"] == "clean"  # the precedence's default
    assert [c.split(":")[0] for c in changes] == ["/chart_type", "/task"]
    assert not domain.validator.validate_value(out, REQUEST).ok


# -- repair then validate ----------------------------------------------------------------------------------


def test_a_repairable_answer_validates_after_repair(domain):
    request = "Columns: Customer Name, order_total, region\nTotal order total per region, largest first, as a chart."
    messy = {
        "task": "sort",
        "chart_type": "none",
        "operations": [
            {"type": "group_by", "execution_instructions": {"method": "groupby", "args": ["Region"],
                                                            "kwargs": {"agg": {"Order Total": "sum"}}}},
            {"type": "sort", "execution_instructions": {"method": "sort", "args": ["order_total"],
                                                        "kwargs": {"by": "ORDER_TOTAL"}}},
        ],
    }
    raw = domain.validator.validate_value(messy, request)  # validate_value never repairs
    assert not raw.ok and len(raw.errors) >= 4  # the wrong methods are domain.yaml's to derive, not errors
    strict = domain.validator.validate_text(json.dumps(messy), request, repair=False)
    assert strict.errors == raw.errors and strict.repairs == []

    outcome = domain.validator.validate_text(f"Here you go:\n```json\n{json.dumps(messy)}\n```", request,
                                             pre=domain.post(None, request))
    assert outcome.ok, outcome.errors
    assert outcome.value == {
        "task": "group_by",
        "chart_type": "bar",
        "operations": [
            {"type": "group_by", "execution_instructions": {"method": "pandas.DataFrame.groupby", "args": ["region"],
                                                            "kwargs": {"agg": {"order_total": "sum"}}}},
            {"type": "sort", "execution_instructions": {"method": "pandas.DataFrame.sort_values", "args": [],
                                                        "kwargs": {"by": "order_total", "ascending": False}}},
        ],
    }
    assert [r.split(" (")[0] for r in outcome.repairs[:4]] == [
        '/chart_type: "none" -> "bar"',
        '/operations/0/execution_instructions/method: "groupby" -> "pandas.DataFrame.groupby"',
        '/operations/1/execution_instructions/method: "sort" -> "pandas.DataFrame.sort_values"',
        '/task: "sort" -> "group_by"']
    assert outcome.repairs[4:] == [
        "operations.0.execution_instructions: column names matched to the Columns line",
        "operations.1.execution_instructions.args -> []",
        "operations.1.execution_instructions: column names matched to the Columns line",
        "operations.1: ascending inferred from the request",
    ]


# negatives whose mistake is one the rules determine (task, chart_type, method, near-miss column, top_n order)
RULE_NEGATIVES = {"neg-task-precedence", "neg-chart-none", "neg-unknown-column", "neg-wrong-method", "neg-topn-args",
                  "neg-chart-not-asked-groupby"}


def test_rule_level_negative_wrong_answers_repair_into_the_right_answer(domain, repair):
    present = [n for n in domain.negatives if n.id in RULE_NEGATIVES]
    assert len(present) >= 3
    for n in present:
        out, _ = repair(n.wrong, n.question)
        assert out == n.right, n.id


def test_repair_never_changes_which_operations_a_negative_chose(domain, repair):
    """Choosing the wrong operation (describe for duplicates, sort for top_n, ...) is not a rule repair fixes."""
    for n in domain.negatives:
        out, _ = repair(n.wrong, n.question)
        assert [o["type"] for o in out["operations"]] == [o["type"] for o in n.wrong["operations"]], n.id
        if [o["type"] for o in n.wrong["operations"]] != [o["type"] for o in n.right["operations"]]:
            assert out != n.right, n.id


# -- problems found and fixed: sort direction phrases, the Columns line, quoted values, unlisted changes ---


@pytest.mark.parametrize("text", ["Sort by order total from lowest to highest.",
                                  "Sort by order total, smallest to largest.",
                                  "Sort by order total, least to most.",
                                  "Keep the top 10 by order total, then sort them by customer ascending."])
def test_ascending_phrases_infer_ascending(repair, text):
    out, _ = repair(plan(op("sort", [], {"by": "order_total"})), f"Columns: customer, order_total, region\n{text}")
    assert ei(out)["kwargs"]["ascending"] is True


def test_the_columns_line_does_not_set_the_sort_direction(repair):
    out, _ = repair(plan(op("sort", [], {"by": "price"})), "Columns: description, price\nSort by price.")
    assert ei(out)["kwargs"]["ascending"] is True


def test_query_string_literals_are_not_rewritten(repair):
    out, _ = repair(plan(op("filter_rows", ["Product == 'Product A'"])), "Columns: product, price\nProduct A only.")
    assert ei(out)["args"] == ["product == 'Product A'"]


@pytest.mark.parametrize(
    "value",
    [
        plan(op("sort", [], {"by": "Order Total", "ascending": True})),
        plan(op("describe", ["order_total"])),
        plan(op("top_n", [5, "order_total"], {"keep": "all"})),
        plan(op("remove_empty_rows", [], {"how": "any"})),
    ],
)
def test_every_change_is_listed(repair, value):
    out, changes = repair(value)
    assert out != value
    assert changes


# -- grammar_schema ----------------------------------------------------------------------------------------


def _branch(schema: dict, kind: str) -> dict:
    (branch,) = [b for b in schema["properties"]["operations"]["items"]["anyOf"]
                 if b["properties"]["type"] == {"const": kind}]
    return branch["properties"]["execution_instructions"]["properties"]


@pytest.mark.parametrize("request_text", [REQUEST, "Sort the table by price.",
                                          "Columns: Amount USD, tmp, Client\nRename 'Amount USD' to amount_usd."])
def test_xllamacpp_accepts_the_grammar_schema(grammar, request_text):
    schema = grammar(request_text)
    Draft202012Validator.check_schema(schema)
    text = xllamacpp.json_schema_to_grammar(schema)
    assert isinstance(text, str) and text.strip()
    assert xllamacpp.json_schema_to_grammar(json.dumps(schema)) == text
    for kind in METHODS:  # the method is derived from the type after generation (domain.yaml)
        assert f'"{kind}"' in text
    if request_text.startswith("Columns:"):
        for column in request_text.split("\n")[0].split(":", 1)[1].split(","):
            assert column.strip() in text


def test_the_grammar_admits_only_the_request_columns_and_the_argument_shapes(grammar):
    schema = grammar(REQUEST)
    v = Draft202012Validator(schema)
    assert {b["properties"]["type"]["const"] for b in schema["properties"]["operations"]["items"]["anyOf"]} == set(
        METHODS)
    for kind, (args, kwargs) in VALID_OPS.items():
        assert v.is_valid(plan(op(kind, args, kwargs))), kind
    assert _branch(schema, "sort")["kwargs"]["properties"]["by"] == {"enum": COLUMNS}

    rejected = {
        "unknown column": plan(op("sort", [], {"by": "cost", "ascending": True})),
        "near-miss column": plan(op("drop_column", [], {"columns": ["Order Total"]})),
        "unknown column as key": plan(op("aggregate", [], {"func": {"cost": "sum"}})),
        "unknown group column": plan(op("group_by", ["cost"], {"agg": {"order_total": "sum"}})),
        "args for an argument-free type": plan(op("describe", ["order_total"])),
        "kwargs for a keyword-free type": plan(op("top_n", [3, "order_total"], {"keep": "all"})),
        "top_n column then n": plan(op("top_n", ["order_total", 3])),
        "top_n n below 1": plan(op("top_n", [0, "order_total"])),
        "how any": plan(op("remove_empty_rows", [], {"how": "any"})),
        "unknown function": plan(op("group_by", ["region"], {"agg": {"order_total": "total"}})),
        "missing direction": plan(op("sort", [], {"by": "region"})),
        "unknown type": plan({"type": "teleport", "execution_instructions": {"method": "x", "args": [], "kwargs": {}}},
                             task="clean"),
        "no operations": {"task": "clean", "chart_type": "none", "operations": []},
        "extra field": {**plan(op("describe")), "note": "x"},
    }
    admitted = [name for name, value in rejected.items() if v.is_valid(value)]
    assert admitted == []


def test_the_grammar_keeps_the_columns_as_spelled_on_the_columns_line(grammar):
    schema = grammar("Columns: Name , Amount USD,order_id\nRemove duplicates.")
    assert _branch(schema, "sort")["kwargs"]["properties"]["by"] == {"enum": ["Name", "Amount USD", "order_id"]}
    v = Draft202012Validator(schema)
    assert v.is_valid(plan(op("rename_column", [], {"columns": {"Amount USD": "amount_usd"}})))
    assert not v.is_valid(plan(op("rename_column", [], {"columns": {"amount_usd": "Amount USD"}})))


def test_without_a_columns_line_columns_are_plain_strings(grammar):
    schema = grammar("Sort the table by price, cheapest first.")
    Draft202012Validator.check_schema(schema)
    assert _branch(schema, "sort")["kwargs"]["properties"]["by"] == {"type": "string"}
    assert _branch(schema, "drop_column")["kwargs"]["properties"]["columns"]["items"] == {"type": "string"}
    assert _branch(schema, "top_n")["args"]["prefixItems"][1] == {"type": "string"}
    v = Draft202012Validator(schema)
    assert v.is_valid(plan(op("sort", [], {"by": "anything at all", "ascending": True})))
    assert v.is_valid(plan(op("group_by", ["x"], {"agg": {"y": "sum", "z": "count"}})))
    assert v.is_valid(plan(op("fill_missing", [], {"value": {"whatever": "n/a"}})))
    assert not v.is_valid(plan(op("sort", [], {"by": 5, "ascending": True})))
    assert not v.is_valid(plan(op("group_by", ["x"], {"agg": {"y": "total"}})))
    assert not v.is_valid(plan(op("aggregate", [], {"func": {}})))


def _not_admitted(domain, items) -> dict[str, list[str]]:
    out = {}
    for item_id, question, answer in items:
        v = Draft202012Validator(domain.grammar_schema(question))
        answer = domain.declarative.for_display(answer)  # what the model is asked for: no derived task
        if not v.is_valid(answer):
            out[item_id] = [f"{'.'.join(map(str, e.absolute_path))}: {e.message[:120]}" for e in v.iter_errors(answer)]
    return out


def test_every_curated_example_answer_is_admitted_by_its_own_grammar(domain):
    """Read at test time: a grammar that forbids an example's style would fight the few-shot prompt."""
    assert domain.examples
    items = [(e.id, e.question, e.answer) for e in domain.examples]
    assert _not_admitted(domain, items) == {}


def test_every_negative_right_answer_is_admitted_by_its_own_grammar(domain):
    assert domain.negatives
    items = [(n.id, n.question, n.right) for n in domain.negatives]
    assert _not_admitted(domain, items) == {}


def test_the_raw_curated_lines_are_admitted_too(project, domain):
    """As written in the files (before the loader normalises them), every answer fits its grammar."""
    base = project / "knowledge_base" / "data_ops"
    items = []
    for name, field in (("examples.jsonl", "answer"), ("negatives.jsonl", "right")):
        for raw in (base / name).read_text(encoding="utf-8").splitlines():
            if raw.strip() and not raw.lstrip().startswith("//"):
                data = json.loads(raw)
                items.append((data["id"], data["question"], data[field]))
    assert len(items) == len(domain.examples) + len(domain.negatives)
    assert _not_admitted(domain, items) == {}


def test_an_operation_repeated_verbatim_is_dropped(domain, repair):
    dup = op("remove_duplicates", [], {"subset": ["customer"]})
    out, changes = repair(plan(dup, op("remove_empty_rows", [], {"how": "all"}), dup))
    assert [o["type"] for o in out["operations"]] == ["remove_duplicates", "remove_empty_rows"]
    assert "operations.2: dropped, it repeats an earlier operation" in changes
    different = op("remove_duplicates", [], {"subset": ["region"]})
    kept, _ = repair(plan(dup, different))
    assert len(kept["operations"]) == 2  # same type, different arguments: both stay


@pytest.mark.parametrize(("request_text", "keys"), [
    ("Columns: customer, country, lifetime_value\nOur three biggest accounts by lifetime_value, please.",
     ["lifetime_value"]),
    ("Columns: hotel, city, avg_rating, reviews\nWhich 5 hotels have received the largest number of reviews?",
     ["reviews"]),
    ("Columns: athlete, event, score\nPick the 8 athletes with the top score.", ["score"]),
    ("Columns: week, active_users, churned\nPut the rows in week order.", ["week"]),
])
def test_ranking_cues_restrict_the_sort_key_and_the_top_n_column(grammar, request_text, keys):
    schema = grammar(request_text)
    assert _branch(schema, "sort")["kwargs"]["properties"]["by"] == {"enum": keys}
    assert _branch(schema, "top_n")["args"]["prefixItems"][1] == {"enum": keys}


def test_without_a_ranking_cue_any_named_column_may_be_the_key(grammar):
    schema = grammar("Columns: region, amount, note\nSort the region and amount columns.")
    assert _branch(schema, "sort")["kwargs"]["properties"]["by"] == {"enum": ["region", "amount"]}


def test_column_lists_cannot_run_on(grammar):
    """Gemma 270M once repeated "crop" until num_predict: a list holds at most one entry per column."""
    schema = grammar("Columns: farm, crop, area_ha\nRemove duplicates and drop the crop column.")
    v = Draft202012Validator(schema)
    assert v.is_valid(plan(op("drop_column", [], {"columns": ["crop"]})))
    assert not v.is_valid(plan(op("drop_column", [], {"columns": ["crop"] * 4})))


def test_repair_drops_a_column_listed_twice(repair):
    value = plan(op("remove_duplicates", [], {"subset": ["region", "order_total", "region", "region"]}))
    fixed, changes = repair(value)
    assert ei(fixed)["kwargs"]["subset"] == ["region", "order_total"] and changes


@pytest.mark.parametrize(("request_text", "query", "fixed"), [
    ("Restrict to listings in Brooklyn, plot sqft against rent.", "neighborhood == 'Brooklyn' and sqft < 500000000000",
     "neighborhood == 'Brooklyn'"),
    ("Tickets that are still open.", "status in ['open', 'open_date']", "status in ['open']"),
    ("Rows with price under 5 in the north.", "price < 5 or region == 'south'", "price < 5"),
])
def test_repair_drops_query_conditions_the_request_never_mentions(repair, request_text, query, fixed):
    value = plan(op("filter_rows", [query]))
    out, changes = repair(value, "Columns: neighborhood, sqft, rent, status, price, region\n" + request_text)
    assert ei(out)["args"] == [fixed]
    assert any("not in the request" in c for c in changes)


@pytest.mark.parametrize(("request_text", "query"), [
    ("Only electric vehicles built after 2020.", "year == 2023"),  # nothing grounded would remain: left as is
    ("Orders over 1,000 in the north.", "price > 1000 and region == 'north'"),
    ("Orders over five hundred.", "price > 500"),  # a number in words cannot be checked
    ("Flagged rows only.", "status == True"),
])
def test_repair_keeps_grounded_or_uncheckable_conditions(repair, request_text, query):
    value = plan(op("filter_rows", [query]))
    out, _ = repair(value, "Columns: year, price, region, status\n" + request_text)
    assert ei(out)["args"] == [query]


@pytest.mark.parametrize(("request_text", "empties"), [
    ("Columns: customer, phone, city\nRemove customers that have no phone.", ["phone"]),
    ("Columns: order_no, discount, total\nWhere discount is blank, put 0.", ["discount"]),
    ("Columns: city, store_id\nReplace empty city entries with 'Unknown'.", ["city"]),
])
def test_columns_named_as_empty_are_the_drop_missing_subset_and_the_fill_keys(grammar, request_text, empties):
    schema = grammar(request_text)
    assert _branch(schema, "drop_missing")["kwargs"]["properties"]["subset"]["items"] == {"enum": empties}
    assert list(_branch(schema, "fill_missing")["kwargs"]["properties"]["value"]["properties"]) == empties
