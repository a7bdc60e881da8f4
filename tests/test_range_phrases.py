"""Core bound words beside a number (domains/phrases.py bound_phrases) decide an anchored item's label where a
domain's labels gloss an inclusive lower and an inclusive upper bound: a range's two numbers, a bound word
after the number's unit words, "a minimum of N". They are candidates the examples judge like gloss phrases."""

from __future__ import annotations

from types import SimpleNamespace

from rag_middleware.domains.anchors import learnt_anchors, mentions
from rag_middleware.domains.phrases import (RANGE_HIGH, RANGE_LOW, TRAILING, adjacent, bound_phrases,
                                            gloss_phrases, learn_phrase_rule, range_end)

# a made-up log query domain: filters on counts and latencies
GLOSSES = {"ge": ["ge for at least", "or more"], "le": ["le for at most", "up to"],
           "gt": ["gt for more than", "over"], "lt": ["lt for less than", "under"], "eq": ["eq for exactly"]}
LABELS = {"ge", "le", "gt", "lt", "eq", "errors", "latency_ms", "hosts"}


def _phrases() -> dict[str, str]:
    candidates = gloss_phrases(GLOSSES, LABELS)
    return candidates | bound_phrases(candidates)


def _decide(text: str, number: str, phrases: dict[str, str]) -> str | None:
    start = text.index(number)
    phrase = adjacent(text, start, start + len(number), phrases)
    return None if phrase is None else phrases[phrase]


def _spot(text: str, number: str, label: str) -> tuple[str, int, int, str]:
    start = text.index(number)
    return text, start, start + len(number), label


def test_the_bound_labels_come_from_their_own_gloss_phrases_and_a_domain_without_both_gets_none():
    extra = bound_phrases(gloss_phrases(GLOSSES, LABELS))
    assert extra[RANGE_LOW] == "ge" and extra[RANGE_HIGH] == "le"
    assert extra["minimum of"] == "ge" and extra["no fewer than"] == "ge" and extra["maximum of"] == "le"
    assert extra[TRAILING + "or lower"] == "le" and extra[TRAILING + "minimum"] == "ge"
    assert "at least" not in extra and "up to" not in extra  # the glosses have them already
    only_lower = {k: v for k, v in GLOSSES.items() if k != "le"}
    assert bound_phrases(gloss_phrases(only_lower, LABELS)) == {}
    two_lowers = {**GLOSSES, "lt": ["lt for minimum"]}  # which label means "at least" is unclear
    assert bound_phrases(gloss_phrases(two_lowers, LABELS)) == {}
    same = {"ge": ["ge for at least", "at most"]}  # one label for both bounds: no range to split
    assert bound_phrases(gloss_phrases(same, LABELS)) == {}


def test_a_range_gives_its_first_number_the_lower_bound_and_its_second_the_upper():
    phrases = _phrases()
    for text, low, high in [("errors between 10 and 50 per hour", "10", "50"),
                            ("latency from 200 to 800 ms", "200", "800"), ("hosts 2 to 5", "2", "5"),
                            ("errors 1,000 - 3,000 a day", "1,000", "3,000"),
                            ("cost from $1,000 to $3,000", "1,000", "3,000")]:
        assert (_decide(text, low, phrases), _decide(text, high, phrases)) == ("ge", "le"), text
    text = "3 hosts and 20 errors"  # "and" joins a range only after "between"
    assert [range_end(text, m.start, m.end) for m in mentions(text)] == [None, None]
    assert range_end("errors between 10, and 50", 15, 17) is None  # not one clause
    assert range_end("2-3 hosts", 0, 1) is None  # the 3 of "2-3" is no number of the text
    assert _decide("hosts 2 to 5", "2", {k: v for k, v in phrases.items() if k != RANGE_LOW}) is None


