"""A narrowed grammar that admits nothing is put back as the schema had it, node by node, with a note."""

from __future__ import annotations

import copy

from rag_middleware.domains.satisfiable import guarded, unsatisfiable

BEFORE = {
    "type": "object",
    "properties": {
        "category": {"enum": ["billing", "bug", "other"]},
        "note": {"type": ["string", "null"]},
        "filters": {"type": "array", "maxItems": 4, "items": {"type": "object", "properties": {
            "field": {"enum": ["price", "rooms"]}, "value": {"type": "number"}}, "required": ["field", "value"]}},
    },
    "required": ["category", "filters"],
}


def test_a_satisfiable_grammar_is_returned_as_it_is_and_the_schema_is_never_made():
    narrowed = copy.deepcopy(BEFORE)
    narrowed["properties"]["category"] = {"enum": ["bug"]}

    def before():
        raise AssertionError("made without need")

    notes: list[str] = []
    assert guarded(narrowed, before, notes) is narrowed and notes == []


def test_each_kind_of_contradiction_is_found_where_it_is():
    cases = {
        "empty enum": {"enum": []},
        "minItems 3 > maxItems 2": {"type": "array", "minItems": 3, "maxItems": 2},
        "minimum 10 > maximum 5": {"type": "integer", "minimum": 10, "maximum": 5},
        "exclusiveMinimum 5 >= exclusiveMaximum 5": {"type": "number", "exclusiveMinimum": 5, "exclusiveMaximum": 5},
        "no type": {"type": []},
    }
    for why, node in cases.items():
        schema = {"type": "object", "properties": {"x": node}, "required": ["x"]}
        assert unsatisfiable(schema) == [(("properties", "x"), why)], why
        # an optional property that admits nothing is simply left out by the decoder: no fault
        assert unsatisfiable({"type": "object", "properties": {"x": node}}) == []


def test_a_union_fails_only_when_every_branch_does_and_a_list_only_for_items_it_needs():
    union = {"anyOf": [{"enum": []}, {"type": "null"}]}
    assert unsatisfiable({"type": "object", "properties": {"x": union}, "required": ["x"]}) == []
    dead = {"anyOf": [{"enum": []}, {"enum": []}]}
    assert len(unsatisfiable({"type": "object", "properties": {"x": dead}, "required": ["x"]})) == 2
    optional_items = {"type": "array", "items": {"enum": []}}  # the empty list is still an answer
    assert unsatisfiable(optional_items) == []
    needed = {"type": "array", "minItems": 1, "items": {"enum": []}}
    assert unsatisfiable(needed) == [(("items",), "empty enum")]
    planned = {"type": "array", "minItems": 2, "prefixItems": [{"const": "a"}, {"enum": []}], "items": False}
    assert unsatisfiable(planned) == [(("prefixItems", 1), "empty enum")]


def test_the_node_that_admits_nothing_is_put_back_and_the_rest_of_the_narrowing_kept():
    narrowed = copy.deepcopy(BEFORE)
    narrowed["properties"]["category"] = {"enum": ["bug"]}
    narrowed["properties"]["filters"]["minItems"] = 6  # a plan of six under a bound of four
    notes: list[str] = []
    out = guarded(narrowed, lambda: copy.deepcopy(BEFORE), notes)
    assert out["properties"]["category"] == {"enum": ["bug"]}  # kept
    assert out["properties"]["filters"] == BEFORE["properties"]["filters"]
    assert notes == ["grammar: /filters admitted nothing (minItems 6 > maxItems 4); left as the schema has it"]
    assert unsatisfiable(out) == []


def test_a_node_the_schema_does_not_have_is_put_back_through_its_nearest_ancestor():
    narrowed = copy.deepcopy(BEFORE)
    narrowed["properties"]["filters"].update(minItems=1, items=False, prefixItems=[
        {"type": "object", "properties": {"field": {"enum": []}, "value": {"enum": [3]}}, "required": ["field"]}])
    notes: list[str] = []
    out = guarded(narrowed, lambda: copy.deepcopy(BEFORE), notes)
    assert out["properties"]["filters"] == BEFORE["properties"]["filters"]
    assert notes == ["grammar: /filters admitted nothing (empty enum); left as the schema has it"]


def test_the_schemas_own_fault_is_left_to_its_author():
    broken = copy.deepcopy(BEFORE)
    broken["properties"]["category"] = {"enum": []}
    narrowed = copy.deepcopy(broken)
    notes: list[str] = []
    assert guarded(narrowed, lambda: copy.deepcopy(broken), notes) == broken and notes == []
