"""Switching off any accuracy mechanism must fail a test.

For every switch of ``Switches`` (memory, examples, negatives, cot, repair, guide, ground, derive, vote,
harden, hooks) the same request runs with the switch on and off, and the test asserts the mechanism's effect
when on (the grammar narrowed, the field filled, the prompt carrying the examples) as well as its absence
when off. A mechanism that silently does nothing, or that ignores its switch, fails here.

One middleware serves the whole module (loading the shipped domains takes seconds); tests that write memory
use a tenant of their own."""

from __future__ import annotations

import json

import pytest

from rag_middleware import Switches
from rag_middleware.domains.mechanisms import NUMBER_BOUND
from tests.conftest import FakeLLM, copy_project, fake_middleware, project_settings

DATA = "Columns: price, qty\nsort by price, cheapest first"
CLAIM = ("I rear-ended another car on the highway, my policy POL-123456, repair estimate $2,300. "
         "Nobody was hurt. Sent by email.")
CLAIM_ANSWER = {"claim_type": "auto", "severity": "medium", "channel": "email", "injury_reported": False,
                "policy_number": "POL-123456", "amount_claimed": 2300}
LISTING = "Show me 3 bedroom apartments in Berlin under 2000 listed in the last 2 weeks"
PLAN = {"chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "args": [], "kwargs": {"by": "price", "ascending": True}}}]}


@pytest.fixture(scope="module")
def llm() -> FakeLLM:
    return FakeLLM()


@pytest.fixture(scope="module")
def mw(tmp_path_factory, llm):
    m = fake_middleware(project_settings(copy_project(tmp_path_factory.mktemp("switches"))), llm)
    yield m
    m.close()


@pytest.fixture(autouse=True)
def _fresh_llm(llm):
    llm.queue.clear()
    llm.requests.clear()
    llm.default = "{}"


def ask_once(mw, llm, question: str, domain: str, answer, switches: Switches | None = None, **kw):
    llm.enqueue(answer if isinstance(answer, str) else json.dumps(answer))
    return mw.ask(question, domain=domain, switches=switches or Switches(), max_attempts=1, raise_on_invalid=False,
                  learn=kw.pop("learn", False), **kw)


def examples_in(messages) -> int:
    return sum(1 for m in messages if m.get("kind") == "example" and m["role"] == "user")


# -- what the prompt carries ---------------------------------------------------------------------------------


def test_examples_switch(mw):
    on = mw.render(DATA, domain="data_ops")
    off = mw.render(DATA, domain="data_ops", switches=Switches(examples=False))
    assert len(on.selected) == 6 and examples_in(on.messages) == 6
    assert on.selected[0].answer in [m["content"] for m in on.messages if m["role"] == "assistant"]
    assert off.selected == [] and examples_in(off.messages) == 0
    assert off.negatives, "examples off leaves the negatives alone"


def test_negatives_switch(mw):
    on = mw.render(DATA, domain="data_ops")
    off = mw.render(DATA, domain="data_ops", switches=Switches(negatives=False))
    assert on.negatives and on.negatives[0].wrong in on.messages[0]["content"]
    assert off.negatives == [] and on.negatives[0].wrong not in off.messages[0]["content"]
    assert off.selected, "negatives off leaves the examples alone"


def test_cot_switch(mw):
    default = mw.render(DATA, domain="data_ops")  # data_ops: cot disabled in domain.yaml
    on = mw.render(DATA, domain="data_ops", switches=Switches(cot=True))
    off = mw.render(DATA, domain="data_ops", switches=Switches(cot=False))
    assert on.cot and "Before answering" in on.messages[0]["content"]
    assert "Identify the task from the operations" in on.messages[0]["content"]  # the domain's own steps
    assert not off.cot and "Before answering" not in off.messages[0]["content"]
    assert default.messages[0]["content"] == off.messages[0]["content"]


def test_memory_switch(mw, llm):
    first = ask_once(mw, llm, DATA, "data_ops", PLAN, tenant="memtest", learn=True)
    assert first.valid
    mw.store.update(first.interaction_id, tenant="memtest", status="approved")  # reviewed: now it teaches
    on = mw.render(DATA, domain="data_ops", tenant="memtest")
    off = mw.render(DATA, domain="data_ops", tenant="memtest", switches=Switches(memory=False))
    assert first.interaction_id in [s.id for s in on.selected]
    assert [s for s in on.selected if s.source == "memory"]
    assert first.interaction_id not in [s.id for s in off.selected]
    assert all(s.source == "curated" for s in off.selected) and off.selected


# -- what the grammar admits ---------------------------------------------------------------------------------


def test_ground_switch(mw):
    on = mw.render(CLAIM, domain="claims_intake", switches=Switches(vote=False)).json_schema["properties"]
    off = mw.render(CLAIM, domain="claims_intake", switches=Switches(ground=False)).json_schema["properties"]
    assert on["policy_number"]["enum"] == ["POL-123456"]  # copied from the request, never invented
    # "$2,300" as written; no null, as the examples set the amount whenever the request states a number
    assert on["amount_claimed"]["enum"] == [2300]
    slotted = mw.render(CLAIM, domain="claims_intake").json_schema["properties"]
    assert slotted["amount_claimed"]["enum"] == [2300]  # and the words around it say it is the amount
    assert "enum" not in off["policy_number"] and off["policy_number"]["pattern"] == "^POL-[0-9]{6}$"
    assert "enum" not in off["amount_claimed"]


def test_ground_units_turn_a_time_window_into_the_fields_unit(mw):
    on = mw.render(LISTING, domain="listing_search", switches=Switches(vote=False)).json_schema["properties"]
    off = mw.render(LISTING, domain="listing_search", switches=Switches(ground=False)).json_schema["properties"]
    assert on["max_age_days"]["enum"] == [14, None]  # "the last 2 weeks"
    # with votes on, the field's gloss words ("last", "weeks") say it is set: the window alone
    assert mw.render(LISTING, domain="listing_search").json_schema["properties"]["max_age_days"]["enum"] == [14]
    assert on["city"]["enum"][0] == "Berlin"
    assert "enum" not in off["max_age_days"] and "enum" not in off["city"]


def test_derive_switch_in_the_grammar_and_the_answer(mw, llm):
    on = mw.render(CLAIM, domain="claims_intake").json_schema
    off = mw.render(CLAIM, domain="claims_intake", switches=Switches(derive=False)).json_schema
    assert "department" not in on["properties"] and "department" not in on["required"]
    assert "department" in off["properties"] and "department" in off["required"]
    result = ask_once(mw, llm, CLAIM, "claims_intake", CLAIM_ANSWER)
    assert result.valid and result.output["department"] == "motor_claims"  # filled from claim_type
    assert result.attempts[0].repairs == ['/department: missing -> "motor_claims" (derived from /claim_type)']
    result = ask_once(mw, llm, CLAIM, "claims_intake", CLAIM_ANSWER, switches=Switches(derive=False))
    assert not result.valid and any("department" in e for e in result.attempts[0].errors)


def test_derive_switch_hides_derived_fields_from_the_examples(mw):
    on = mw.render(DATA, domain="data_ops")
    off = mw.render(DATA, domain="data_ops", switches=Switches(derive=False))
    shown_on = [m["content"] for m in on.messages if m.get("kind") == "example" and m["role"] == "assistant"]
    shown_off = [m["content"] for m in off.messages if m.get("kind") == "example" and m["role"] == "assistant"]
    assert shown_on and not any('"task"' in a or '"method"' in a for a in shown_on)
    assert shown_off and all('"task"' in a and '"method"' in a for a in shown_off)


def test_vote_switch_narrows_by_neighbours(mw):
    on = mw.render(CLAIM, domain="claims_intake")
    off = mw.render(CLAIM, domain="claims_intake", switches=Switches(vote=False))
    assert {v["path"]: v["allowed"] for v in on.votes}["/channel"] == ["email"]
    assert on.json_schema["properties"]["channel"]["enum"] == ["email"]
    assert "/channel: vote admits ['email']" in on.grammar_notes
    assert off.votes == [] and off.json_schema["properties"]["channel"]["enum"] == ["email", "phone", "chat",
                                                                                    "web_form"]


def test_vote_switch_rules_decide_in_the_grammar_and_in_the_answer(mw, llm):
    chart = "Columns: region, sales\ntotal sales per region as a bar chart"
    on = mw.render(chart, domain="data_ops")
    off = mw.render(chart, domain="data_ops", switches=Switches(vote=False))
    assert on.json_schema["properties"]["chart_type"]["enum"] == ["bar"]
    assert len(off.json_schema["properties"]["chart_type"]["enum"]) == 6
    plan = {"chart_type": "none", "operations": [{"type": "group_by", "execution_instructions": {
        "args": ["region"], "kwargs": {"agg": {"sales": "sum"}}}}]}
    result = ask_once(mw, llm, chart, "data_ops", plan)  # a backend that ignored the grammar
    assert result.valid and result.output["chart_type"] == "bar", result.attempts[0].errors
    assert any(r.startswith('/chart_type: "none" -> "bar" (rule') for r in result.attempts[0].repairs)
    result = ask_once(mw, llm, chart, "data_ops", plan, switches=Switches(vote=False))
    assert result.output is None or result.output["chart_type"] == "none"
    assert not any(r.startswith("/chart_type") for r in result.attempts[0].repairs)


def test_harden_switch_bounds_numbers_and_snaps_near_misses(mw, llm):
    open_amount = mw.render(CLAIM, domain="claims_intake", switches=Switches(ground=False))
    unbounded = mw.render(CLAIM, domain="claims_intake", switches=Switches(ground=False, harden=False))
    assert open_amount.json_schema["properties"]["amount_claimed"]["maximum"] == NUMBER_BOUND
    assert "maximum" not in unbounded.json_schema["properties"]["amount_claimed"]
    near_miss = {**CLAIM_ANSWER, "claim_type": "Auto", "severity": "meduim"}
    result = ask_once(mw, llm, CLAIM, "claims_intake", near_miss)
    assert result.valid and result.output["claim_type"] == "auto" and result.output["severity"] == "medium"
    assert "/claim_type: 'Auto' -> 'auto' (nearest allowed value)" in result.attempts[0].repairs
    result = ask_once(mw, llm, CLAIM, "claims_intake", near_miss, switches=Switches(harden=False))
    assert not result.valid and any(e.startswith("claim_type") for e in result.attempts[0].errors)


def test_harden_drops_a_repeated_list_item(mw, llm):
    answer = {"listing_type": "apartment", "deal": "rent", "city": "Berlin", "max_age_days": 14, "sort": None,
              "limit": 3, "filters": [{"field": "bedrooms", "op": "eq", "value": 3},
                                      {"field": "bedrooms", "op": "eq", "value": 3},
                                      {"field": "price", "op": "lt", "value": 2000}]}
    result = ask_once(mw, llm, LISTING, "listing_search", answer)
    assert result.valid and len(result.output["filters"]) == 2, result.attempts[0].errors
    assert "/filters: a repeated item dropped" in result.attempts[0].repairs
    result = ask_once(mw, llm, LISTING, "listing_search", answer, switches=Switches(harden=False))
    assert result.output is None or len(result.output["filters"]) == 3
    assert "/filters: a repeated item dropped" not in result.attempts[0].repairs


def test_harden_bounds_list_lengths_only_when_on():
    from rag_middleware.domains.mechanisms import Declarative
    from rag_middleware.domains.spec import DeclarativeSpec

    schema = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}}
    spec = DeclarativeSpec.from_sections(context={}, ground={}, units={}, derive={}, vote={},
                                         harden=[{"max_items": 3}])
    bounded, _ = Declarative(spec, schema).grammar(schema, "a request", flags=Switches())
    free, _ = Declarative(spec, schema).grammar(schema, "a request", flags=Switches(harden=False))
    assert bounded["properties"]["tags"]["maxItems"] == 3
    assert "maxItems" not in free["properties"]["tags"]


