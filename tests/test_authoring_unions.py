"""Unions of object shapes for domain authors: ``domains check`` counts the enum values of each shape apart
(one shape's ``eq`` does not cover another's), ``domains new`` shows each shape's fields apart, and which of a
string's ``pattern`` and its ``x-ground`` source grounds it (docs/domains.md, "A pattern and a source")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import run_cli
from rag_middleware.domains import DomainRegistry, load_domain
from rag_middleware.domains.authoring import check_domain, schema_fields
from rag_middleware.domains.mechanisms import Declarative
from rag_middleware.domains.scaffolding import _yaml_template
from rag_middleware.domains.spec import DeclarativeSpec
from rag_middleware.domains.validation import JSONSchemaValidator
from rag_middleware.request.ask import Switches

PROBES = Path(__file__).resolve().parents[1] / "benchmarks" / "probe_domains"


def shape(kinds, ops, value):
    return {"type": "object", "properties": {"kind": {"enum": kinds}, "op": {"enum": ops}, "value": value},
            "required": ["kind", "op", "value"], "additionalProperties": False}


# a list of conditions: a number shape and a text shape share "eq" and "neq"
CONDS = {
    "type": "object",
    "properties": {
        "mode": {"enum": ["list", "count"]},
        "conds": {"type": "array", "maxItems": 3, "items": {"anyOf": [
            shape(["size", "age"], ["eq", "neq", "gt"], {"type": "integer"}),
            shape(["name"], ["eq", "neq", "contains"], {"type": "string"}),
        ]}},
    },
    "required": ["mode", "conds"],
    "additionalProperties": False,
}


def cond(kind, op, value):
    return {"kind": kind, "op": op, "value": value}


COND_EXAMPLES = [  # "eq" only ever in the text shape; the number shape has neq and gt
    ("big", "files over 10 MB", {"mode": "list", "conds": [cond("size", "gt", 10)]}),
    ("not-five", "how many are not 5 years old", {"mode": "count", "conds": [cond("age", "neq", 5)]}),
    ("bob", "how many files are named bob", {"mode": "count", "conds": [cond("name", "eq", "bob")]}),
    ("report", "names with report in them, not draft", {"mode": "list", "conds": [
        cond("name", "contains", "report"), cond("name", "neq", "draft")]}),
]


def write_domain(root: Path, name: str, schema: dict, examples: list[tuple[str, str, dict]]) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "output.schema.json").write_text(json.dumps(schema), encoding="utf-8")
    (path / "domain.yaml").write_text("description: d\noutput_schema: output.schema.json\n", encoding="utf-8")
    (path / "examples.jsonl").write_text("".join(json.dumps({"id": i, "question": q, "answer": a}) + "\n"
                                                 for i, q, a in examples), encoding="utf-8")
    return path


def uncovered(path: Path) -> list[str]:
    report = check_domain(path, near_duplicates=False)
    assert not [p for p in report.problems if p.kind != "uncovered"], report.problems
    return [p.message for p in report.problems if p.kind == "uncovered"]


# -- domains check ----------------------------------------------------------------------------------------

def test_a_value_answered_in_one_shape_does_not_cover_it_in_another(tmp_path):
    path = write_domain(tmp_path, "conds", CONDS, COND_EXAMPLES)
    assert uncovered(path) == [
        '/conds/*/op where kind is "size" or "age" (anyOf[0]): no example answers "eq" (2 of 3 values covered)']
    # the text shape's eq, neq and contains are all answered: nothing is said of it


def test_the_check_cli_names_the_shape(cli_project, capsys):
    write_domain(cli_project / "knowledge_base", "conds", CONDS, COND_EXAMPLES)
    code, out, _ = run_cli(capsys, "domains", "check", "conds", "--json", "--no-embed")
    report = json.loads(out)
    assert code == 1 and [p["message"] for p in report["problems"]] == [
        '/conds/*/op where kind is "size" or "age" (anyOf[0]): no example answers "eq" (2 of 3 values covered)']
    examples = COND_EXAMPLES + [("five", "age 5", {"mode": "list", "conds": [cond("age", "eq", 5)]})]
    shutil.rmtree(cli_project / "knowledge_base" / "conds")
    write_domain(cli_project / "knowledge_base", "conds", CONDS, examples)
    code, out, _ = run_cli(capsys, "domains", "check", "conds", "--no-embed")
    assert code == 0 and "no problems" in out


def test_values_the_shapes_do_not_share_are_counted_as_one_field(tmp_path):
    """kind's values are each in one shape only: the field is checked over every item, as before."""
    examples = [e for e in COND_EXAMPLES if e[0] != "not-five"]  # no "age", and no number-shape "neq"
    path = write_domain(tmp_path, "conds", CONDS, examples)
    assert uncovered(path) == [
        '/conds/*/kind: no example answers "age" (2 of 3 values covered)',
        '/conds/*/op where kind is "size" or "age" (anyOf[0]): no example answers "eq", "neq" (1 of 3 values covered)',
    ]


