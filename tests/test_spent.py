"""Spent numbers (domains/spent.py): a number a scalar field is settled on is no list item's value."""

from __future__ import annotations

import json

import yaml

from rag_middleware.domains.registry import DomainRegistry
from rag_middleware.request.ask import Switches
from tests.test_annotations import NUMBER, WORD  # the same number and word filter shapes


def schema(items):
    return {"type": "object", "properties": {
        "filters": {"type": "array", "maxItems": 3, "items": items},
        "limit": {"type": "integer"}, "note": {"type": ["integer", "null"]}},
        "required": ["filters", "limit", "note"], "additionalProperties": False}


def domain(tmp_path, items):
    d = tmp_path / "logs"
    d.mkdir()
    (d / "output.schema.json").write_text(json.dumps(schema(items)))
    spec = {"description": "log filters", "output_schema": "output.schema.json",
            "ground": {"/limit": "numbers", "/note": "numbers"}, "infer": False}
    (d / "domain.yaml").write_text(yaml.safe_dump(spec))
    filters = [{"field": "host", "op": "eq", "value": "web-1"}] if items is not NUMBER else []
    row = {"filters": filters, "limit": 10, "note": None}
    (d / "examples.jsonl").write_text(json.dumps({"id": "e1", "question": "top 10 for host web-1", "answer": row})
                                      + "\n")
    return DomainRegistry(tmp_path).get("logs")


def grammar(d, request):
    return d.declarative.grammar(d.validator.json_schema(), request, flags=Switches())


def test_a_number_the_limit_is_settled_on_is_no_list_items_value(tmp_path):
    d = domain(tmp_path, {"anyOf": [NUMBER, WORD]})
    out, notes = grammar(d, "top 5 errors on host web-2")
    assert out["properties"]["limit"]["enum"] == [5]
    shapes = out["properties"]["filters"]["items"]["anyOf"]
    assert not [b for b in shapes if "status" in b["properties"]["field"]["enum"]]  # the number shape is gone
    assert any("taken by /limit" in n for n in notes)
    # the nullable note is not settled on 5: it still admits null, and spends nothing
    assert None in out["properties"]["note"]["enum"] or "anyOf" in out["properties"]["note"]


def test_a_list_whose_only_shape_loses_its_values_admits_no_item(tmp_path):
    out, notes = grammar(domain(tmp_path, NUMBER), "top 5 errors")
    assert out["properties"]["filters"]["maxItems"] == 0
    assert any("no item (its only value [5] is taken by /limit)" in n for n in notes)


def test_a_number_written_twice_may_be_two_fields_values(tmp_path):
    out, _ = grammar(domain(tmp_path, {"anyOf": [NUMBER, WORD]}), "top 5 of the 5xx... status 5, top 5")
    shapes = out["properties"]["filters"]["items"]["anyOf"]
    assert any(b["properties"]["value"].get("enum") == [5] for b in shapes)


def test_a_limit_left_to_choose_between_numbers_spends_none(tmp_path):
    out, _ = grammar(domain(tmp_path, {"anyOf": [NUMBER, WORD]}), "top 5 requests slower than 900 ms")
    assert out["properties"]["limit"]["enum"] == [5, 900]
    numbers = [b["properties"]["value"]["enum"] for b in out["properties"]["filters"]["items"]["anyOf"]
               if "status" in b["properties"]["field"]["enum"]]
    assert numbers == [[5, 900]]
