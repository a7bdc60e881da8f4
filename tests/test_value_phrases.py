"""Value phrases (domains/value_phrases.py): a gloss phrase right before a grounded list item's value decides
the item's other label ("excluding host pay-01" is neq, "slower than 900" gt), judged on the examples."""

from __future__ import annotations

import json

import yaml
from jsonschema import Draft202012Validator

from rag_middleware.domains.registry import DomainRegistry
from rag_middleware.domains.request_words import Text, spread_to_joined
from rag_middleware.request.ask import Switches
from tests.test_named_values import item_shapes

OP = "eq for a plain value; neq for not, except or excluding; gt for more than, slower than, above; lt for under, below"
NUMBER = {"type": "object", "properties": {
    "field": {"enum": ["status", "latency"]}, "op": {"enum": ["eq", "neq", "gt", "lt"], "description": OP},
    "value": {"type": "integer", "x-ground": "numbers"}}, "required": ["field", "op", "value"],
    "additionalProperties": False}
WORD = {"type": "object", "properties": {
    "field": {"enum": ["service", "host"]}, "op": {"enum": ["eq", "neq"], "description": OP},
    "value": {"type": "string", "x-ground": "words"}}, "required": ["field", "op", "value"],
    "additionalProperties": False}
SCHEMA = {"type": "object", "properties": {
    "filters": {"type": "array", "maxItems": 3, "items": {"anyOf": [NUMBER, WORD]}}},
    "required": ["filters"], "additionalProperties": False}

QUESTIONS = [
    ("show the errors from checkout", [("service", "eq", "checkout")]),
    ("show the logs for host web-03 excluding host web-04", [("host", "eq", "web-03"), ("host", "neq", "web-04")]),
    ("show the requests slower than 900 ms", [("latency", "gt", 900)]),
    ("show the logs of stripe-gateway except host pay-01", [("service", "eq", "stripe-gateway"),
                                                           ("host", "neq", "pay-01")]),
    ("show the 500s from the billing service", [("status", "eq", 500), ("service", "eq", "billing")]),
    ("show the requests under 40 ms on host db-7", [("latency", "lt", 40), ("host", "eq", "db-7")]),
    ("show the statuses above 499 over the last hour", [("status", "gt", 499)]),
]


