"""Gloss rules (domains/glosses.py): the words a domain's descriptions and rules give a label decide a field,
unless an example contradicts them; a field's default covers the requests that hold none of its words."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_middleware.domains.glosses import GlossRule, gloss_rules, glossed
from rag_middleware.domains.loader import CuratedExample, load_domain
from rag_middleware.domains.spec import VoteSpec
from rag_middleware.domains.judgement import gate
from rag_middleware.domains.votes import Neighbour, field_votes

ROOT = Path(__file__).resolve().parents[1] / "knowledge_base"
CHANNEL = {"type": "object", "properties": {"channel": {
    "enum": ["email", "phone", "chat"],
    "description": "phone if the message is a call (calling, caller, on the line); chat if it is written in a "
                   "chat (live chat); email otherwise"}}}
SPECS = {("channel",): VoteSpec()}
LABELS = {("channel",): ["email", "phone", "chat"]}


def _channel(label: str) -> dict[str, str]:
    return {"channel": label}


def _examples() -> list[tuple[str, dict[str, str]]]:
    return ([(f"calling about my claim number {i}", _channel("phone")) for i in range(3)]
            + [(f"caller says the roof leaks {i}", _channel("phone")) for i in range(2)]
            + [(f"hi from the live chat {i}", _channel("chat")) for i in range(3)]
            + [(f"dear team, my fence fell over {i}", _channel("email")) for i in range(6)])


def test_gloss_words_decide_and_the_examples_holding_none_give_the_default():
    rule = gloss_rules(CHANNEL, SPECS, LABELS, [], _examples())[("channel",)]
    assert rule.terms["calling"] == "phone" and rule.terms["caller"] == "phone" and rule.terms["chat"] == "chat"
    assert "email" in rule.terms  # a label's own name glosses it
    assert rule.decided == 8 and rule.right == 8 and rule.reliable
    assert rule.default == "email" and rule.defaulted == 6 and rule.default_right == 6
    assert rule.decide({"calling", "roof"}) == ("phone", ["calling"])
    assert rule.decide({"fence", "roof"}) == ("email", [])
    assert rule.decide({"calling", "chat"}) is None  # two labels' words: no decision


def test_a_word_an_example_contradicts_is_no_gloss_word():
    examples = _examples() + [("calling you back about the fence", _channel("email"))]
    rule = gloss_rules(CHANNEL, SPECS, LABELS, [], examples)[("channel",)]
    assert "calling" not in rule.terms and rule.terms["caller"] == "phone"
    # leave-one-out is honest: the example that alone contradicts "calling" is decided by it, and wrongly; the
    # three "calling" examples now hold no gloss word, and with them the requests holding none disagree
    assert rule.decided == 6 and rule.right == 5 and rule.default is None


def test_a_rule_right_too_rarely_is_not_reliable_and_no_mixed_default_is_learnt():
    examples = [(f"calling about a fire {i}", _channel("phone" if i % 2 else "email")) for i in range(4)] + [
        (f"the roof {i}", _channel(["email", "chat"][i % 2])) for i in range(6)]
    rule = gloss_rules(CHANNEL, SPECS, LABELS, [], examples)[("channel",)]
    assert "calling" not in rule.terms and not rule.reliable and rule.default is None


def _form(i: int) -> str:
    return f"Name: Jo Smith\nPolicy: POL-12345{i}\nIncident: bike stolen from the station {i}"


def test_forms_holding_no_gloss_word_take_their_own_label_and_leave_the_default_to_the_messages():
    # five forms all carry chat: together with the six plain messages (email) no label holds 90% of the
    # examples that hold no gloss word, yet each group agrees on its own label
    examples = _examples() + [(_form(i), _channel("chat")) for i in range(5)]
    rule = gloss_rules(CHANNEL, SPECS, LABELS, [], examples)[("channel",)]
    assert rule.default == "email" and rule.shaped == "chat" and rule.reliable
    assert (rule.defaulted, rule.default_right) == (11, 11)  # each judged with itself left out
    assert rule.decide({"fence", "roof"}) == ("email", [])
    assert rule.decide({"bike", "<field: value lines>"}) == ("chat", ["<field: value lines>"])


def test_forms_that_disagree_among_themselves_give_no_label_and_cost_the_mixed_default():
    examples = _examples() + [(_form(i), _channel("chat" if i % 2 else "phone")) for i in range(4)]
    rule = gloss_rules(CHANNEL, SPECS, LABELS, [], examples)[("channel",)]
    assert rule.default is None and rule.shaped is None


def test_reviewed_forms_do_not_cost_the_shipped_channel_its_default():
    claims = ROOT / "claims_intake"
    reviewed = [CuratedExample(id=f"r{i}", question=_form(i) + "\nValue claimed: 800", answer={
        "claim_type": "home", "severity": "low", "amount_claimed": 800, "policy_number": f"POL-12345{i}",
        "channel": "web_form", "injury_reported": False, "department": "property"}) for i in range(6)]
    rule = load_domain(claims, learnt=reviewed).gloss_rules[("channel",)]
    assert rule.default == "email" and rule.shaped == "web_form" and rule.reliable
    assert load_domain(claims).gloss_rules[("channel",)].judged() != rule.judged()  # the reviewed forms count


def test_a_presence_vote_takes_the_glosses_of_the_labels_inside_its_object():
    schema = {"type": "object", "properties": {"sort": {
        "description": "the order asked for, or null: cheapest price asc, biggest area desc",
        "anyOf": [{"type": "object", "properties": {"by": {"enum": ["price", "area"]},
                                                    "order": {"enum": ["asc", "desc"]}}}, {"type": "null"}]}}}
    specs = {("sort",): VoteSpec(presence=True), ("sort", "by"): VoteSpec(), ("sort", "order"): VoteSpec()}
    labels = {("sort", "by"): ["price", "area"], ("sort", "order"): ["asc", "desc"], ("sort",): []}
    examples = ([(f"flats under {i}00 price, cheapest first", {"sort": {"by": "price", "order": "asc"}})
                 for i in range(3)] + [(f"biggest plots {i}", {"sort": {"by": "area", "order": "desc"}})
                                       for i in range(2)]
                + [(f"flats in town {i} with a price under {i}00", {"sort": None}) for i in range(6)])
    rules = gloss_rules(schema, specs, labels, [], examples)
    presence = rules[("sort",)]
    assert presence.terms == {"cheapest": "set", "biggest": "set"}  # "price" and "area" name labels: no gloss
    assert presence.reliable and presence.default == "null"
    assert rules[("sort", "by")].decide({"cheapest", "flats"}) == ("price", ["cheapest"])


def test_a_presence_vote_reads_only_what_is_always_there_and_no_property_name():
    from rag_middleware.domains.glosses import always_set
    stat = {"type": "object", "required": ["func", "field"], "properties": {
        "func": {"enum": ["count", "max"], "description": "count for how many; max for the maximum"},
        "field": {"enum": ["duration", "size", None], "description": "duration for how long a job took; size "
                  "for the payload size; null for count"}}}
    schema = {"type": "object", "properties": {"stat": {"anyOf": [stat, {"type": "null"}]},
                                               "limit": {"type": ["integer", "null"]}}}
    assert always_set(schema, ("stat",), ("stat", "func")) and not always_set(schema, ("stat",), ("stat", "field"))
    specs = {("stat",): VoteSpec(presence=True), ("stat", "func"): VoteSpec(), ("stat", "field"): VoteSpec()}
    labels = {("stat", "func"): ["count", "max"], ("stat", "field"): ["duration", "size"], ("stat",): []}
    rules = ["max N results is a limit, not a max"]
    examples = ([(f"how many jobs failed {i}", {"stat": {"func": "count", "field": None}}) for i in range(3)]
                + [(f"the maximum time a job took {i}", {"stat": {"func": "max", "field": "duration"}})
                   for i in range(2)] + [(f"jobs that took long {i}", {"stat": None}) for i in range(4)])
    terms = gloss_rules(schema, specs, labels, rules, examples)[("stat",)].terms
    assert "how many" in terms and "maximum" in terms
    assert not {"took", "payload", "limit", "null"} & set(terms)  # what is measured, another field, a literal


def test_a_reliable_rule_decides_the_vote_after_named_labels_and_is_not_gated():
    rule = GlossRule(("channel",), {"calling": "phone"}, "email", decided=5, right=5)
    voters = [Neighbour(str(i), 0.9, _channel("chat"), 1.0) for i in range(5)]
    record = field_votes(voters, SPECS, question="I am calling about the claim", glossed={("channel",): rule})[0]
    assert record["allowed"] == ["phone"] and record["gloss"] == ["calling"] and record["confident"]
    default = field_votes(voters, SPECS, question="the roof leaks", glossed={("channel",): rule})[0]
    assert default["allowed"] == ["email"] and default["gloss"] == []
    assert gate([default], {"/channel": {"reliable": False, "right": 0, "narrowed": 9}})[0]["allowed"] == ["email"]
    named = field_votes(voters, SPECS, question="calling from the chat", glossed={("channel",): rule},
                        named={("channel",): ["email", "phone", "chat"]})[0]
    assert named["mention"] == "chat"  # the label the request names comes first
    unreliable = GlossRule(("channel",), {"calling": "phone"}, None, decided=5, right=3)
    assert "gloss" not in field_votes(voters, SPECS, question="calling", glossed={("channel",): unreliable})[0]
    assert glossed(["calling"]) == "gloss words: calling" and "default" in glossed([])


@pytest.fixture(scope="module")
def listing():
    return load_domain(ROOT / "listing_search")


def test_a_domain_learns_its_gloss_rules_at_load(listing):
    sort = listing.gloss_rules[("sort",)]
    assert sort.reliable and sort.default == "null" and sort.terms["cheapest"] == "set"
    assert not {"price", "area", "year", "built"} & set(sort.terms)  # label words say nothing of presence
    assert listing.gloss_rules[("sort", "by")].decide({"cheapest"})[0] == "price"


def test_a_reviewed_answer_that_contradicts_a_gloss_word_removes_it(listing):
    assert listing.gloss_rules[("sort",)].terms.get("cheapest") == "set"
    answer = {"listing_type": "apartment", "deal": "rent", "city": "Rome", "filters": [], "max_age_days": None,
              "sort": None, "limit": None}
    taught = load_domain(ROOT / "listing_search", learnt=[CuratedExample(id="r1", question="the cheapest area of Rome",
                                                                         answer=answer)])
    assert "cheapest" not in taught.gloss_rules[("sort",)].terms


def test_the_grammar_follows_a_gloss_decision(mw):
    assembly = mw.render("Land for sale in Edinburgh, more than 800 square meters, biggest first",
                         domain="listing_search")
    sort = next(v for v in assembly.votes if v["path"] == "/sort")
    assert sort["allowed"] == ["set"] and sort["gloss"] == ["biggest"]
    node = assembly.json_schema["properties"]["sort"]
    assert "null" not in str(node.get("type", "")) and not any(b.get("type") == "null" for b in node.get("anyOf", []))
    plain = mw.render("Townhouses in Charlotte with 3 bedrooms built after 2000", domain="listing_search")
    assert next(v for v in plain.votes if v["path"] == "/sort")["allowed"] == ["null"]
    assert plain.json_schema["properties"]["sort"]["type"] == "null"


LIMIT = {"type": "object", "properties": {"limit": {
    "type": ["integer", "null"],
    "description": "how many results the question asks to see (show me 5, top ten); null otherwise"}}}


def test_a_nullable_scalars_clauses_gloss_whether_it_is_set():
    from rag_middleware.domains.glosses import presence_glosses

    found = presence_glosses(LIMIT, ["limit is never a filter"], set())
    assert found[("limit",)] == [("how many results the question asks to see", "set"), ("show me 5", "set"),
                                 ("top ten", "set"), ("null otherwise", "null")]  # "never a filter": not of null
    assert presence_glosses(LIMIT, [], {("limit",)}) == {}  # voted or derived fields have rules of their own


def test_a_presence_rule_sets_or_nulls_a_grounded_scalar_no_vote_covers():
    from rag_middleware.domains.narrowing import set_or_null

    examples = ([(f"show me {i} flats in Rome", {"limit": i}) for i in range(2, 6)]
                + [(f"flats with {i} bedrooms in Rome", {"limit": None}) for i in range(2, 8)])
    rules = gloss_rules(LIMIT, {}, {}, [], examples)
    rule = rules[("limit",)]
    assert rule.presence and rule.reliable and rule.default == "null" and rule.terms["show"] == "set"
    record = field_votes([], {}, question="show me 3 flats", glossed=rules)[0]
    assert record == {"path": "/limit", "allowed": ["set"], "scores": {"set": 1.0}, "voters": [], "confident": True,
                      "gloss": ["show"], "presence": True}
    assert field_votes([], {}, question="flats with 3 bedrooms", glossed=rules)[0]["allowed"] == ["null"]
    # a grounded field's values without null, or null alone
    assert set_or_null({"enum": [3, 2000, None]}, ["set"]) == {"enum": [3, 2000]}
    assert set_or_null({"enum": [None]}, ["set"]) is None
    assert set_or_null({"enum": [3, None]}, ["null"]) == {"type": "null"}


def test_the_grammar_of_a_listing_follows_its_scalars_presence(mw):
    assembly = mw.render("Houses for rent in Brisbane with more than 200 sqm, largest first, limit 4",
                         domain="listing_search")
    limit = next(v for v in assembly.votes if v["path"] == "/limit")
    assert limit["allowed"] == ["set"] and "limit" in limit["gloss"]
    assert None not in assembly.json_schema["properties"]["limit"]["enum"]
    plain = mw.render("Show me flats to rent in Rome with 2 bedrooms", domain="listing_search")
    assert next(v for v in plain.votes if v["path"] == "/max_age_days")["allowed"] == ["null"]


def test_a_gloss_word_matches_its_plural_and_back():
    from rag_middleware.domains.glosses import singulars

    assert singulars({"cottages", "class", "bus", "last days"}) >= {"cottage", "class", "bus", "last day"}
    rule = GlossRule(("kind",), {"cottage": "house", "listing": "set"}, None, decided=5, right=5)
    assert rule.decide({"cottages", "rent"}) == ("house", ["cottage"])


def test_domains_check_shows_what_the_gloss_words_decide():
    from rag_middleware.domains.authoring import check_domain

    notes = check_domain(ROOT / "claims_intake", near_duplicates=False).notes
    assert any(n.startswith("/channel: gloss words decide its label: right 24 of 24") and "default email" in n
               and n.endswith("used") for n in notes)
    assert any(n.startswith("/claim_type: gloss words decide its label") and "not used" in n for n in notes)
    assert any(n.startswith("/severity: gloss words decide its label, the highest of low < medium < high < critical")
               and "amount_claimed >= 10,000" in n and n.endswith("break the neighbours' ties (below 90% with the "
                                                                  "default)") for n in notes)
    listing = check_domain(ROOT / "listing_search", near_duplicates=False).notes
    assert any(n.startswith("/filters/*/op: gloss phrases beside a number") and n.endswith("used") for n in listing)


def test_a_vote_on_a_union_discriminator_drops_the_branches_that_cannot_hold_it():
    from rag_middleware.domains.narrowing import apply_votes

    schema = {"anyOf": [
        {"type": "object", "properties": {"tool": {"enum": ["count", "find"]}, "field": {"type": "null"}}},
        {"type": "object", "properties": {"tool": {"enum": ["sum"]}, "field": {"type": "string"}}}]}
    notes: list[str] = []
    apply_votes(schema, [{"path": "/tool", "allowed": ["count"]}], notes)
    assert schema == {"anyOf": [{"type": "object", "properties": {"tool": {"enum": ["count"]},
                                                                  "field": {"type": "null"}}}]}
    assert "other branches" in notes[0]
    untouched = {"anyOf": [{"type": "object", "properties": {"tool": {"enum": ["sum"]}}}]}
    apply_votes(untouched, [{"path": "/tool", "allowed": ["count"]}], notes)  # no branch holds it: unchanged
    assert untouched == {"anyOf": [{"type": "object", "properties": {"tool": {"enum": ["sum"]}}}]}


def test_a_shop_query_grammar_follows_its_tools_gloss_words(mw):
    assembly = mw.render("Count the products in the garden category.", domain="shop_query")
    tool = next(v for v in assembly.votes if v["path"] == "/tool")
    assert tool["allowed"] == ["count_documents"] and tool["gloss"] == ["count"]
    branches = assembly.json_schema.get("anyOf") or [assembly.json_schema]
    assert [b["properties"]["tool"]["enum"] for b in branches] == [["count_documents"]]


def test_a_rule_whose_words_beat_the_neighbours_on_the_same_examples_leads_the_field():
    import numpy as np

    from rag_middleware.domains.judgement import reliability

    # the topic (the vector) follows i % 3, the channel (i // 3) % 3: the neighbours cannot know it, and the
    # questions hold no word to mine; the rule's words decided 12 of the examples, 11 of them right
    rng = np.random.default_rng(1)
    examples, vectors = [], []
    for i in range(18):
        v = np.eye(3, 8, dtype=np.float32)[i % 3] + 0.05 * rng.standard_normal(8).astype(np.float32)
        vectors.append(v / np.linalg.norm(v))
        examples.append((f"e{i}", f"question {i}", _channel(["phone", "chat", "email"][(i // 3) % 3])))
    rule = GlossRule(("channel",), {"calling": "phone"}, None, decided=12, right=11,
                     decisions=tuple((i, i != 0) for i in range(12)))
    judged = reliability(examples, np.stack(vectors), SPECS, rules={("channel",): rule})["/channel"]
    by_rule, by_neighbours, both = judged["gloss_vs_neighbours"]
    assert (by_rule, both) == (11, 12) and by_neighbours <= 9 and judged["gloss_leads"]
    # neighbours that know the channel (the vector follows it) are right as often: no lead
    topical = [np.eye(3, 8, dtype=np.float32)[(i // 3) % 3] for i in range(18)]
    again = reliability(examples, np.stack(topical), SPECS, rules={("channel",): rule})["/channel"]
    assert again["gloss_vs_neighbours"][1] == 12 and not again["gloss_leads"]
    assert "gloss_leads" not in reliability(examples, np.stack(vectors), SPECS)["/channel"]  # no rule, no judgement


def test_a_leading_rule_overrules_the_neighbours_and_says_so():
    rule = GlossRule(("channel",), {"calling": "phone"}, None, decided=5, right=3)  # short of a tiebreak
    voters = [Neighbour(str(i), 0.9, _channel("chat"), 1.0) for i in range(5)]
    plain = field_votes(voters, SPECS, question="I am calling about the claim", glossed={("channel",): rule})[0]
    assert plain["allowed"] == ["chat"] and plain["decided"] and "gloss" not in plain
    led = field_votes(voters, SPECS, question="I am calling about the claim", glossed={("channel",): rule},
                      leading={("channel",)})[0]
    assert led["allowed"] == ["phone"] and led["gloss"] == ["calling"] and led["leads"] and "decided" not in led
    assert gate([led], {"/channel": {"reliable": False, "right": 0, "narrowed": 9}})[0]["allowed"] == ["phone"]
    assert "over the neighbours' vote" in glossed(led["gloss"], True, True)
    agreeing = [Neighbour(str(i), 0.9, _channel("phone"), 1.0) for i in range(5)]
    same = field_votes(agreeing, SPECS, question="calling again", glossed={("channel",): rule},
                       leading={("channel",)})[0]
    assert same["allowed"] == ["phone"] and "leads" not in same  # nothing to overrule
    silent = field_votes(voters, SPECS, question="the roof leaks", glossed={("channel",): rule},
                         leading={("channel",)})[0]
    assert silent["allowed"] == ["chat"]  # no gloss word: the neighbours stand


def test_a_number_range_never_leads_the_neighbours():
    from rag_middleware.domains.glosses import _judge_rule
    from rag_middleware.domains.ranges import NumberRange

    # leave-one-out holds a range on the example's true amount; a request has only a guess of it, so a decision
    # a range took part in is no evidence against the neighbours, and a range hit overrules no vote
    texts = [{"amount big"}] * 3 + [{"calling"}] * 3
    rule = _judge_rule(("channel",), {"amount big": "email", "calling": "phone"}, texts,
                       [["email"]] * 3 + [["phone"]] * 3, measured={"amount big"})
    assert (rule.decided, rule.right) == (6, 6)  # the range still counts toward the rule's own reliability
    assert rule.decisions == ((3, True), (4, True), (5, True))  # not toward its lead: the range examples are out
    ranged = GlossRule(("channel",), {"amount big": "email", "calling": "phone"}, None, decided=5, right=3,
                       ranges=(("amount big", ("amount",), NumberRange(low=1000)),))
    voters = [Neighbour(str(i), 0.9, _channel("chat"), 1.0) for i in range(5)]
    by_range = field_votes(voters, SPECS, question="the roof",
                           glossed={("channel",): ranged}, numbers={("amount",): 5000}, leading={("channel",)})[0]
    assert by_range["allowed"] == ["chat"] and "leads" not in by_range
    by_words = field_votes(voters, SPECS, question="calling about the roof", glossed={("channel",): ranged},
                           leading={("channel",)})[0]
    assert by_words["allowed"] == ["phone"] and by_words["leads"]


def test_claims_severity_amount_ranges_are_left_out_of_its_lead(mw):
    rule = mw.domains.get("claims_intake").gloss_rules[("severity",)]
    assert rule.ranges and len(rule.decisions) < rule.decided  # the range decisions are not in the comparison


DEAL = {"type": "object", "properties": {"deal": {
    "enum": ["rent", "buy"], "description": "rent (rent, lease, let) or buy (buy, purchase, for sale); buy when the "
                                            "question says neither"}}}
DEAL_SPECS, DEAL_LABELS = {("deal",): VoteSpec()}, {("deal",): ["rent", "buy"]}


def _deal(label: str) -> dict[str, str]:
    return {"deal": label}


def test_a_default_the_fields_words_declare_holds_where_every_example_names_its_label():
    examples = [(f"flats to rent in town {i}", _deal("rent")) for i in range(4)] + [
        (f"houses to buy near the park {i}", _deal("buy")) for i in range(4)]
    rule = gloss_rules(DEAL, DEAL_SPECS, DEAL_LABELS, [], examples)[("deal",)]
    assert rule.default == "buy" and rule.defaulted == 0 and rule.reliable
    assert not {"question", "says", "neither", "say"} & set(rule.terms)  # the condition glosses nothing
    assert rule.decide({"flats", "bathrooms"}) == ("buy", []) and rule.decide({"rent", "flats"}) == ("rent", ["rent"])


def test_a_condition_joined_to_another_declares_no_default():
    # "complains of nothing" is one part of a condition, not the absence of the field
    mood = {"type": "object", "properties": {"mood": {"enum": ["positive", "negative"], "description": (
        "positive when the customer praises or thanks warmly and complains of nothing; negative (angry, upset)")}}}
    examples = [(f"thanks so much, great service {i}", {"mood": "positive"}) for i in range(4)] + [
        (f"I am angry about the delay {i}", {"mood": "negative"}) for i in range(4)]
    rule = gloss_rules(mood, {("mood",): VoteSpec()}, {("mood",): ["positive", "negative"]}, [], examples)[("mood",)]
    assert rule.default is None


def test_the_examples_overrule_a_declared_default():
    examples = [(f"flats to rent in town {i}", _deal("rent")) for i in range(4)] + [
        (f"houses to buy near the park {i}", _deal("buy")) for i in range(4)] + [
        (f"flats in the old town {i}", _deal("rent")) for i in range(6)]  # naming neither, they are rent
    rule = gloss_rules(DEAL, DEAL_SPECS, DEAL_LABELS, [], examples)[("deal",)]
    assert rule.default == "rent" and rule.defaulted == 6  # learnt from them, not declared
    split = examples[:8] + [("flats in the old town", _deal("rent")), ("a flat by the sea", _deal("buy"))]
    assert gloss_rules(DEAL, DEAL_SPECS, DEAL_LABELS, [], split)[("deal",)].default is None  # half of them disagree


def test_the_listing_deal_takes_its_declared_default(mw):
    deal = next(v for v in mw.render("apartments with 2 bathrooms", domain="listing_search").votes
                if v["path"] == "/deal")
    assert deal["allowed"] == ["buy"] and deal["gloss"] == []
    kind = next(v for v in mw.render("anything listed in Lisbon this month?", domain="listing_search").votes
                if v["path"] == "/listing_type")
    assert kind["allowed"] == ["apartment"] and kind["gloss"] == []  # "house" now glosses house: the rest default


def test_a_labels_own_name_matches_its_ing_and_ed_forms():
    examples = [(f"flats to rent in town {i}", _deal("rent")) for i in range(4)] + [
        (f"houses to buy near the park {i}", _deal("buy")) for i in range(4)]
    rule = gloss_rules(DEAL, DEAL_SPECS, DEAL_LABELS, [], examples)[("deal",)]
    assert rule.decide({"renting", "christchurch"}) == ("rent", ["rent"])
    assert rule.decide({"leasing"}) == ("buy", [])  # "lease" is a gloss word, no label's name: not read so
    assert rule.decide({"buying", "rented"}) is None  # both labels' names: no decision


KIND = {"type": "object", "properties": {"kind": {
    "enum": ["house", "townhouse", "condo"],
    "description": "house (also villa), townhouse (also terraced or row house), condo; house when no kind is named"}}}
KIND_SPECS, KIND_LABELS = {("kind",): VoteSpec()}, {("kind",): ["house", "townhouse", "condo"]}


def test_a_labels_own_name_glosses_it_though_another_labels_clause_uses_it():
    examples = ([(f"a house by the river {i}", {"kind": "house"}) for i in range(3)]
                + [(f"a terraced home near the station {i}", {"kind": "townhouse"}) for i in range(3)]
                + [(f"condo downtown {i}", {"kind": "condo"}) for i in range(3)])
    rule = gloss_rules(KIND, KIND_SPECS, KIND_LABELS, [], examples)[("kind",)]
    assert rule.terms["house"] == "house" and rule.terms["row"] == "townhouse"
    assert rule.decide({"house", "garden"}) == ("house", ["house"])
    # both labels' words in "row house": no decision, the neighbours settle it (an example of one contradicting
    # "house" would drop it, as any gloss word)
    assert rule.decide({"row", "house", "row house"}) is None
    assert rule.default == "house" and rule.decide({"garden"}) == ("house", [])  # declared, no example against it
    # a word built on a label's name is no request for the default
    assert rule.decide({"condominium", "garden"}) is None
