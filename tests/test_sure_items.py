"""Sure items (domains/sure_items.py): each value surely a list item gets a position of its own, in the
request's order, holding only it; the list's other items admit no sure value again."""

from __future__ import annotations

import copy

from jsonschema import Draft202012Validator

from rag_middleware.domains.sure_items import add_sure, require_items

WORD = {"type": "object", "properties": {"field": {"enum": ["service", "host"]}, "op": {"enum": ["eq", "neq"]},
                                         "value": {"enum": ["checkout", "pay-01", "pay-01 and pay-04", "pay-04"]}}}
NUMBER = {"type": "object", "properties": {"field": {"enum": ["latency"]}, "op": {"enum": ["gt", "lt"]},
                                           "value": {"enum": [900, 5]}}}


def grammar(max_items=4):
    return {"type": "object", "properties": {"filters": {
        "type": "array", "maxItems": max_items, "items": {"anyOf": [copy.deepcopy(WORD), copy.deepcopy(NUMBER)]}}}}


def item(field, op, value):
    return {"field": field, "op": op, "value": value}


def test_sure_values_take_the_first_positions_in_the_request_order():
    body = "checkout errors slower than 900 ms excluding host pay-01 and pay-04, top 5"
    sure = {}
    add_sure(sure, ("filters", "*", "value"), ["pay-04", "pay-01", "pay-01 and pay-04"])
    add_sure(sure, ("filters", "*", "value"), [900])
    schema, notes = grammar(), []
    require_items(schema, sure, body, notes)
    filters = schema["properties"]["filters"]
    assert [p["properties"]["value"]["enum"] for p in filters["prefixItems"]] == [[900], ["pay-01"], ["pay-04"]]
    assert filters["minItems"] == 3
    # "pay-01 and pay-04" holds two sure values: no value of its own, and no position
    rest = filters["items"]["anyOf"]
    assert [b["properties"]["value"]["enum"] for b in rest] == [["checkout", "pay-01 and pay-04"], [5]]
    valid = Draft202012Validator(schema)
    assert valid.is_valid({"filters": [item("latency", "gt", 900), item("host", "neq", "pay-01"),
                                       item("host", "neq", "pay-04"), item("service", "eq", "checkout")]})
    assert not valid.is_valid({"filters": [item("latency", "gt", 900), item("host", "neq", "pay-01")]})  # too few
    assert not valid.is_valid({"filters": [item("latency", "gt", 900), item("host", "neq", "pay-01"),
                                           item("host", "neq", "pay-04"), item("host", "neq", "pay-01")]})  # twice
    assert any("first 3 item(s)" in n for n in notes)


def test_a_value_no_shape_admits_any_more_gets_no_position():
    sure = {("filters",): {"value": ["web-9", "checkout"]}}  # web-9: a vote or a settled field took it
    schema = grammar()
    require_items(schema, sure, "checkout on web-9", [])
    assert [p["properties"]["value"]["enum"] for p in schema["properties"]["filters"]["prefixItems"]] == [["checkout"]]


def test_when_the_sure_values_fill_the_list_no_other_item_is_admitted():
    sure = {("filters",): {"value": [900, 5]}}
    schema = grammar(max_items=2)
    require_items(schema, sure, "slower than 900 ms, under 5", [])
    filters = schema["properties"]["filters"]
    assert len(filters["prefixItems"]) == 2 and filters["minItems"] == 2
    assert Draft202012Validator(schema).is_valid({"filters": [item("latency", "gt", 900), item("latency", "lt", 5)]})


def test_more_sure_values_than_the_list_holds_or_positions_already_leave_the_list_as_it_is():
    sure = {("filters",): {"value": [900, 5, "checkout"]}}
    schema = grammar(max_items=2)
    require_items(schema, sure, "checkout slower than 900 ms, under 5", [])
    assert "prefixItems" not in schema["properties"]["filters"]
    clauses = grammar()
    clauses["properties"]["filters"].update({"prefixItems": [copy.deepcopy(WORD)], "items": False})
    before = copy.deepcopy(clauses)
    require_items(clauses, {("filters",): {"value": ["checkout"]}}, "checkout", [])
    assert clauses == before


def test_an_answer_is_put_back_in_the_order_the_request_writes_its_values():
    from rag_middleware.domains.annotations import annotated_paths
    from rag_middleware.domains.sure_items import in_request_order, learn_order
    schema = {"type": "object", "properties": {"filters": {"type": "array", "items": {"anyOf": [
        {"type": "object", "properties": {"field": {"enum": ["host", "service"]},
                                          "value": {"type": "string", "x-ground": "words"}}}]}}}}
    found = annotated_paths(schema)
    pairs = [(f"errors of {a} on host {b}", {"filters": [{"field": "service", "value": a},
                                                         {"field": "host", "value": b}]})
             for a, b in (("checkout", "web-1"), ("billing", "db-2"), ("search", "es-3"))]
    assert learn_order(found, pairs) == {("filters",): "value"}
    answer, repairs = {"filters": [{"field": "host", "value": "pay-9"}, {"field": "service", "value": "ledger"},
                                   {"field": "service", "value": "unwritten"}]}, []
    in_request_order(answer, {("filters",): "value"}, "errors of ledger on host pay-9", repairs)
    assert [i["value"] for i in answer["filters"]] == ["ledger", "pay-9", "unwritten"]
    assert repairs == ["/filters: items put in the order the request writes their values"]
    flipped = [(q, {"filters": a["filters"][::-1]}) for q, a in pairs]
    assert learn_order(found, flipped) == {}  # examples that keep another order teach none


def test_a_quoted_phrase_is_one_sure_value_and_its_words_are_none():
    sure = {("filters",): {"value": ["S3 PutObject", "S3", "thumbnail-resizer"]}}
    schema = {"type": "object", "properties": {"filters": {"type": "array", "maxItems": 4, "items": {
        "type": "object", "properties": {"value": {"enum": ["S3 PutObject", "S3", "thumbnail-resizer"]}}}}}}
    require_items(schema, sure, 'logs from the thumbnail-resizer job that mention "S3 PutObject"', [])
    filters = schema["properties"]["filters"]
    assert [p["properties"]["value"]["enum"] for p in filters["prefixItems"]] == [["thumbnail-resizer"],
                                                                                   ["S3 PutObject"]]
    assert filters["items"]["properties"]["value"]["enum"] == ["S3"]  # not sure: left to the model
