"""Gloss phrases beside a number (domains/phrases.py) decide an anchored item's label where the examples
never contradict them: "at most 4,000" is lte although "more than" windows look alike."""

from __future__ import annotations

from pathlib import Path

from rag_middleware.domains.loader import load_domain
from rag_middleware.domains.phrases import PhraseRule, adjacent, gloss_phrases, learn_phrase_rule

ROOT = Path(__file__).resolve().parents[1] / "knowledge_base"
GLOSSES = {"gte": ["gte for at least", "minimum", "or more", "N+"], "lte": ["lte for at most", "no more than"],
           "gt": ["gt for more than", "over"], "eq": ["eq for a plain number (3 bedrooms)"]}


def _spot(text: str, number: str, label: str) -> tuple[str, int, int, str]:
    start = text.index(number)
    return text, start, start + len(number), label


def test_phrases_are_the_gloss_words_without_label_filler_or_placeholder():
    phrases = gloss_phrases(GLOSSES, {"gte", "lte", "gt", "eq", "bedrooms"})
    assert phrases["at least"] == "gte" and phrases["+"] == "gte" and phrases["or more"] == "gte"
    assert phrases["no more than"] == "lte" and phrases["more than"] == "gt"
    assert not any("bedrooms" in p for p in phrases)  # a phrase naming a label (of any item field) is none


def test_the_longest_phrase_right_before_the_number_wins_then_right_after_within_its_clause():
    phrases = {"more than": "gt", "no more than": "lte", "or more": "gte", "+": "gte", "under": "lt"}
    text = "rent for no more than 1,100 a month, 5+ bedrooms, floor 2, under 900"
    assert adjacent(text, *_span(text, "1,100"), phrases) == "no more than"
    assert adjacent(text, *_span(text, "5"), phrases) == "+"
    assert adjacent(text, *_span(text, "2"), phrases) is None  # "under" belongs to the next clause
    assert adjacent("3 or more bedrooms", 0, 1, phrases) == "or more"
    assert adjacent("3 bedrooms under 2800", 0, 1, phrases) is None  # no "under 3"
    assert adjacent("moreover 3", 9, 10, phrases) is None  # whole words only


def _span(text: str, number: str) -> tuple[int, int]:
    start = text.index(number)
    return start, start + len(number)


def test_a_phrase_an_example_contradicts_is_dropped_and_leave_one_out_is_honest():
    candidates = {"at least": "gte", "over": "gt", "max": "lte"}
    spots = [_spot(f"at least {n} bedrooms", str(n), "gte") for n in (2, 3, 4)] + [
        _spot("over 500 sqm", "500", "gt"), _spot("max 4 floors", "4", "eq")]  # "max" said of an exact count
    rule = learn_phrase_rule(candidates, spots)
    assert rule.phrases == {"at least": "gte", "over": "gt"}
    assert rule.decided == 5 and rule.right == 4 and not rule.reliable  # 4/5 < PHRASE_RELIABLE
    assert learn_phrase_rule(candidates, spots[:4]).reliable
    assert PhraseRule({"over": "gt"}, 3, 3).decide("houses over 500", 12, 15) == ("gt", "over")


def test_a_domains_anchored_list_takes_the_operator_its_phrase_decides():
    listing = load_domain(ROOT / "listing_search")
    bank = listing.anchors[0]
    assert bank.phrases[("op",)].reliable
    text = "townhouse to rent, exactly 3 bathrooms, less than 120 square meters, at most 4,000"
    record = bank.vote(text)
    ops = [(i["value"], i["labels"]["op"]) for i in record["items"]]
    assert (120, ["lt"]) in ops and (4000, ["lte"]) in ops
    mention = next(m for m in record["mentions"] if m["value"] == 120)
    assert mention["phrases"]["op"] == "less than"
    from rag_middleware.domains.anchors import describe
    assert "op lt ('less than')" in describe(record)