def test_a_bound_word_after_the_number_and_its_unit_words_decides_not_past_another_number():
    phrases = _phrases()
    assert _decide("latency 200 ms or lower", "200", phrases) == "le"
    assert _decide("45 square meters minimum", "45", phrases) == "ge"
    assert _decide("5th floor or above", "5", phrases) == "ge"
    assert _decide("3 hosts or more", "3", phrases) == "ge"  # the gloss phrase "or more", right after
    assert _decide("2 hosts with disks max", "2", phrases) == "le"  # three unit words
    assert _decide("2 hosts with very slow disks max", "2", phrases) is None  # four: too far
    assert _decide("3 hosts at most 500 ms", "3", phrases) is None  # "at most" is the 500's
    assert _decide("3 hosts at most 500 ms", "500", phrases) == "le"
    assert _decide("3 hosts under 2800", "3", phrases) is None  # a phrase said before a number never trails
    assert _decide("3 hosts, at least 5 errors", "3", phrases) is None  # another clause
    assert _decide("3 hosts and 4 errors or more", "3", phrases) is None  # past another number


def test_a_minimum_of_and_no_fewer_than_are_inclusive_bounds():
    phrases = _phrases()
    assert _decide("with a minimum of 2 hosts", "2", phrases) == "ge"
    assert _decide("a maximum of 40 errors", "40", phrases) == "le"
    assert _decide("no fewer than 3 hosts", "3", phrases) == "ge"
    assert _decide("with 2 hosts", "2", phrases) is None


def test_a_bound_phrase_an_example_contradicts_is_dropped_and_leave_one_out_counts_it():
    phrases = _phrases()
    spots = [_spot(f"at least {n} hosts", str(n), "ge") for n in (2, 3, 4)] + [
        _spot("10 errors or less", "10", "lt")]  # this domain writes a strict bound there
    rule = learn_phrase_rule(phrases, spots)
    assert TRAILING + "or less" not in rule.phrases and "at least" in rule.phrases
    assert rule.decided == 4 and rule.right == 3 and not rule.reliable  # its own example restores it: wrong
    honest = learn_phrase_rule(phrases, spots[:3] + [_spot("errors between 10 and 50", "10", "ge"),
                                                   _spot("errors between 10 and 50", "50", "le")])
    assert honest.reliable and honest.decided == honest.right == 5 and RANGE_HIGH in honest.phrases


ITEM = {"type": "object", "properties": {
    "field": {"enum": ["errors", "latency_ms", "hosts"]},
    "op": {"description": "eq for exactly; ge for at least, or more; le for at most, up to; gt for more than, "
                          "over; lt for less than, under", "enum": ["eq", "ge", "le", "gt", "lt"]},
    "value": {"type": "number"}}, "required": ["field", "op", "value"], "additionalProperties": False}
SCHEMA = {"type": "object", "properties": {"filters": {"type": "array", "items": ITEM}}}
SPEC = SimpleNamespace(ground={("filters", "*", "value"): SimpleNamespace(source="numbers")}, units={})


def f(field: str, op: str, value: int) -> dict[str, object]:
    return {"field": field, "op": op, "value": value}


PAIRS = [
    ("logs with at least 5 errors", [f("errors", "ge", 5)]), ("latency over 300 ms", [f("latency_ms", "gt", 300)]),
    ("exactly 3 hosts", [f("hosts", "eq", 3)]), ("at most 2 hosts with latency under 900 ms",
                                                 [f("hosts", "le", 2), f("latency_ms", "lt", 900)]),
    ("errors between 10 and 40", [f("errors", "ge", 10), f("errors", "le", 40)]),
    ("at least 4 hosts, up to 50 errors", [f("hosts", "ge", 4), f("errors", "le", 50)]),
    ("latency less than 100 ms and more than 7 errors", [f("latency_ms", "lt", 100), f("errors", "gt", 7)]),
    ("1 host or more", [f("hosts", "ge", 1)]),
]


def test_a_made_up_domain_plans_a_range_as_one_quantitys_two_bounds():
    bank = learnt_anchors(SCHEMA, SPEC, [(q, {"filters": fs}) for q, fs in PAIRS])[0]
    rule = bank.phrases[("op",)]
    assert rule.reliable and RANGE_LOW in rule.phrases
    record = bank.vote("latency between 200 and 800 ms, 2 hosts or fewer")
    planned = [(i["value"], i["labels"]["op"], i.get("phrases", {}).get("op")) for i in record["items"]]
    assert planned == [(200, ["ge"], RANGE_LOW), (800, ["le"], RANGE_HIGH), (2, ["le"], TRAILING + "or fewer")]
    assert record["items"][1]["labels"]["field"] == record["items"][0]["labels"]["field"]  # one quantity