def domain(tmp_path, questions=QUESTIONS, schema=SCHEMA):
    """A log-filter domain with ``schema`` and one example per (question, [(field, op, value)])."""
    d = tmp_path / "logs"
    d.mkdir()
    (d / "output.schema.json").write_text(json.dumps(schema))
    spec = {"description": "log filters", "output_schema": "output.schema.json"}
    (d / "domain.yaml").write_text(yaml.safe_dump(spec))
    rows = [{"id": f"e{i}", "question": q, "answer": {"filters": [{"field": f, "op": o, "value": v} for f, o, v in fs]}}
            for i, (q, fs) in enumerate(questions)]
    (d / "examples.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return DomainRegistry(tmp_path).get("logs")


def shapes(d, request):
    schema, notes = d.declarative.grammar(d.validator.json_schema(), request, flags=Switches())
    return schema, notes, [(b["properties"]["op"]["enum"], b["properties"]["value"]["enum"])
                           for b in item_shapes(schema["properties"]["filters"])]


def test_the_phrases_are_learnt_from_the_glosses_and_judged_on_the_examples(tmp_path):
    [rule] = domain(tmp_path).declarative.spec.phrased[("filters", "*", "value")]
    assert rule.key == "op" and rule.value == "value"
    # "except or excluding" is read one alternative at a time
    assert rule.rule.phrases["excluding"] == rule.rule.phrases["except"] == "neq"
    assert rule.rule.phrases["slower than"] == "gt" and rule.rule.phrases["under"] == "lt"
    # the naming word "host" stands between "excluding" and the value, and is passed over
    assert {"host", "status", "latency", "service"} <= rule.skip
    assert rule.rule.reliable and rule.rule.decided >= 3 and rule.rule.right == rule.rule.decided


def test_a_value_after_a_phrase_takes_only_its_label(tmp_path):
    d = domain(tmp_path)
    schema, notes, found = shapes(d, "show the logs of search-api excluding host pay-07 and pay-08 slower than 250 ms")
    neq = {v for ops, values in found if ops == ["neq"] for v in values}
    assert {"pay-07", "pay-08"} <= neq  # "and pay-08" is joined to the decided value
    assert (["gt"], [250]) in found
    assert any("op: neq for ['pay-07'" in n and "'excluding'" in n for n in notes)
    assert "search-api" in [v for ops, values in found if ops == ["eq", "neq"] for v in values]  # no phrase: open
    # each decided value is surely an item: the list (at most 3 here) holds them, in the request's order
    truth = {"filters": [{"field": "host", "op": "neq", "value": "pay-07"},
                         {"field": "host", "op": "neq", "value": "pay-08"},
                         {"field": "latency", "op": "gt", "value": 250}]}
    assert not list(Draft202012Validator(schema).iter_errors(truth))
    assert schema["properties"]["filters"]["minItems"] == 3


def test_function_words_between_a_phrase_and_its_value_are_passed_over(tmp_path):
    d = domain(tmp_path)
    [rule] = d.declarative.spec.phrased[("filters", "*", "value")]
    assert {"from", "the", "on"} <= rule.skip and "than" not in rule.skip  # "than" is part of phrases
    _, notes, found = shapes(d, "show the errors not from the search-api service")
    assert (["neq"], ["search-api"]) in found  # "not from the": the phrase "not"
    _, _, plain = shapes(d, "show the errors from the search-api service")
    assert (["eq"], ["search-api"]) in plain  # no "not": the examples' plain service values are eq


def test_a_phrase_after_the_value_decides_nothing(tmp_path):
    # "over" after the value is the window's ("500s over the last hour"), never the value's operator
    _, _, found = shapes(domain(tmp_path), "show the 503s from checkout over the last hour")
    assert all(len(ops) > 1 for ops, _ in found)


def test_phrases_the_examples_contradict_do_not_decide(tmp_path):
    # here "excluding" precedes a plain value as often as a neq one: judged, the rule is not reliable
    contradicted = [("show errors excluding host web-01", [("host", "eq", "web-01")]),
                    ("show errors excluding host web-02", [("host", "eq", "web-02")]),
                    ("show errors excluding host web-03", [("host", "neq", "web-03")]),
                    ("show errors from checkout", [("service", "eq", "checkout")])]
    d = domain(tmp_path, contradicted)
    [rule] = d.declarative.spec.phrased[("filters", "*", "value")]
    assert not rule.rule.reliable
    _, _, found = shapes(d, "show errors excluding host web-09")
    assert all(len(ops) > 1 for ops, _ in found)


def test_a_list_spreads_a_label_to_the_values_it_joins():
    text = Text("hosts pay-01, pay-02 and pay-03 but not web-1")
    spans = {v: text.spans(v) for v in ("pay-01", "pay-02", "pay-03", "web-1")}
    out = {"pay-01": "neq"}
    spread_to_joined(text, spans, out)
    assert out == {"pay-01": "neq", "pay-02": "neq", "pay-03": "neq"}


def test_the_words_of_a_deciding_phrase_are_no_value(tmp_path):
    schema, notes, found = shapes(domain(tmp_path), "show the errors of every service except billing-api")
    assert (["neq"], ["billing-api"]) in found
    values = [v for _, vs in found for v in vs]
    assert "except" not in values  # the phrase's own word is no value
    assert any("left out: the words of a phrase" in n for n in notes)


def test_a_decided_value_with_its_phrase_is_no_value_and_a_shape_left_empty_goes(tmp_path):
    schema, notes, found = shapes(domain(tmp_path), "show the errors excluding search-api")
    values = [v for _, vs in found for v in vs]
    assert "search-api" in values and "excluding search-api" not in values and "excluding" not in values


def test_a_number_written_with_thousands_separators_is_one_word():
    from rag_middleware.domains.grounding import words_in
    words = words_in("queries slower than 5,000 ms, then 12, 345 rows")
    assert "5000" in words and "000" not in words
    assert "12" in words and "345" in words  # a comma and a space: two numbers


def test_a_contracted_not_is_not_with_or_without_its_apostrophe(tmp_path):
    from rag_middleware.domains.phrases import _tokens

    assert _tokens("calls that didn't return") == _tokens("calls that didnt return") == ["calls", "that", "did",
                                                                                          "not", "return"]
    assert _tokens("errors that aren’t 503") == ["errors", "that", "are", "not"]
    assert _tokens("the donut was meant for print") == ["the", "donut", "was", "meant", "for", "print"]
    d = domain(tmp_path)
    for request in ("show the statuses that aren't 404", "show the statuses that arent 404"):
        _, _, found = shapes(d, request)
        assert (["neq"], [404]) in found