def test_guide_switch_fixes_one_step_type_per_clause(mw):
    two = "Columns: a, b\nRemove duplicate rows then sort by a"
    on = mw.render(two, domain="data_ops")
    off = mw.render(two, domain="data_ops", switches=Switches(guide=False))
    assert on.steps == [["remove_duplicates"], ["sort"]]
    ops = on.json_schema["properties"]["operations"]
    assert ops["minItems"] == ops["maxItems"] == 2 and ops["items"] is False
    kinds = [[b["properties"]["type"]["const"] for b in item.get("anyOf", [item])] for item in ops["prefixItems"]]
    assert kinds == [["remove_duplicates"], ["sort"]]
    assert off.steps == [] and "prefixItems" not in off.json_schema["properties"]["operations"]


def test_hooks_switch_drops_the_domains_grammar_and_repair(mw, llm):
    on = mw.render(DATA, domain="data_ops").json_schema
    off = mw.render(DATA, domain="data_ops", switches=Switches(hooks=False)).json_schema
    kwargs_on = on["properties"]["operations"]["prefixItems"][0]["anyOf"][0]["properties"][
        "execution_instructions"]["properties"]["kwargs"]
    assert kwargs_on["properties"]["by"] == {"enum": ["price"]}  # the request's own column
    # the columns are grounded by the core, from the model schema's x-ground annotations: hooks or not
    assert '"enum": ["price"]' in json.dumps(off) and "x-ground" not in json.dumps(on) + json.dumps(off)
    loose = mw.render(DATA, domain="data_ops", switches=Switches(hooks=False, ground=False)).json_schema
    assert '"enum": ["price"]' not in json.dumps(loose) and "x-ground" not in json.dumps(loose)
    near_miss = {"chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
        "args": [], "kwargs": {"by": "Price", "ascending": True}}}]}
    result = ask_once(mw, llm, DATA, "data_ops", near_miss)
    assert result.valid and result.output["operations"][0]["execution_instructions"]["kwargs"]["by"] == "price"
    result = ask_once(mw, llm, DATA, "data_ops", near_miss, switches=Switches(hooks=False))
    assert not result.valid and "unknown column Price" in result.attempts[0].errors[0]


def test_repair_switch_drops_only_the_domains_repair(mw, llm):
    near_miss = {"chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
        "args": [], "kwargs": {"by": "Price", "ascending": True}}}]}
    result = ask_once(mw, llm, DATA, "data_ops", near_miss)
    assert result.valid
    assert "operations.0.execution_instructions: column names matched to the Columns line" in \
        result.attempts[0].repairs
    result = ask_once(mw, llm, DATA, "data_ops", near_miss, switches=Switches(repair=False))
    assert not result.valid and "unknown column Price" in result.attempts[0].errors[0]
    assert result.attempts[0].repairs  # the declarative fixes still ran (task and method derived)
    assert llm.requests[-1].json_schema == mw.render(DATA, domain="data_ops").json_schema  # the grammar kept


def test_all_mechanisms_off_sends_the_plain_schema(mw):
    off = Switches(guide=False, ground=False, derive=False, vote=False, harden=False, hooks=False)
    plain = mw.render(CLAIM, domain="claims_intake", switches=off)
    assert plain.grammar_notes == [] and plain.steps == [] and plain.votes == []
    shown = mw.domains.get("claims_intake").shown_schema(hide_derived=False)
    assert plain.json_schema["properties"] == shown["properties"]
