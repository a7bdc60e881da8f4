"""An item's labels decided from data (domains/implied_labels.py, domains/number_labels.py, and the verb forms
of value_phrases.py): the pairs of labels the examples always give together, the label words beside a number,
and "containing"/"mentioning" read as the ``contains`` that the glosses name."""

from __future__ import annotations


from jsonschema import Draft202012Validator

from rag_middleware.domains.value_phrases import inflections
from rag_middleware.request.ask import Switches
from tests.test_named_values import item_shapes
from tests.test_value_phrases import domain as log_domain

OP = ("eq for a plain value; neq for not, except or excluding; contains for a word the log text mentions or "
      "matches; gt for more than, above; lt for under, below")
NUMBER = {"type": "object", "properties": {
    "field": {"enum": ["status_code", "latency_ms"]}, "op": {"enum": ["eq", "neq", "gt", "lt"], "description": OP},
    "value": {"type": "integer", "x-ground": "numbers"}}, "required": ["field", "op", "value"],
    "additionalProperties": False}
WORD = {"type": "object", "properties": {
    "field": {"enum": ["service", "host", "message"]}, "op": {"enum": ["eq", "neq", "contains"], "description": OP},
    "value": {"type": "string", "x-ground": "words"}}, "required": ["field", "op", "value"],
    "additionalProperties": False}
SCHEMA = {"type": "object", "properties": {
    "filters": {"type": "array", "maxItems": 4, "items": {"anyOf": [NUMBER, WORD]}}},
    "required": ["filters"], "additionalProperties": False}

QUESTIONS = [
    ("errors from the checkout service", [("service", "eq", "checkout")]),
    ("logs of the billing service excluding host pay-01", [("service", "eq", "billing"), ("host", "neq", "pay-01")]),
    ("logs from the search-api service", [("service", "eq", "search-api")]),
    ("logs for host web-03", [("host", "eq", "web-03")]),
    ('logs mentioning "timeout"', [("message", "contains", "timeout")]),
    ('errors that mention "card declined" on host db-7', [("message", "contains", "card declined"),
                                                         ("host", "eq", "db-7")]),
    ('logs that match "OOMKilled"', [("message", "contains", "OOMKilled")]),
    ("requests slower than 900 ms", [("latency_ms", "gt", 900)]),
    ("requests with latency under 40 ms", [("latency_ms", "lt", 40)]),
    ("calls with status code above 499", [("status_code", "gt", 499)]),
    ("errors from the ledger service", [("service", "eq", "ledger")]),
]


def domain(tmp_path, questions=QUESTIONS):
    return log_domain(tmp_path, questions, SCHEMA)


def grammar(d, request):
    schema, notes = d.declarative.grammar(d.validator.json_schema(), request, flags=Switches())
    return schema, notes, item_shapes(schema["properties"]["filters"])


def labels(shape):
    return shape["properties"]["field"]["enum"], shape["properties"]["op"]["enum"], shape["properties"]["value"]["enum"]


def test_a_verb_gloss_reads_in_its_other_forms():
    assert inflections("contains") == ["contain", "containing", "contained"]
    assert inflections("matches") == ["match", "matching", "matched"]
    assert inflections("status") == inflections("over") == inflections("is") == []


def test_the_pairs_the_examples_always_give_are_learnt(tmp_path):
    rules = domain(tmp_path).declarative.spec.implied[("filters", "*")]
    pairs = {(r.key, r.label, r.other): r.implied for r in rules}
    assert pairs[("field", "service", "op")] == "eq"  # 4 of 4
    assert pairs[("op", "contains", "field")] == "message"  # 3 of 3
    assert ("field", "host", "op") not in pairs  # 2 plain ones: "excluding host pay-01" is the phrase's, not host's


def test_containing_decides_the_operator_and_the_operator_the_field(tmp_path):
    d = domain(tmp_path)
    schema, notes, shapes = grammar(d, 'logs containing "connection reset" from the payments-api service')
    assert (["message"], ["contains"], ["connection reset"]) in [labels(s) for s in shapes]
    assert (["service"], ["eq"], ["payments-api"]) in [labels(s) for s in shapes]
    assert any("implied by the item's other label" in n for n in notes)
    truth = {"filters": [{"field": "message", "op": "contains", "value": "connection reset"},
                         {"field": "service", "op": "eq", "value": "payments-api"}]}
    assert Draft202012Validator(schema).is_valid(truth)


def test_examples_that_disagree_imply_nothing(tmp_path):
    mixed = [*QUESTIONS, ("logs of the mailer service other than host m-1", [("service", "neq", "mailer")]),
             ("service gateway", [("service", "contains", "gateway")])]
    rules = domain(tmp_path, mixed).declarative.spec.implied.get(("filters", "*"), [])
    assert ("field", "service", "op") not in {(r.key, r.label, r.other) for r in rules}  # 4 of 6 is no rule


def test_a_label_word_beside_a_number_decides_its_field(tmp_path):
    d = domain(tmp_path)
    rule = d.declarative.spec.numbered[("filters", "*", "value")]
    assert rule.reliable and rule.decided == rule.right == 3
    schema, notes, shapes = grammar(d, "calls with a status code greater than 400 and latency above 250 ms")
    found = [labels(s) for s in shapes]
    assert (["status_code"], ["eq", "neq", "gt", "lt"], [400]) in found  # "greater than" is passed over to "code"
    assert (["latency_ms"], ["gt"], [250]) in found  # "ms" right after it
    assert schema["properties"]["filters"]["minItems"] == 2  # both are surely items


def test_a_number_with_no_label_word_beside_it_is_left_to_the_model(tmp_path):
    _, _, shapes = grammar(domain(tmp_path), "how many 503s on host web-1")
    assert any(s["properties"]["field"]["enum"] == ["status_code", "latency_ms"] for s in shapes)
