"""Numbers joined by a hyphen: a range written "2-3" or "1990-2010" states both numbers (grounding reads the
second where it is larger, not a date's or an id's parts), and its two numbers take a range's bounds; a number
joined to the word after it ("2-bed", "8-core") is that word's, its window without the words before it."""

from __future__ import annotations

from types import SimpleNamespace

from rag_middleware.domains.anchors import judge, learnt_anchors, mentions, window
from rag_middleware.domains.grounding import numbers_in
from rag_middleware.domains.phrases import RANGE_HIGH, RANGE_LOW, range_end


def test_a_hyphen_range_states_both_numbers_and_a_dates_or_an_ids_parts_stay_unread():
    assert numbers_in("2-3 rooms") == [2, 3]
    assert numbers_in("built 1990-2010") == [1990, 2010]
    assert numbers_in("between 1,000-3,000 m2") == [1000, 3000]  # no stray ",000"
    assert numbers_in("2k-3k a month") == [2000, 3000]
    assert numbers_in("1.5-2.5 baths") == [1.5, 2.5]
    assert numbers_in("2-3.") == [2, 3]
    assert numbers_in("on 2024-01-15") == [2024]  # a date: its parts are no range
    assert numbers_in("ticket CLM-2024-0012") == []
    assert numbers_in("1-2-3") == [1]  # more parts than a range's
    assert numbers_in("a 3-2 win, 9-5 shifts") == [3, 9]  # a range rises
    assert numbers_in("2–3 rooms") == [2, 3]  # an en dash was read before
    assert numbers_in("2-bed flat") == [2]


def test_a_hyphen_ranges_numbers_are_its_ends():
    text = "2-3 hosts"
    found = mentions(text)
    assert [m.value for m in found] == [2, 3]
    assert [range_end(text, m.start, m.end) for m in found] == [RANGE_LOW, RANGE_HIGH]
    assert "R1:hosts" in window(text, found[0])  # the first reads the words after the range


def test_a_number_joined_to_the_word_after_it_has_no_left_words():
    text = "show me 2-core servers"
    own = window(text, mentions(text)[0])
    assert not any(f.startswith(("L:", "L1:")) for f in own) and {"R1:core", "R:servers"} <= own
    text = "show me 2 servers"
    assert {"L:show", "L1:me"} <= window(text, mentions(text)[0])  # a count of results keeps its left words


ITEM = {"type": "object", "properties": {
    "field": {"enum": ["cores", "ram_gb", "price", "year"]},
    "op": {"description": "eq for exactly; ge for at least, or more; le for at most, up to; gt for more than, "
                          "over; lt for less than, under, below", "enum": ["eq", "ge", "le", "gt", "lt"]},
    "value": {"type": "number"}}, "required": ["field", "op", "value"], "additionalProperties": False}
SCHEMA = {"type": "object", "properties": {"filters": {"type": "array", "items": ITEM}}}
SPEC = SimpleNamespace(ground={("filters", "*", "value"): SimpleNamespace(source="numbers")}, units={})


def f(field: str, op: str, value: int) -> dict[str, object]:
    return {"field": field, "op": op, "value": value}


# a made-up server catalogue: "show me N servers" is a count of results (no item), "N cores" a filter
PAIRS = [
    ("show me 5 servers with at least 8 cores", [f("cores", "ge", 8)]),
    ("show me 3 servers under 200 a month", [f("price", "lt", 200)]),
    ("show me 10 machines with 4 cores", [f("cores", "eq", 4)]),
    ("show me 4 cheapest boxes", []),
    ("show me 6 servers, newest first", []),
    ("a 16-core server up to 300 a month", [f("cores", "eq", 16), f("price", "le", 300)]),
    ("need 8-core machines with at least 32 gb ram", [f("cores", "eq", 8), f("ram_gb", "ge", 32)]),
    ("servers with 2 cores and 64 gb ram", [f("cores", "eq", 2), f("ram_gb", "eq", 64)]),
    ("machines from 2015 or later below 150 a month", [f("year", "ge", 2015), f("price", "lt", 150)]),
    ("servers between 2010 and 2016 with 12 cores", [f("year", "ge", 2010), f("year", "le", 2016),
                                                    f("cores", "eq", 12)]),
    ("at most 128 gb ram, exactly 24 cores", [f("ram_gb", "le", 128), f("cores", "eq", 24)]),
    ("servers over 500 a month with 48 cores", [f("price", "gt", 500), f("cores", "eq", 48)]),
    ("cheap 2-core servers", [f("cores", "eq", 2)]),
    ("show me 7 boxes with a 6-core cpu", [f("cores", "eq", 6)]),
]


def _bank():
    return learnt_anchors(SCHEMA, SPEC, [(q, {"filters": fs}) for q, fs in PAIRS])[0]


def _plan(record):
    return [(i["value"], i["labels"]["field"], i["labels"]["op"]) for i in record["items"]]


def test_a_made_up_domain_reads_a_hyphen_joined_number_as_an_item_and_leave_one_out_judges_it():
    bank = _bank()
    assert bank.judged["reliable"]
    record = bank.vote("show me 4-core servers below 100 a month")
    assert _plan(record) == [(4, ["cores"], ["eq"]), (100, ["price"], ["lt"])]
    assert _plan(bank.vote("show me 4 servers below 100 a month")) == [(100, ["price"], ["lt"])]
    # leave-one-out: a hyphen-joined example is planned from the others' windows
    left_out = judge(bank, [(q, {"filters": fs}) for q, fs in PAIRS])
    assert left_out["narrowed"] >= len(PAIRS) - 2 and left_out["precision"] >= 0.8


def test_a_made_up_domain_plans_a_hyphen_range_as_one_quantitys_two_bounds():
    bank = _bank()
    assert bank.phrases[("op",)].reliable and RANGE_LOW in bank.phrases[("op",)].phrases
    record = bank.vote("servers from 2012-2018 with 16 cores")
    assert _plan(record) == [(2012, ["year"], ["ge"]), (2018, ["year"], ["le"]), (16, ["cores"], ["eq"])]
    assert [i.get("phrases", {}).get("op") for i in record["items"][:2]] == [RANGE_LOW, RANGE_HIGH]
