"""Schema-declared grounding (``x-ground``) read like a ``ground:`` entry (domains/annotations.py): each
annotated node known by its path and the object branch that holds it, a word shape learnt from the values
of its own shape of a union, and a node that nothing in the request fills dropping its item's shape."""

from __future__ import annotations

import json

import yaml
from jsonschema import Draft202012Validator

from rag_middleware.domains.annotations import annotated_paths, own_values
from rag_middleware.domains.grounding import candidates, unit_bound
from rag_middleware.domains.registry import DomainRegistry
from rag_middleware.request.ask import Switches

NUMBER = {"type": "object", "properties": {
    "field": {"enum": ["status", "latency"]}, "op": {"enum": ["eq", "gt"]},
    "value": {"type": "integer", "x-ground": "numbers"}}, "required": ["field", "op", "value"],
    "additionalProperties": False}
WORD = {"type": "object", "properties": {
    "field": {"enum": ["service", "host"]}, "op": {"enum": ["eq", "neq"]},
    "value": {"type": "string", "x-ground": "words"}}, "required": ["field", "op", "value"],
    "additionalProperties": False}
SCHEMA = {"type": "object", "properties": {
    "filters": {"type": "array", "maxItems": 3, "items": {"anyOf": [NUMBER, WORD]}},
    "window": {"type": ["integer", "null"]},
    "owner": {"type": ["string", "null"], "x-ground": "words"}},
    "required": ["filters", "window", "owner"], "additionalProperties": False}

QUESTIONS = [
    ("show the errors from checkout in the last hour", [("service", "eq", "checkout")], 60),
    ("show the logs for host web-03 over the last 2 hours", [("host", "eq", "web-03")], 120),
    ("show the requests slower than 900 ms in the last day", [("latency", "gt", 900)], 1440),
    ("show the logs of stripe-gateway excluding host pay-01", [("service", "eq", "stripe-gateway"),
                                                              ("host", "neq", "pay-01")], None),
    ("show the 500s from the billing service in the last hour", [("status", "eq", 500), ("service", "eq",
                                                                                          "billing")], 60),
    ("show the logs for host db-7 in the last 3 hours", [("host", "eq", "db-7")], 180),
    ("show the timeouts of the search-api in the last day", [("service", "eq", "search-api")], 1440),
]


def answer(filters, window):
    return {"filters": [{"field": f, "op": o, "value": v} for f, o, v in filters], "window": window,
            "owner": None}


def domain(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    (d / "output.schema.json").write_text(json.dumps(SCHEMA))
    spec = {"description": "log filters", "output_schema": "output.schema.json",
            "units": {"/window": {"minute": 1, "hour": 60, "day": 1440}}}
    (d / "domain.yaml").write_text(yaml.safe_dump(spec))
    (d / "examples.jsonl").write_text("\n".join(json.dumps({"id": f"e{i}", "question": q, "answer": answer(f, w)})
                                                for i, (q, f, w) in enumerate(QUESTIONS)) + "\n")
    return DomainRegistry(tmp_path).get("logs")


def test_each_annotated_node_is_found_with_its_path_and_the_object_that_holds_it():
    found = annotated_paths(SCHEMA)
    assert [(a.path, a.sources) for a in found] == [(("filters", "*", "value"), ["numbers"]),
                                                     (("filters", "*", "value"), ["words"]),
                                                     (("owner",), ["words"])]
    assert found[0].holder is NUMBER and found[1].holder is WORD and found[2].holder is SCHEMA


def test_a_union_shape_counts_only_the_values_of_its_own_items():
    words = [a for a in annotated_paths(SCHEMA) if "words" in a.sources and a.path[0] == "filters"]
    answers = [answer(f, w) for _, f, w in QUESTIONS]
    values = own_values(words, answers)[("filters", "*", "value")]
    assert values[2] == []  # the latency filter's 900 is the number shape's
    assert values[4] == ["billing"]  # the 500 is not a word value
    assert values[3] == ["stripe-gateway", "pay-01"]


def test_a_text_filter_admits_no_common_word_of_the_examples(tmp_path):
    d = domain(tmp_path)
    schema, notes = d.declarative.grammar(d.validator.json_schema(), "show the errors from the payments-api in "
                                          "the last hour", flags=Switches())
    items = schema["properties"]["filters"]["items"]
    shapes = items.get("anyOf", [items])
    assert len(shapes) == 1  # no number in the request (the hour is the window's): no filter on a number
    admitted = shapes[0]["properties"]["value"]["enum"]
    assert "payments-api" in admitted
    assert not {"show", "the", "from", "in", "last", "hour"} & set(admitted)  # in 2+ example questions, no value
    assert any("no item of a shape whose value has nothing in the request" in n for n in notes)
    # the truth stays admitted
    truth = answer([("service", "eq", "payments-api")], 60)
    assert not [e for e in Draft202012Validator(schema).iter_errors(truth) if e.validator != "additionalProperties"]


def test_a_request_with_a_free_number_keeps_the_number_shape(tmp_path):
    d = domain(tmp_path)
    schema, _ = d.declarative.grammar(d.validator.json_schema(), "show the requests slower than 700 ms from "
                                      "search-api in the last day", flags=Switches())
    shapes = schema["properties"]["filters"]["items"]["anyOf"]
    assert [s["properties"]["value"]["enum"] for s in shapes][0] == [700]


def test_the_lone_shape_of_a_list_with_nothing_to_ground_leaves_it_empty(tmp_path):
    only = {**SCHEMA, "properties": {**SCHEMA["properties"], "filters": {"type": "array", "items": NUMBER}}}
    d = tmp_path / "nums"
    d.mkdir()
    (d / "output.schema.json").write_text(json.dumps(only))
    (d / "domain.yaml").write_text(yaml.safe_dump({"description": "d", "output_schema": "output.schema.json"}))
    (d / "examples.jsonl").write_text("")
    dom = DomainRegistry(tmp_path).get("nums")
    schema, notes = dom.declarative.grammar(dom.validator.json_schema(), "show the errors", flags=Switches())
    assert schema["properties"]["filters"]["maxItems"] == 0
    assert any(n.startswith("/filters: no item") for n in notes)
    schema, _ = dom.declarative.grammar(dom.validator.json_schema(), "show the 404s", flags=Switches())
    assert schema["properties"]["filters"].get("maxItems") != 0


def test_a_phrase_on_a_number_another_field_takes_is_no_word_value():
    request = "errors on web-05 since 40 minutes ago, or the last 24h"
    spent = unit_bound(request, {"minute": 1, "hour": 60})
    assert {40, 24} <= spent
    words = candidates("words", request=request, body=request, context={}, units=None, pattern=None,
                       only_mentioned=False, spent=spent)
    assert "web-05" in words
    assert not [w for w in words if w.split()[0] in ("40", "24h") or w.split()[-1] in ("40", "24h")]
    free = candidates("words", request=request, body=request, context={}, units=None, pattern=None,
                      only_mentioned=False)
    assert "24h" in free and "40 minutes ago" in free  # nothing spent: they stay