def test_an_item_that_fits_several_shapes_counts_for_each_and_shapes_are_named_without_a_discriminator(tmp_path):
    schema = {"type": "object", "properties": {"checks": {"type": "array", "items": {"anyOf": [
        {"title": "Plain", "type": "object", "properties": {"op": {"enum": ["eq", "gt"]}}, "required": ["op"]},
        {"description": "a comparison\n with a note", "type": "object",
         "properties": {"op": {"enum": ["eq", "lt"]}, "note": {"type": "string"}}, "required": ["op", "note"]},
        {"type": "object", "properties": {"op": {"enum": ["eq", "ne"]}, "flag": {"type": "boolean"}},
         "required": ["op", "flag"], "additionalProperties": False},
    ]}}}, "required": ["checks"]}
    path = write_domain(tmp_path, "checks", schema, [
        ("a", "q1", {"checks": [{"op": "eq", "note": "x"}]}),  # fits Plain (it allows more keys) and the note shape
        ("b", "q2", {"checks": [{"op": "gt"}, {"op": "lt", "note": "y"}, {"op": "ne", "flag": True}]}),
    ])
    assert uncovered(path) == ['/checks/*/op in anyOf[2]: no example answers "eq" (1 of 2 values covered)']
    fields = schema_fields(schema)
    [branches] = fields[("checks", "*")].shapes
    assert [b.shown() for b in branches] == ['in Plain (anyOf[0])', 'in "a comparison with a note" (anyOf[1])',
                                             "in anyOf[2]"]


def test_fields_outside_a_union_of_shapes_are_checked_as_before(tmp_path):
    schema = {"type": "object", "properties": {
        "category": {"enum": ["billing", "bug", "other"]},
        "steps": {"type": "array", "items": {"type": "object", "properties": {
            "action": {"enum": ["refund", "escalate", "reply"]}}, "required": ["action"]}},
        # one object shape or null: a union, but not of shapes
        "stat": {"anyOf": [{"type": "object", "properties": {"func": {"enum": ["count", "avg"]}},
                            "required": ["func"]}, {"type": "null"}]},
    }, "required": ["category", "steps", "stat"]}
    path = write_domain(tmp_path, "plain", schema, [
        ("a", "refund me", {"category": "billing", "steps": [{"action": "refund"}], "stat": None}),
        ("b", "it crashes", {"category": "bug", "steps": [{"action": "escalate"}], "stat": {"func": "count"}}),
    ])
    assert uncovered(path) == [
        '/category: no example answers "other" (2 of 3 values covered)',
        '/steps/*/action: no example answers "reply" (2 of 3 values covered)',
        '/stat/func: no example answers "avg" (1 of 2 values covered)',
    ]


