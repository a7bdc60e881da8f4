"""Implied votes (domains/implied_votes.py): a voted field's label that the examples always pair with a label of
a sibling field in one nested object decides that sibling's vote ("count" has no measured field)."""

from __future__ import annotations

from rag_middleware.domains.implied_votes import implied_votes, learn_implications
from rag_middleware.domains.spec import VoteSpec


def aggregate(func, field):
    return {"level": "error", "aggregate": {"func": func, "field": field}}


ANSWERS = [aggregate("count", None), aggregate("count", None), aggregate("count", None), aggregate("count", None),
           aggregate("avg", "latency_ms"), aggregate("max", "latency_ms"), aggregate("avg", "duration_ms"),
           aggregate("p95", "latency_ms"), {"level": "warn", "aggregate": None}]
SPECS = {("aggregate", "func"): VoteSpec(), ("aggregate", "field"): VoteSpec(), ("level",): VoteSpec()}


def test_a_label_the_examples_always_pair_with_a_siblings_label_implies_it():
    found = learn_implications(ANSWERS, SPECS)
    assert found[("aggregate", "func")] == {"count": ["/aggregate/field", "null", 4, 4]}
    # latency_ms goes with avg and max: it implies nothing; a null (no measure named) implies nothing either
    assert ("aggregate", "field") not in found
    # two examples are too few, and one of five otherwise is too many
    assert learn_implications(ANSWERS[2:], SPECS) == {}
    assert learn_implications([*ANSWERS, aggregate("count", "latency_ms")], SPECS) == {}


def test_pairs_that_could_be_chance_imply_nothing():
    # "avg" had no group 3 times of 3, but half of all the aggregates have none: (1/2)^3 is no rare event
    answers = [{"aggregate": {"func": f, "group_by": g}} for f, g in [
        ("avg", None), ("avg", None), ("avg", None), ("count", "host"), ("count", None), ("max", "service"),
        ("count", "host")]]
    specs = {("aggregate", "func"): VoteSpec(), ("aggregate", "group_by"): VoteSpec()}
    assert ("aggregate", "func") not in learn_implications(answers, specs)


def test_a_records_own_fields_imply_nothing_of_each_other():
    answers = [{"priority": "high", "sentiment": "negative"}] * 6
    specs = {("priority",): VoteSpec(), ("sentiment",): VoteSpec()}
    assert learn_implications(answers, specs) == {}  # separate traits that went together by chance


def vote(path, allowed, scores, **more):
    return {"path": path, "allowed": allowed, "scores": scores, "voters": [], "confident": bool(allowed), **more}


def test_a_decided_label_sets_the_implied_siblings_vote():
    judged = {"/aggregate/func": {"implies": learn_implications(ANSWERS, SPECS)[("aggregate", "func")]}}
    votes = [vote("/aggregate/func", ["count"], {"count": 0.74, "max": 0.26}),
             vote("/aggregate/field", ["response_bytes"], {"response_bytes": 0.7, "null": 0.3})]
    out = implied_votes(votes, judged)
    assert out[1]["allowed"] == [None] and "/aggregate/func count" in out[1]["implied"]
    assert "4 of 4" in out[1]["implied"]
    assert out[0] == votes[0]
    # an undecided function implies nothing
    assert implied_votes([vote("/aggregate/func", [], {"count": 0.5, "max": 0.5}), votes[1]], judged)[1] == votes[1]
    # a surer vote of the sibling keeps its own value, and so does a declared rule's
    surer = vote("/aggregate/field", ["latency_ms"], {"latency_ms": 0.9, "null": 0.1})
    assert implied_votes([votes[0], surer], judged)[1] == surer
    ruled = vote("/aggregate/field", ["latency_ms"], {"latency_ms": 0.5}, rule="latency")
    assert implied_votes([votes[0], ruled], judged)[1] == ruled
    # a label the request names keeps, even against a decided implying vote
    named = vote("/aggregate/field", ["latency_ms"], {"latency_ms": 1.0}, mention="latency_ms")
    decided = vote("/aggregate/func", ["count"], {"count": 1.0}, mention="count")
    assert implied_votes([decided, named], judged)[1] == named


def test_the_vote_table_and_the_replay_report_say_which_field_implied_a_vote():
    from rag_middleware.analytics.report_items import explain
    from rag_middleware.cli.context import console
    from rag_middleware.cli.explain import show_grammar

    judged = {"/aggregate/func": {"implies": learn_implications(ANSWERS, SPECS)[("aggregate", "func")]}}
    votes = implied_votes([vote("/aggregate/func", ["count"], {"count": 0.74, "max": 0.26}),
                           vote("/aggregate/field", ["response_bytes"], {"response_bytes": 0.7, "null": 0.3})], judged)
    width = console.width
    console.width = 240
    try:
        with console.capture() as captured:
            show_grammar(votes, [])
    finally:
        console.width = width
    assert "implied by /aggregate/func count" in " ".join(captured.get().split())
    assert any("(implied by /aggregate/func count" in line for line in explain({"votes": votes}))
