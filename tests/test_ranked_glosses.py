"""Ranked gloss rules (domains/glosses.py, domains/ranges.py): number ranges in a label's clauses ("an amount
of 10,000 or more") gloss it for a request whose value falls in them; a field whose highest hit label wins
("the highest level any condition reaches") is judged so; a negated clause tail glosses nothing; and a rule
short of deciding alone breaks the neighbours' ties."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rag_middleware.domains.glosses import GlossRule, affirmed, gloss_rules
from rag_middleware.domains.loader import load_domain
from rag_middleware.domains.ranges import NumberRange, number_fields, range_glosses, ranges_in, unit_values
from rag_middleware.domains.spec import VoteSpec
from rag_middleware.domains.votes import Neighbour, field_votes

ROOT = Path(__file__).resolve().parents[1] / "knowledge_base"
LEVELS = ["low", "medium", "high"]
SCHEMA = {"type": "object", "properties": {
    "level": {"enum": LEVELS, "description": "the highest level any condition reaches: high (a fire, or an "
              "amount of 10,000 or more); medium (a leak without a fire; or an amount from 1,000 to 9,999); "
              "low (otherwise: an amount under 1,000)"},
    "amount": {"type": ["integer", "null"], "description": "the money amount"}}}
SPECS = {("level",): VoteSpec()}
LABELS = {("level",): LEVELS}


def _examples() -> list[tuple[str, dict]]:
    return ([(f"a fire in the kitchen, {n}", {"level": "high", "amount": n}) for n in (300, 2500, 40000)]
            + [(f"a leak under the sink, {n}", {"level": "medium", "amount": n}) for n in (200, 1500, 3000)]
            + [(f"the fence fell over, {n}", {"level": lvl, "amount": n})
               for n, lvl in ((120, "low"), (450, "low"), (1800, "medium"), (12000, "high"), (8000, "medium"))])


def test_ranges_read_the_usual_forms():
    shown = {t: [r.shown for r, _ in ranges_in(t)] for t in (
        "an amount of 10,000 or more", "an amount from 1,000 to 9,999", "an amount under 1,000", "5+ bedrooms",
        "more than 100 users", "between 2 and 5 nights", "up to 2.5k", "at least 3", "no amount at all")}
    assert shown == {"an amount of 10,000 or more": [">= 10,000"], "an amount from 1,000 to 9,999": ["1,000 to 9,999"],
                     "an amount under 1,000": ["< 1,000"], "5+ bedrooms": [">= 5"], "more than 100 users": ["> 100"],
                     "between 2 and 5 nights": ["2 to 5"], "up to 2.5k": ["<= 2,500"], "at least 3": [">= 3"],
                     "no amount at all": []}
    assert sorted(str(u) for _, u in ranges_in("more than 100 users, 5+ bedrooms, an amount of 10,000 or more")) == [
        "None", "bedroom", "user"]
    under = NumberRange(high=1000, high_in=False)
    assert under.holds(999) and not under.holds(1000) and not under.holds(None) and not under.holds(True)
    assert NumberRange(low=100, low_in=False).holds(101) and not NumberRange(low=100, low_in=False).holds(100)
    assert NumberRange(5, 5).holds(5) and NumberRange().high == math.inf


def test_a_range_is_about_the_numeric_field_its_clause_names():
    fields = number_fields({"properties": {"amount_claimed": {"type": ["integer", "null"]},
                                           "nights": {"type": "integer"}, "city": {"type": "string"}}})
    assert fields[("amount_claimed",)] >= {"amount", "claimed", "amount claimed"} and ("city",) not in fields
    found = range_glosses({"high": ["an amount of 10,000 or more", "more than 3 nights", "a long text 5+"]},
                          fields, ("level",))
    assert [(f, r.shown, label) for f, r, label in found] == [(("amount_claimed",), ">= 10,000", "high"),
                                                            (("nights",), "> 3", "high")]  # "5+" names no field
    assert range_glosses({"high": ["an amount of 10,000 or more"]}, fields, ("amount_claimed",)) == []  # not its own
    about_users = range_glosses({"urgent": ["more than 100 users are affected"]}, fields, ("level",))
    assert [(source, r.shown) for source, r, _ in about_users] == [("user", "> 100")]  # no field named: the unit


def test_a_negated_tail_glosses_nothing():
    assert affirmed("a person hurt without hospital care") == "a person hurt "
    assert affirmed("a fire, not a leak") == "a fire, "


def test_the_highest_label_hit_wins_when_the_examples_bear_it_out():
    rule = gloss_rules(SCHEMA, SPECS, LABELS, [], _examples())[("level",)]
    assert rule.ranks == tuple(LEVELS)  # a fire with 300 is high: read as "the highest level wins"
    assert {t for t, _, _ in rule.ranges} == {"amount >= 10,000", "amount 1,000 to 9,999", "amount < 1,000"}
    assert rule.terms["fire"] == "high" and rule.terms["leak"] == "medium"
    assert "sink" not in rule.terms  # no clause says it
    assert rule.decide({"fire"}, {("amount",): 200}) == ("high", ["fire"])
    assert rule.decide({"fence"}, {("amount",): 2500}) == ("medium", ["amount 1,000 to 9,999"])
    assert rule.decide({"fence"}, {("amount",): None}) is None
    assert rule.right == rule.decided  # every example is decided, and rightly
    assert rule.tiebreak and not rule.reliable  # levels break ties only: unnamed conditions read too low


def test_a_field_whose_words_say_no_levels_keeps_plain_semantics():
    schema = {"type": "object", "properties": {"kind": {"enum": ["car", "home", "pet"],
              "description": "car (a vehicle), home (a house), pet (a dog or a cat)"}}}
    examples = ([(f"my vehicle {i}", {"kind": "car"}) for i in range(3)]
                + [(f"my house {i}", {"kind": "home"}) for i in range(3)]
                + [(f"my dog hit a vehicle {i}", {"kind": "pet"}) for i in range(2)])
    rule = gloss_rules(schema, {("kind",): VoteSpec()}, {("kind",): ["car", "home", "pet"]}, [], examples)[("kind",)]
    assert rule.ranks == ()  # no word of the field says its labels are levels
    assert "vehicle" not in rule.terms and rule.decide({"dog", "vehicle"}) == ("pet", ["dog"])
    assert rule.decide({"dog", "house"}) is None  # two labels' words: no decision


def test_a_tiebreak_rule_settles_a_split_vote():
    rule = GlossRule(("level",), {"fire": "high", "leak": "medium"}, None, decided=10, right=8)
    assert rule.tiebreak and not rule.reliable
    spec = {("level",): VoteSpec(margin=0.9, decide=1.0)}
    voters = [Neighbour("a", 0.9, {"level": "high"}, 1.0), Neighbour("b", 0.89, {"level": "medium"}, 1.0)]
    record = field_votes(voters, spec, question="a leak in the roof", glossed={("level",): rule})[0]
    assert record["allowed"] == ["medium"] and record["tiebreak"] and record["gloss"] == ["leak"]
    from rag_middleware.domains.glosses import glossed
    assert glossed(record["gloss"], record["tiebreak"]) == "gloss words: leak, breaking the neighbours' tie"
    low = {("level",): GlossRule(("level",), {"low": "low"}, None, decided=10, right=8)}
    # a split vote (or an open one) yields to the rule's words, even for a label it did not admit ...
    far = field_votes(voters, spec, question="a fire? no, low", glossed=low)[0]
    assert far["allowed"] == ["low"] and far["tiebreak"]
    # ... a vote that admits one label does not
    one = field_votes(voters, {("level",): VoteSpec(margin=0.5, decide=1.0)}, question="low", glossed=low)[0]
    assert one["allowed"] == ["high"] and "tiebreak" not in one
    weak = GlossRule(("level",), {"leak": "medium"}, None, decided=10, right=6)
    assert "tiebreak" not in field_votes(voters, spec, question="a leak", glossed={("level",): weak})[0]


@pytest.fixture(scope="module")
def claims():
    return load_domain(ROOT / "claims_intake")


def test_claims_severity_reads_its_amount_ranges_and_its_slots_give_the_amount(claims):
    from rag_middleware.request.grammar_builder import range_values

    rule = claims.gloss_rules[("severity",)]
    assert rule.ranks == ("low", "medium", "high", "critical") and rule.tiebreak
    assert {t for t, _, _ in rule.ranges} >= {"amount_claimed >= 10,000", "amount_claimed 1,000 to 9,999"}
    assert "hospital" in rule.terms and rule.terms["hospital"] == "high"  # "without hospital care" is medium's
    body = "Online form\nIncident date: 03/04\nVehicle: Toyota Yaris\nRepair estimate: 4,700\nPolicy: POL-663018"
    values = range_values(claims, body)
    assert values[("amount_claimed",)] == 4700  # the slots' pick, not the date's 3
    assert rule.decide({"engine"}, values) == ("medium", ["amount_claimed 1,000 to 9,999"])


def test_a_boolean_fields_true_and_false_clauses_gloss_it():
    schema = {"type": "object", "properties": {"refund": {
        "type": "boolean", "description": "true when the customer asks for a refund or their money back; false "
                                          "for a question, a complaint without a refund"}}}
    examples = ([(f"I want a refund for order {i}", {"refund": True}) for i in range(3)]
                + [(f"please send my money back {i}", {"refund": True}) for i in range(2)]
                + [(f"where is my parcel {i}", {"refund": False}) for i in range(6)])
    rule = gloss_rules(schema, {("refund",): VoteSpec()}, {("refund",): []}, [], examples)[("refund",)]
    assert rule.terms["refund"] == "true" and rule.terms["money back"] == "true"
    assert rule.reliable and rule.default == "false"
    record = field_votes([Neighbour("a", 0.9, {"refund": False}, 1.0)], {("refund",): VoteSpec()},
                         question="can I get my money back?", glossed={("refund",): rule})[0]
    assert record["allowed"] == [True] and "money back" in record["gloss"]


def test_a_sentence_that_negates_without_saying_null_glosses_no_presence():
    from rag_middleware.domains.glosses import presence_glosses

    schema = {"type": "object", "properties": {"amount": {
        "type": ["integer", "null"],
        "description": "the money amount the customer claims; years, dates, ages or reference numbers are never "
                       "amounts; null when the message states none"}}}
    found = dict(presence_glosses(schema, [], set())[("amount",)])
    assert found["the money amount the customer claims"] == "set"
    assert found["null when the message states none"] == "null"
    assert not {"years", "dates", "ages or reference numbers are never amounts"} & found.keys()


def test_a_range_about_a_unit_word_is_judged_on_the_numbers_the_requests_write_with_it():
    assert unit_values("250 users cannot log in, 3 of them admins; 1 user reported it", "user") == [250.0, 1.0]
    schema = {"type": "object", "properties": {"priority": {
        "enum": ["low", "urgent"], "description": "urgent (more than 100 users affected); low (otherwise)"}}}
    examples = ([(f"{n} users cannot log in", {"priority": "urgent"}) for n in (150, 400, 2000)]
                + [(f"{n} users see a typo", {"priority": "low"}) for n in (3, 12, 40)]
                + [(f"the logo is blurry {i}", {"priority": "low"}) for i in range(5)])
    rule = gloss_rules(schema, {("priority",): VoteSpec()}, {("priority",): ["low", "urgent"]}, [],
                       examples)[("priority",)]
    assert [t for t, _, _ in rule.ranges] == ["> 100 user"] and rule.reliable
    assert rule.decide({"users", "outage"}, {"user": [300.0]}) == ("urgent", ["> 100 user"])
    assert rule.decide({"users"}, {"user": [30.0]}) == ("low", [])  # below the range: the default


def test_a_labels_own_name_breaks_ties_even_when_the_rule_is_weak():
    weak = GlossRule(("kind",), {"liability": "liability", "person": "liability", "vehicle": "auto"}, None,
                     decided=10, right=6)
    assert not weak.tiebreak
    spec = {("kind",): VoteSpec(margin=0.9, decide=1.0)}
    voters = [Neighbour("a", 0.9, {"kind": "auto"}, 1.0), Neighbour("b", 0.89, {"kind": "liability"}, 1.0)]
    named = field_votes(voters, spec, question="online liability claim form", glossed={("kind",): weak})[0]
    assert named["allowed"] == ["liability"] and named["tiebreak"]
    worded = field_votes(voters, spec, question="a person slipped", glossed={("kind",): weak})[0]
    assert set(worded["allowed"]) == {"auto", "liability"}  # a weak rule's other words do not


def test_what_a_request_denies_is_no_gloss_word_and_a_fields_own_name_glosses_nothing():
    from rag_middleware.domains.votes import asserted_terms

    said = asserted_terms("I was not injured, but the car is wrecked. Nobody was hurt; the driver didn't stop")
    assert "injured" not in said and "hurt" not in said and "stop" not in said and "wrecked" in said
    assert affirmed("injury_reported is true when a person was hurt", {"injury_reported"}).split() == [
        "is", "true", "when", "a", "person", "was", "hurt"]
    assert "web_form" in affirmed("web_form for an online form", {"injury_reported"})  # a label's name stays
    schema = {"type": "object", "properties": {"injury_reported": {
        "type": "boolean", "description": "true when a person was injured or hurt; damage to things is false"}}}
    examples = ([(f"my son was injured in the crash {i}", {"injury_reported": True}) for i in range(3)]
                + [(f"the car was damaged, I was not injured {i}", {"injury_reported": False}) for i in range(3)])
    rule = gloss_rules(schema, {("injury_reported",): VoteSpec()}, {("injury_reported",): []}, [],
                       examples)[("injury_reported",)]
    assert rule.terms.get("injured") == "true"  # "not injured" contradicts nothing
    assert not {"reported", "injury reported"} & set(rule.terms)


def test_a_request_written_as_a_form_takes_the_forms_label_instead_of_the_default(claims):
    from rag_middleware.domains.votes import field_lines

    assert field_lines("Name: Jo Smith\nPolicy: POL-123456\nIncident: bike stolen") and not field_lines("Policy: 1")
    channel = claims.gloss_rules[("channel",)]
    assert channel.default == "email" and channel.shaped == "web_form"
    assert claims.gloss_rules[("severity",)].shaped is None  # no default to stand in for
    form = "Name: Jo Smith\nPolicy: POL-123456\nIncident: my bike was stolen from the station\nValue: 800"
    record = next(v for v in field_votes([], claims.declarative.spec.vote, question=form,
                                         glossed=claims.gloss_rules) if v["path"] == "/channel")
    assert record["allowed"] == ["web_form"] and record["gloss"] == ["<field: value lines>"]
    chat = "hi, on the chat:\nName: Jo\nPolicy: POL-123456"  # a gloss word still comes first
    record = next(v for v in field_votes([], claims.declarative.spec.vote, question=chat,
                                         glossed=claims.gloss_rules) if v["path"] == "/channel")
    assert record["allowed"] == ["chat"]


def test_a_form_is_read_without_its_labels():
    from rag_middleware.domains.votes import asserted_terms

    form = asserted_terms("Claim form\nProperty: apartment, 3rd floor\nInjured: none\nCause: lightning")
    assert {"apartment", "lightning"} <= form and not {"property", "injured", "cause"} & form
    assert "property" in asserted_terms("lightning hit my property: the fence")  # prose keeps its words
