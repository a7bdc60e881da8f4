"""A grounded field that the examples set whenever the request holds a candidate for it admits null only when
the request holds none (infer.set_when_found)."""

from __future__ import annotations

from rag_middleware.domains.infer import set_when_found
from rag_middleware.domains.spec import DeclarativeSpec, GroundSpec
from rag_middleware.domains.word_shapes import word_shapes


def _spec(pairs) -> DeclarativeSpec:
    spec = DeclarativeSpec(ground={("city",): GroundSpec(source="words"), ("limit",): GroundSpec(source="numbers")})
    spec.shape = word_shapes([("city",)], pairs)  # a city is a capitalised name: "any flat" holds none
    return spec


def test_a_field_set_whenever_a_candidate_is_found_is_learnt_and_a_mixed_one_is_not():
    pairs = ([(f"flats in Rome with {n} rooms", {"city": "Rome", "limit": None}) for n in range(2, 6)]
             + [(f"show {n} flats in Oslo", {"city": "Oslo", "limit": n}) for n in range(2, 4)]
             + [("any flat at all", {"city": None, "limit": None})])  # no candidate: says nothing
    found = set_when_found(_spec(pairs), pairs)
    assert found == {("city",): (6, 6)}  # limit: set in 2 of the 6 requests holding a number
    assert set_when_found(_spec(pairs), pairs[:4]) == {}  # too few examples to learn it from
    wrong = pairs + [("flats in Paris please", {"city": None, "limit": None})]
    assert set_when_found(_spec(pairs), wrong) == {}  # 6 of 7 is below MIN_SHARE


def test_the_grammar_admits_null_only_when_nothing_is_found(mw):
    from rag_middleware.request.ask import Switches

    off = Switches(vote=False)  # the grounding alone, no vote on top
    found = mw.render("I want to buy a house in Munich with at least 4 bedrooms", domain="listing_search",
                      switches=off).json_schema["properties"]["city"]
    assert "Munich" in found["enum"] and None not in found["enum"]
    empty = mw.render("any flat to rent with 2 bedrooms", domain="listing_search",
                      switches=off).json_schema["properties"]["city"]
    assert empty["enum"] == [None]
    lower = mw.render("flats to rent in nice, 2 bedrooms", domain="listing_search",
                      switches=off).json_schema["properties"]["city"]
    assert "nice" in lower["enum"] and None in lower["enum"]  # all lower case: a word may be no name, null stays
    claims = mw.render("my bike was stolen, it cost 800", domain="claims_intake",
                       switches=off).json_schema["properties"]["amount_claimed"]
    assert claims["enum"] == [800]


def test_a_number_no_example_window_puts_in_the_field_leaves_null_admitted(mw):
    widow = ("I regret to inform you that my husband died in a car accident on Route 7 on Friday. I am his widow "
             "and a named driver on the policy, POL-836190. Please tell me what I need to send.")
    assembly = mw.render(widow, domain="claims_intake")
    assert any(v.get("unfound") and v["path"] == "/amount_claimed" for v in assembly.votes)
    assert None in assembly.json_schema["properties"]["amount_claimed"]["enum"]  # 7 may be no amount
    bike = mw.render("my bike was stolen, it cost 800", domain="claims_intake")
    assert not any(v.get("unfound") for v in bike.votes)
    assert bike.json_schema["properties"]["amount_claimed"]["enum"] == [800]