def test_log_query_passes_and_a_missing_shape_value_would_be_found(tmp_path):
    report = check_domain(PROBES / "log_query", near_duplicates=False)
    assert report.ok, [p.message for p in report.problems]
    # without its one example of an endpoint "contains", the endpoint shape misses it, though the text shape
    # (message contains ...) answers "contains" in four examples
    copy = tmp_path / "log_query"
    shutil.copytree(PROBES / "log_query", copy)
    lines = (copy / "examples.jsonl").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if '"field": "endpoint", "op": "contains"' not in line]
    assert len(kept) == len(lines) - 1
    (copy / "examples.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
    assert uncovered(copy) == ['/filters/*/op where field is "endpoint" (anyOf[1]): no example answers "contains" '
                               "(2 of 3 values covered)"]


# -- domains new ------------------------------------------------------------------------------------------

def test_new_shows_each_shape_of_a_union_apart_and_the_scaffold_loads(cli_project, capsys):
    schema = cli_project / "conds.schema.json"
    schema.write_text(json.dumps(CONDS), encoding="utf-8")
    code, _, err = run_cli(capsys, "domains", "new", "conds", "--schema", str(schema))
    assert code == 0, err
    text = (cli_project / "knowledge_base" / "conds" / "domain.yaml").read_text()
    hints = text.split("# from your schema:\n", 1)[1]
    assert hints == (
        "#   /mode: enum of 2, a vote candidate\n"
        "#   /conds: a list of at most 3, max_items bounds it\n"
        "#   /conds/*: one of 2 shapes (anyOf); give each its examples, domains check counts each shape's values "
        "apart\n"
        '#     where kind is "size" or "age" (anyOf[0]):\n'
        '#       /conds/*/kind: enum of 2: "size" or "age"\n'
        '#       /conds/*/op: enum of 3: "eq", "neq" or "gt"\n'
        "#       /conds/*/value: a number; ground it with x-ground in the schema (a ground: path reaches every "
        "shape)\n"
        '#     where kind is "name" (anyOf[1]):\n'
        '#       /conds/*/kind: enum of 1: "name"\n'
        '#       /conds/*/op: enum of 3: "eq", "neq" or "contains"\n'
        "#       /conds/*/value: a string\n")
    assert "#   /conds/*/value: a number, ground it in numbers" not in text  # the shapes' fields are not mixed
    domain = DomainRegistry(cli_project / "knowledge_base").get("conds")
    assert domain.validator.json_schema() == CONDS and domain.examples == []


def test_hints_for_a_schema_without_shapes_are_as_before():
    tickets = {
        "type": "object",
        "properties": {
            "category": {"enum": ["billing", "bug", "other"]},
            "order_id": {"type": ["string", "null"], "pattern": "^ORD-[0-9]{5}$"},
            "hours": {"type": ["integer", "null"]},
            "steps": {"type": "array", "maxItems": 3, "items": {"type": "object", "properties": {
                "action": {"enum": ["refund", "escalate", "reply"]}}, "required": ["action"]}},
            "stat": {"anyOf": [{"type": "object", "properties": {"func": {"enum": ["count", "avg"]}}},
                               {"type": "null"}]},
        },
    }
    text = _yaml_template("tickets", "output_schema: output.schema.json", schema_fields(tickets))
    assert "#   /category: {k: 7, margin: 0.6}" in text and "#   /hours:                numbers" in text
    assert text.split("# from your schema:\n", 1)[1] == (
        "#   /category: enum of 3, a vote candidate\n"
        "#   /steps/*/action: enum of 3, a vote candidate\n"
        "#   /stat/func: enum of 2, a vote candidate\n"
        "#   /hours: a number, ground it in numbers (or units)\n"
        "#   /order_id: has a pattern, grounded in the request automatically\n"
        "#   /steps: a list of at most 3, max_items bounds it\n")


# -- a pattern and a source on one string ---------------------------------------------------------------

ORDER = "^ORD-[0-9]{5}$"
CODES = {"codes": {"regex": r"\b(?P<value>[A-Z]{3}-[0-9]+)\b"}, "none": {"regex": "(?!)"}}


def grounded(node: dict, request: str, ground: dict | None = None) -> tuple[dict, dict]:
    schema = {"type": "object", "properties": {"code": node}, "required": ["code"], "additionalProperties": False}
    spec = DeclarativeSpec.from_sections(context=CODES, ground=ground or {}, units={}, derive={}, vote={}, harden=[])
    out, _ = Declarative(spec, schema).grammar(schema, request, flags=Switches())
    return out["properties"]["code"], schema


def test_a_pattern_that_matches_wins_over_x_ground():
    node, _ = grounded({"type": "string", "pattern": ORDER, "x-ground": "codes"}, "ORD-12345, not ABC-9")
    assert node == {"enum": ["ORD-12345"]}  # the context would give ORD-12345 and ABC-9


def test_x_ground_is_read_only_when_the_pattern_finds_nothing_and_null_is_not_allowed():
    node, schema = grounded({"type": "string", "pattern": ORDER, "x-ground": "codes"}, "see ABC-9")
    assert node == {"type": "string", "pattern": ORDER}  # the source's ABC-9 fails the pattern: left open
    assert not JSONSchemaValidator(schema).validate_value({"code": "ABC-9"}, "see ABC-9").ok  # (it would fail)
    node, _ = grounded({"type": "string", "pattern": ORDER, "x-ground": "codes"}, "see ABC-9 or ORD-12345!")
    assert node == {"enum": ["ORD-12345"]}
    node, _ = grounded({"type": ["string", "null"], "pattern": ORDER, "x-ground": "codes"}, "see ABC-9")
    assert node == {"enum": [None]}


def test_a_ground_entry_replaces_the_pattern_and_x_ground_follows_it():
    node, _ = grounded({"type": "string", "pattern": ORDER, "x-ground": "none"}, "ORD-12345, not ABC-9",
                       ground={"/code": "codes"})
    assert node == {"enum": ["ORD-12345"]}  # its source's values that the pattern admits (not ABC-9)
    node, _ = grounded({"type": "string", "pattern": ORDER, "x-ground": "codes"}, "ORD-12345, not ABC-9",
                       ground={"/code": "none"})
    assert node == {"enum": ["ORD-12345"]}  # the entry found nothing: x-ground's values, as the pattern admits


def test_a_pattern_in_a_branch_of_the_annotated_node_is_read_with_the_source():
    node, _ = grounded({"anyOf": [{"type": "string", "pattern": ORDER}, {"type": "null"}], "x-ground": "codes"},
                       "ORD-12345, not ABC-9")
    admitted = {v for branch in node["anyOf"] for v in branch.get("enum", [])}
    assert admitted == {"ORD-12345", "ABC-9"}


def test_the_probe_log_query_endpoint_takes_the_patterns_matches_not_its_paths_context():
    domain = load_domain(PROBES / "log_query")
    schema, notes = domain.declarative.grammar(domain.validator.json_schema(), "404s on /api/v2/orders today",
                                               flags=Switches())
    # the path is always an item's where it is written (used_values.py): a sure item, at a position of its own
    [endpoint] = [b["properties"]["value"] for b in schema["properties"]["filters"]["prefixItems"]]
    assert endpoint["enum"] == ["/api/v2/orders"] and "x-ground" not in endpoint
    assert "/filters/*/value: grounded in request: ['/api/v2/orders']" in notes
    assert not any(n.startswith("x-ground paths") for n in notes)
