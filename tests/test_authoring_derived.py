"""``domains check`` on derived fields: each list item is checked against its own source value (the nearest list
both paths run through), as the core fills it after generation; a derive from a top-level field as before."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

from rag_middleware.domains import load_domain
from rag_middleware.domains.authoring import check_domain
from rag_middleware.domains.mechanisms import Declarative

ROOT = Path(__file__).resolve().parents[1]
DATA_OPS = ROOT / "knowledge_base" / "data_ops"
TICKETS = ROOT / "benchmarks" / "probe_domains" / "ticket_routing"


def derived(path: Path) -> list[tuple[str, str, int | None, str]]:
    report = check_domain(path, near_duplicates=False)
    return [(p.message, Path(p.file).name, p.line, p.id) for p in report.problems if p.kind == "derived"]


def test_data_ops_examples_follow_their_method_map_item_by_item():
    # the examples do follow the map, and several have operations of different types, whose methods differ:
    # a check that paired every operation's type with every method would find them wrong
    spec = load_domain(DATA_OPS).declarative.spec
    method_map = spec.derive[("operations", "*", "execution_instructions", "method")].map
    mixed = 0
    for line in (DATA_OPS / "examples.jsonl").read_text(encoding="utf-8").splitlines():
        ops = json.loads(line)["answer"]["operations"]
        assert all(op["execution_instructions"]["method"] == method_map[op["type"]] for op in ops)
        mixed += len({op["type"] for op in ops}) > 1 and len({method_map[op["type"]] for op in ops}) > 1
    assert mixed >= 10
    assert derived(DATA_OPS) == []


# orders of lines: a line's team is derived from its own kind, an order's desk from the kinds of its own lines,
# the top-level route from every line of every order
SCHEMA = {
    "type": "object",
    "properties": {
        "route": {"enum": ["plain", "special"]},
        "orders": {"type": "array", "items": {
            "type": "object",
            "properties": {
                "desk": {"enum": ["front", "back"]},
                "lines": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"kind": {"enum": ["a", "b", "c"]},
                                   "handling": {"type": "object", "properties": {"team": {"enum": ["x", "y", "z"]}},
                                                "additionalProperties": False}},  # team may be left out
                    "required": ["kind", "handling"], "additionalProperties": False}},
            },
            "required": ["desk", "lines"], "additionalProperties": False}},
    },
    "required": ["route", "orders"],
    "additionalProperties": False,
}
DERIVE = """description: orders
output_schema: output.schema.json
derive:
  /orders/*/lines/*/handling/team:
    from: /orders/*/lines/*/kind
    map: {a: x, b: y, c: z}
  /orders/*/desk:
    from: /orders/*/lines/*/kind
    precedence:
      - {any: [c], value: back}
    default: front
  /route:
    from: /orders/*/lines/*/kind
    precedence:
      - {any: [c], value: special}
    default: plain
"""
TEAM = {"a": "x", "b": "y", "c": "z"}


def order(*kinds: str) -> dict:
    return {"desk": "back" if "c" in kinds else "front",
            "lines": [{"kind": k, "handling": {"team": TEAM[k]}} for k in kinds]}


def answer(*orders: tuple[str, ...]) -> dict:
    return {"route": "special" if any("c" in o for o in orders) else "plain", "orders": [order(*o) for o in orders]}


EXAMPLES = [
    ("ab", "two lines", answer(("a", "b"))),
    ("ab-ca", "two orders", answer(("a", "b"), ("c", "a"))),
    ("b-a", "one line each", answer(("b",), ("a",))),
    ("cb", "c first", answer(("c", "b"))),
]


def write(root: Path, examples: list[tuple[str, str, dict]], name: str = "orders") -> Path:
    path = root / name
    path.mkdir()
    (path / "output.schema.json").write_text(json.dumps(SCHEMA), encoding="utf-8")
    (path / "domain.yaml").write_text(DERIVE, encoding="utf-8")
    (path / "examples.jsonl").write_text("".join(json.dumps({"id": i, "question": q, "answer": a}) + "\n"
                                                 for i, q, a in examples), encoding="utf-8")
    return path


def test_nested_derives_pair_each_item_with_its_own_source(tmp_path):
    report = check_domain(write(tmp_path, EXAMPLES), near_duplicates=False)
    assert report.problems == []


def test_a_wrong_item_is_reported_once_for_that_item_only(tmp_path):
    examples = copy.deepcopy(EXAMPLES)
    examples[1][2]["orders"][1]["lines"][1]["handling"]["team"] = "y"  # its kind is "a": "x"
    examples[2][2]["orders"][1]["desk"] = "back"  # its one line is "a": "front"
    path = write(tmp_path, examples)
    assert derived(path) == [
        ('/orders/1/lines/1/handling/team is "y" but its map from /orders/*/lines/*/kind gives "x"',
         "examples.jsonl", 2, "ab-ca"),
        ('/orders/1/desk is "back" but its map from /orders/*/lines/*/kind gives "front"', "examples.jsonl", 3, "b-a"),
    ]
    # the core (which also refuses to load these examples) fills the same items with the same values
    spec = load_domain(write(tmp_path, EXAMPLES, "right")).declarative.spec
    for (_, _, wrong), (_, _, right) in zip(examples, EXAMPLES, strict=True):
        repairs: list[str] = []
        for field_path, derive in spec.derive.items():
            Declarative._derive(wrong, field_path, derive, repairs)
        assert wrong == right


def test_a_missing_derived_value_is_reported(tmp_path):
    examples = copy.deepcopy(EXAMPLES)
    del examples[3][2]["orders"][0]["lines"][0]["handling"]["team"]
    assert [m for m, *_ in derived(write(tmp_path, examples))] == [
        '/orders/0/lines/0/handling/team is missing but its map from /orders/*/lines/*/kind gives "z"']


def test_a_top_level_derive_is_checked_as_before(tmp_path):
    path = tmp_path / "ticket_routing"
    shutil.copytree(TICKETS, path)
    assert derived(path) == []
    lines = (path / "examples.jsonl").read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[4])
    team, category = row["answer"]["team"], row["answer"]["category"]
    row["answer"]["team"] = "logistics_team" if team != "logistics_team" else "payments_team"
    lines[4] = json.dumps(row)
    (path / "examples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert derived(path) == [
        (f'/team is "{row["answer"]["team"]}" but its map from /category gives "{team}"', "examples.jsonl", 5,
         row["id"]),
    ]
    assert category  # the source is there: the map, not a missing category, gives the team
