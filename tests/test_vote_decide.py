"""A clear winner decides a field alone, and so does the one label a request names, where names proved right."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_middleware.domains.spec import VoteSpec
from rag_middleware.domains.judgement import gate, leading_names, named_labels, trusted_names
from rag_middleware.domains.votes import Neighbour, field_votes, mentioned

SPEC = {("kind",): VoteSpec(k=7, margin=0.7, max_labels=2)}
KINDS = ["house", "townhouse", "apartment", "web_form"]


def neighbours(*labels: str) -> list[Neighbour]:
    return [Neighbour(f"n{i}", 0.8, {"kind": label}, 1.0) for i, label in enumerate(labels)]


def test_a_winner_holding_decide_of_the_vote_is_admitted_alone_below_the_margin():
    record = field_votes(neighbours("house", "house", "house", "apartment", "apartment"), SPEC)[0]
    assert record["scores"]["house"] == pytest.approx(0.6)  # under the 0.7 margin
    assert record["allowed"] == ["house"] and record["confident"] and record["decided"]


def test_without_decide_or_below_it_the_old_margin_rule_admits_both():
    votes = neighbours("house", "house", "house", "apartment", "apartment")
    assert field_votes(votes, SPEC, decide=False)[0]["allowed"] == ["house", "apartment"]
    strict = {("kind",): VoteSpec(k=7, margin=0.7, max_labels=2, decide=0.65)}
    record = field_votes(votes, strict)[0]
    assert record["allowed"] == ["house", "apartment"] and not record.get("decided")


def test_presence_votes_keep_the_margin_rule():
    spec = {("sort",): VoteSpec(k=7, margin=0.7, presence=True)}
    votes = [Neighbour(f"n{i}", 0.8, {"sort": {"by": "x"} if i < 3 else None}, 1.0) for i in range(5)]
    record = field_votes(votes, spec)[0]
    assert not record.get("decided") and record["allowed"] == ["set", "null"]


def test_the_gate_keeps_a_decided_vote_on_a_field_judged_unreliable():
    votes = field_votes(neighbours("house", "house", "house", "apartment", "apartment"), SPEC)
    unreliable = {"/kind": {"reliable": False, "right": 1, "narrowed": 5}}
    assert gate(votes, unreliable)[0]["allowed"] == ["house"]
    undecided = field_votes(neighbours("house", "house", "house", "apartment", "apartment"), SPEC, decide=False)
    assert gate(undecided, unreliable)[0]["allowed"] == []

    # ... unless its winners that held ``decide`` were wrong more often than right on the examples
    wrong = {"/kind": {**unreliable["/kind"], "decided": 7, "decided_right": 2, "decisive": False}}
    gated = gate(votes, wrong)[0]
    assert gated["allowed"] == [] and "left to the model" in gated["reason"]


def test_reliability_judges_the_decided_winners_of_a_field_whose_neighbours_follow_the_topic():
    """Two topics, each with one label of ``form`` that does not follow the topic: the neighbours (same topic)
    decide the form, wrongly, and the judgement says so; ``kind`` follows the topic and stays decisive."""
    import numpy as np

    from rag_middleware.domains.judgement import reliability

    specs = {("kind",): VoteSpec(k=3, margin=0.7), ("form",): VoteSpec(k=3, margin=0.7)}
    examples, vectors = [], []
    for i in range(8):
        topic = i % 2
        examples.append((f"e{i}", f"question {i}", {"kind": ["a", "b"][topic], "form": "x" if i < 4 else "y"}))
        vectors.append([1.0, 0.0] if topic == 0 else [0.0, 1.0])
    # each example's three topic mates hold its form once and the other form twice: the other form wins
    judged = reliability(examples, np.array(vectors), specs)
    assert judged["/kind"]["decisive"] and judged["/kind"]["decided_right"] == judged["/kind"]["decided"] > 0
    assert judged["/form"]["decided"] == 8 and judged["/form"]["decided_right"] == 0
    assert not judged["/form"]["decisive"]


def test_mentioned_reads_labels_as_words():
    assert mentioned(KINDS, "Two HOUSES in Leeds") == ["house"]
    assert mentioned(KINDS, "a townhouse in Bath") == ["townhouse"]  # 'house' inside 'townhouse' is not named
    assert mentioned(KINDS, "sent through the web form") == ["web_form"]
    assert mentioned(KINDS, "sent through the web-form") == ["web_form"]
    assert mentioned(KINDS, "a warehouse") == []
    assert mentioned([True, "house"], "house") == ["house"]  # non-strings are never named


def examples(pairs: list[tuple[str, str]]) -> list[tuple[str, str, dict[str, str]]]:
    return [(f"e{i}", q, {"kind": k}) for i, (q, k) in enumerate(pairs)]


def test_names_are_trusted_only_where_they_proved_right_on_the_examples():
    right = examples([("a house please", "house"), ("an apartment", "apartment"), ("houses in Rome", "house"),
                      ("any townhouse", "townhouse"), ("something", "house")])
    judged = named_labels(right, SPEC, {("kind",): KINDS})
    assert {k: judged[("kind",)][k] for k in ("named", "right", "trusted")} == {"named": 4, "right": 4,
                                                                                 "trusted": True}
    wrong = examples([("a house please", "apartment"), ("an apartment", "apartment"), ("houses", "townhouse"),
                      ("a townhouse", "townhouse")])
    assert not named_labels(wrong, SPEC, {("kind",): KINDS})[("kind",)]["trusted"]  # 2 of 4
    few = examples([("a house", "house"), ("an apartment", "apartment")])
    assert not named_labels(few, SPEC, {("kind",): KINDS})[("kind",)]["trusted"]  # too few to tell


def test_a_trusted_name_decides_over_the_neighbours_and_two_names_do_not():
    voters = neighbours("apartment", "apartment", "apartment")
    named = trusted_names({"/kind": {"names": {"trusted": True}}}, {("kind",): KINDS})
    record = field_votes(voters, SPEC, question="a house in Oslo", named=named)[0]
    assert record["allowed"] == ["house"] and record["mention"] == "house"
    both = field_votes(voters, SPEC, question="a house or an apartment", named=named)[0]
    assert both["allowed"] == ["apartment"] and "mention" not in both
    untrusted = field_votes(voters, SPEC, question="a house in Oslo",
                            named=trusted_names({"/kind": {"names": {"trusted": False}}}, {("kind",): KINDS}))[0]
    assert untrusted["allowed"] == ["apartment"]


def test_a_name_that_does_not_lead_settles_only_a_split_vote():
    named = trusted_names({"/kind": {"names": {"trusted": True}}}, {("kind",): KINDS})
    settled = neighbours("apartment", "apartment", "apartment")
    kept = field_votes(settled, SPEC, question="my house is nice but", named=named, named_lead=set())[0]
    assert kept["allowed"] == ["apartment"] and "mention" not in kept
    split = [Neighbour("a", 0.8, {"kind": "apartment"}, 1.0), Neighbour("b", 0.8, {"kind": "townhouse"}, 1.0)]
    record = field_votes(split, SPEC, question="my house is nice but", named=named, named_lead=set())[0]
    assert record["allowed"] == ["house"] and record["mention"] == "house" and record["tiebreak"]
    assert field_votes(settled, SPEC, question="my house", named=named, named_lead={("kind",)})[0]["allowed"] == [
        "house"]


def test_names_lead_only_where_they_beat_the_neighbours_on_the_examples():
    pairs = [("a house please", "house"), ("an apartment", "apartment"), ("houses in Rome", "house"),
             ("any townhouse", "townhouse")]
    same = named_labels(examples(pairs), SPEC, {("kind",): KINDS}, wins={("kind",): dict.fromkeys(range(4), True)})
    assert same[("kind",)]["trusted"] and not same[("kind",)]["leads"]  # the neighbours knew as much
    better = named_labels(examples(pairs), SPEC, {("kind",): KINDS}, wins={("kind",): {0: True, 1: False}})
    assert better[("kind",)]["leads"] and better[("kind",)]["neighbours_right"] == 1
    judged = {"/kind": {"names": same[("kind",)]}, "/other": {"names": better[("kind",)]}}
    assert leading_names(judged) == {("other",)}


def test_a_forms_labels_name_no_answer_its_values_do():
    voters = neighbours("apartment", "apartment", "apartment")
    named = trusted_names({"/kind": {"names": {"trusted": True}}}, {("kind",): KINDS})
    form = "Type of house: townhouse\nCity: Oslo"  # the label names house, the value townhouse
    assert field_votes(voters, SPEC, question=form, named=named)[0]["mention"] == "townhouse"
    labelled = "House or flat: flat\nCity: Oslo"  # the label names a house, the value no kind
    record = field_votes(voters, SPEC, question=labelled, named=named)[0]
    assert "mention" not in record and record["allowed"] == ["apartment"]
    prose = "Type of house? A townhouse in Oslo"  # not a form: both names count, and two names decide nothing
    assert "mention" not in field_votes(voters, SPEC, question=prose, named=named)[0]


def test_the_pipeline_admits_a_named_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from rag_middleware import Middleware, load_settings

    with Middleware(load_settings(None, data_dir=tmp_path)) as mw:
        judged = mw.assembler.vote_reliability(mw.domains.get("claims_intake"))
        assert judged["/channel"]["names"]["trusted"]  # the examples that name a channel carry it
        # ... and so did the neighbours on them: a name settles what they leave split, it does not overrule them
        assert judged["/channel"]["names"]["leads"] is False
        assembly = mw.render("Hi, I filled in your web form yesterday but got no reply: a pipe burst in my "
                             "kitchen and flooded the floor, policy POL-554433.", domain="claims_intake")
    channel = next(v for v in assembly.votes if v["path"] == "/channel")
    assert channel["allowed"] == ["web_form"]
    assert assembly.json_schema["properties"]["channel"]["enum"] == ["web_form"]  # the grammar admits only it


def test_the_replay_report_says_why_a_vote_decided():
    from rag_middleware.analytics.report_items import explain

    lines = explain({"votes": [{"path": "/channel", "allowed": ["phone"], "mention": "phone", "scores": {"phone": 1}},
                               {"path": "/kind", "allowed": ["house"], "decided": True,
                                "scores": {"house": 0.6, "apartment": 0.4}}]})
    assert lines[0] == "vote /channel: admitted phone (the request names it); scores phone 1.00"
    assert lines[1].startswith("vote /kind: admitted house (a clear winner)")
    chat = explain({"votes": [{"path": "/channel", "allowed": ["chat"], "decided": True, "scores": {"chat": 1.0},
                               "lacks": {"email": ["<greeting line>", "<sign-off>"]}}]})
    assert chat[0].endswith("left out: email (lacks <greeting line>, <sign-off>)")


def test_a_common_word_is_a_cue_when_its_value_is_far_beyond_chance():
    from rag_middleware.domains.votes import mine_cues

    spec = {("sort",): VoteSpec(presence=True)}
    sorted_ = [(f"flats in town {i}, cheapest first", {"sort": {"by": "price"}}) for i in range(12)]
    plain = [(f"flats in town {i} with a garden", {"sort": None}) for i in range(10)]
    assert mine_cues(sorted_ + plain, spec)[("sort",)]["first"][0] == "set"  # in 12 of 22, all sorted
    mixed = [(f"flats in town {i}, first floor", {"sort": None}) for i in range(3)]
    assert "first" not in mine_cues(sorted_ + plain + mixed, spec)[("sort",)]  # no longer pure
    assert "flats" not in mine_cues(sorted_ + plain, spec)[("sort",)]  # in every example, either value


def test_a_field_set_only_where_a_labels_word_is_written_is_null_where_none_is():
    by = {("by",): VoteSpec(k=7, margin=0.7, max_labels=2)}
    labels = {("by",): ["host", "user_id", "region"]}
    rows = [("count per host", "host"), ("errors by region", "region"), ("logins per user", "user_id"),
            ("p95 per host", "host"), ("slow requests by region", "region"), ("total errors", None),
            ("the peak latency on web-05", None), ("how many per user id", "user_id")]
    judged = named_labels([(f"e{i}", q, {"by": a}) for i, (q, a) in enumerate(rows)], by, labels)[("by",)]
    assert judged["quiet"] and (judged["set"], judged["set_worded"], judged["unnamed"], judged["null"]) == (6, 6, 2, 2)
    voters = [Neighbour(f"n{i}", 0.8, {"by": "host"}, 1.0) for i in range(3)]
    named = trusted_names({"/by": {"names": {"trusted": True}}}, labels)
    record = field_votes(voters, by, question="the peak latency on db-7", named=named, quiet={("by",)})[0]
    assert record["allowed"] == [None] and record["decided"]
    # a label's word is written: the neighbours vote as before
    record = field_votes(voters, by, question="the peak latency on db-7 for each user", named=named,
                         quiet={("by",)})[0]
    assert record["allowed"] == ["host"]
    # a label written whole is its word ("per user_id": neither "user" nor "id" stands alone there)
    from rag_middleware.domains.votes import any_label_word

    assert any_label_word(["host", "user_id"], "429s per user_id") and not any_label_word(["host"], "per hostname")
    # one set example without a label's word in six: not learnt
    rows[0] = ("count for every machine", "host")
    judged = named_labels([(f"e{i}", q, {"by": a}) for i, (q, a) in enumerate(rows)], by, labels)[("by",)]
    assert not judged["quiet"]


def test_an_object_set_only_where_a_cue_word_says_so_is_null_where_none_does():
    import numpy as np

    from rag_middleware.domains.judgement import quiet_names, reliability

    spec = {("aggregate",): VoteSpec(k=7, margin=0.7, presence=True)}
    rows = [(f"how many errors on host web-{i}", {"aggregate": {"func": "count"}}) for i in range(4)]
    rows += [(f"average latency of service s{i}", {"aggregate": {"func": "avg"}}) for i in range(3)]
    rows += [(f"show the errors on host web-{i} today", {"aggregate": None}) for i in range(6)]
    rows += [(f"list the logs of service s{i}", {"aggregate": None}) for i in range(4)]
    vectors = np.random.default_rng(0).normal(size=(len(rows), 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    judged = reliability([(f"e{i}", q, a) for i, (q, a) in enumerate(rows)], vectors, spec)
    names = judged["/aggregate"]["names"]
    assert names["quiet"] and (names["set"], names["set_worded"]) == (7, 7) and names["null"] == names["unnamed"]
    assert quiet_names(judged) == {("aggregate",)}
    # the neighbours all say set; no cue word of a statistic is written: null, decided
    voters = [Neighbour(f"n{i}", 0.9, {"aggregate": {"func": "count"}}, 1.0) for i in range(4)]
    cues = {("aggregate",): {"many": ("set", 0.8), "average": ("set", 0.7), "list": ("null", 0.5)}}
    record = field_votes(voters, spec, cues=cues, question="errors on host web-9 today", quiet={("aggregate",)})[0]
    assert record["allowed"] == ["null"] and record["decided"] and record["presence"]
    record = field_votes(voters, spec, cues=cues, question="how many errors on host web-9",
                         quiet={("aggregate",)})[0]
    assert record["allowed"] == ["set"]
    # a set example asking in words no other used ("the slowest"): one in ten is still quiet, three are not
    from collections import Counter

    from rag_middleware.domains.judgement import quiet_presence

    assert quiet_presence(Counter({("set", True): 9, ("set", False): 1, ("null", False): 20}))["quiet"]
    assert not quiet_presence(Counter({("set", True): 7, ("set", False): 3, ("null", False): 20}))["quiet"]


def test_a_field_its_declared_rules_set_is_null_where_none_of_them_fires():
    from rag_middleware.domains.judgement import quiet_names
    from rag_middleware.domains.spec import RuleSpec

    rules = [RuleSpec(pattern=r"\berrors?\b", label="error"), RuleSpec(pattern=r"\bwarn(?:ings?)?\b", label="warn")]
    level = {("level",): VoteSpec(k=7, margin=0.7, rules=rules)}
    labels = {("level",): ["error", "warn", "fatal"]}
    rows = [(f"errors on web-{i}", "error") for i in range(3)] + [(f"warnings on db-{i}", "warn") for i in range(3)]
    rows += [(f"logs of web-{i} in the past week", None) for i in range(4)]
    judged = named_labels([(f"e{i}", q, {"level": a}) for i, (q, a) in enumerate(rows)], level, labels)[("level",)]
    assert judged["quiet"] and (judged["set"], judged["set_worded"], judged["null"]) == (6, 6, 4)
    assert quiet_names({"/level": {"names": judged}}) == {("level",)}
    voters = [Neighbour(f"n{i}", 0.8, {"level": "fatal"}, 1.0) for i in range(4)]  # "week" went with fatal
    record = field_votes(voters, level, question="the largest payload in the past week", quiet={("level",)})[0]
    assert record["allowed"] == [None] and record["decided"]
    record = field_votes(voters, level, question="warnings in the past week", quiet={("level",)})[0]
    assert record["allowed"] == ["warn"] and record.get("rule")
    # a typo of a rule's word still fires it (domains/typos.py): still learnt
    rows[0] = ("erors on web-0", "error")
    judged = named_labels([(f"e{i}", q, {"level": a}) for i, (q, a) in enumerate(rows)], level, labels)[("level",)]
    assert judged["quiet"] and judged["set_worded"] == 6
    # an example set where no rule fires ("failures") in six: not learnt
    rows[0] = ("failures on web-0", "error")
    judged = named_labels([(f"e{i}", q, {"level": a}) for i, (q, a) in enumerate(rows)], level, labels)[("level",)]
    assert not judged["quiet"]
