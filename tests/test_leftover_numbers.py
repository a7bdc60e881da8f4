"""Leftover numbers (domains/leftover_numbers.py): a number the request writes that no other field takes (no
unit, no slot) is surely an item of the list whose items take numbers, where the examples always make it one."""

from __future__ import annotations

from rag_middleware.domains.annotations import annotated_paths
from rag_middleware.domains.leftover_numbers import learn_leftover, leftover, written_numbers
from rag_middleware.domains.slots import SlotBank
from rag_middleware.domains.spec import DeclarativeSpec

UNITS = {"minute": 1, "hour": 60, "day": 1440}
SCHEMA = {"type": "object", "properties": {
    "filters": {"type": "array", "items": {"anyOf": [
        {"type": "object", "properties": {"field": {"enum": ["status", "latency"]},
                                          "value": {"type": "number", "x-ground": "numbers"}}},
        {"type": "object", "properties": {"field": {"enum": ["host"]},
                                          "value": {"type": "string", "x-ground": "words"}}}]}},
    "minutes": {"type": ["integer", "null"]}, "limit": {"type": ["integer", "null"]}}}


def answer(filters, minutes=None, limit=None):
    return {"filters": [{"field": f, "value": v} for f, v in filters], "minutes": minutes, "limit": limit}


PAIRS = [("500 errors in the last 2 hours", answer([("status", 500)], 120)),
         ("requests slower than 800 ms, top 5", answer([("latency", 800)], limit=5)),
         ("404 responses on host web-03", answer([("status", 404), ("host", "web-03")])),
         ("logs of host web-07 from the last day", answer([("host", "web-07")], 1440)),
         ("status 503 over the past 3 hours, show 10", answer([("status", 503)], 180, 10))]


def test_the_numbers_a_question_writes_in_digits_without_a_unit():
    assert written_numbers("any 502s on web-07 in the past 2 hours, or one 404", UNITS) == [502, 404]
    assert written_numbers("errors in the last three days", UNITS) == []


def test_the_examples_teach_that_every_number_no_other_field_takes_is_an_item():
    found = annotated_paths(SCHEMA)
    assert learn_leftover(found, PAIRS, UNITS) == {("filters", "*", "value"): (4, 4)}
    # a question whose leftover number is no item unlearns it, when that is more than one in ten
    unused = [*PAIRS, ("is host web-09 one of the 12 new ones?", answer([("host", "web-09")]))]
    assert learn_leftover(found, unused, UNITS) == {}
    assert learn_leftover(found, PAIRS[:2], UNITS) == {}  # too few examples


def test_a_leftover_number_is_a_sure_item_unless_a_slot_may_take_it():
    spec = DeclarativeSpec.from_sections(context={}, ground={"/limit": "numbers"}, units={"/minutes": UNITS},
                                         derive={}, vote={}, harden=[])
    spec.leftover = {("filters", "*", "value"): (4, 4)}
    slots = SlotBank((("limit",),), (), units=UNITS)
    for question, truth in PAIRS:
        slots.learn(question, truth)
    found = leftover(spec, "any 502s on web-07 in the past 2 hours?", slots, {})
    assert [(r["path"], r["leftover"]) for r in found] == [("/filters/*/value", [502])]
    # a number the limit picked is the limit's; the other one is left over
    assert leftover(spec, "404s on web-03, show 10", slots, {("limit",): 10})[0]["leftover"] == [404]
    # a number standing where the examples' limits do is not left over while the limit is open
    assert leftover(spec, "show 10", slots, {}) == []
    # a number a word names as a word value's is that value
    from rag_middleware.domains.named_values import NamedBank
    spec.named = {("filters", "*", "value"): NamedBank("field", "value", {"L:user": "user_id"})}
    assert leftover(spec, "502s for user 5519023", slots, {})[0]["leftover"] == [502]
    spec.leftover = {}
    assert leftover(spec, "any 502s on web-07", slots, {}) == []


def test_the_pipeline_makes_a_bare_status_an_item_of_its_own(tmp_path):
    import json

    import yaml

    from rag_middleware.domains.registry import DomainRegistry
    from rag_middleware.request.ask import Switches

    d = tmp_path / "logs"
    d.mkdir()
    (d / "output.schema.json").write_text(json.dumps(SCHEMA))
    (d / "domain.yaml").write_text(yaml.safe_dump({"description": "log filters", "output_schema": "output.schema.json",
                                                   "units": {"/minutes": UNITS}, "ground": {"/limit": "numbers"}}))
    (d / "examples.jsonl").write_text("\n".join(json.dumps({"id": f"e{i}", "question": q, "answer": a})
                                                for i, (q, a) in enumerate(PAIRS)) + "\n")
    domain = DomainRegistry(tmp_path).get("logs")
    assert domain.declarative.spec.leftover == {("filters", "*", "value"): (4, 4)}
    votes = leftover(domain.declarative.spec, "any 502s on host web-07 in the past 2 hours", domain.slots, {})
    schema, notes = domain.declarative.grammar(domain.validator.json_schema(),
                                               "any 502s on host web-07 in the past 2 hours", flags=Switches(),
                                               votes=votes)
    assert any("surely an item" in n and "502" in n for n in notes)
    first = schema["properties"]["filters"]["prefixItems"][0]
    assert [b["properties"]["value"]["enum"] for b in first.get("anyOf", [first])] == [[502]]
    # domains check tells the author what was learnt
    from rag_middleware.domains.authoring import check_domain
    notes = check_domain(d, near_duplicates=False).notes
    assert "/filters/*/value: a number no other field takes is an item: 4 of 4 examples; used" in notes


def test_the_vote_table_and_the_replay_report_show_the_leftover_numbers():
    from rag_middleware.analytics.report_items import explain
    from rag_middleware.cli.context import console
    from rag_middleware.cli.explain import show_grammar

    record = {"path": "/filters/*/value", "allowed": [], "scores": {}, "voters": [], "confident": False,
              "leftover": [502], "reason": "numbers no other field takes, each an item (7 of 7 examples)"}
    width = console.width
    console.width = 240
    try:
        with console.capture() as captured:
            show_grammar([record], [])
    finally:
        console.width = width
    assert "sure items [502] (numbers no other field takes" in " ".join(captured.get().split())
    assert explain({"votes": [record]})[0].startswith("vote /filters/*/value: sure items [502]")


def test_an_ordinal_is_no_leftover_number():
    assert written_numbers("the 95th percentile of 502s on the 3rd", UNITS) == [502]
