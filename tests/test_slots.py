"""Slots: which number or word of the request fills which grounded field, learnt from the words around it."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rag_middleware.domains.mechanisms import Declarative
from rag_middleware.domains.slots import SlotBank, judge_slots, slot_paths, word_mentions
from rag_middleware.domains.spec import DeclarativeSpec
from rag_middleware.request.ask import Switches

EXAMPLES = [
    ("flats in Lisbon, show me 5", {"city": "Lisbon", "limit": 5}),
    ("show me 3 houses in Austin", {"city": "Austin", "limit": 3}),
    ("condos with 2 bedrooms in Miami", {"city": "Miami", "limit": None}),
    ("top 10 lofts in Berlin", {"city": "Berlin", "limit": 10}),
    ("houses with 4 bedrooms", {"city": None, "limit": None}),
    ("show me 7 flats in Porto with 2 bathrooms", {"city": "Porto", "limit": 7}),
    ("apartments in Rome with 3 bedrooms", {"city": "Rome", "limit": None}),
]
SCHEMA = {"type": "object", "properties": {"city": {"type": ["string", "null"]},
                                           "limit": {"type": ["integer", "null"]}}}


def bank():
    out = SlotBank((("limit",),), (("city",),))
    for question, answer in EXAMPLES:
        out.learn(question, answer)
    return out


def test_word_mentions_take_capitalised_runs_whole_and_in_parts():
    found = [w for w, _ in word_mentions("a job in Salt Lake City soon")]
    assert "Salt Lake City" in found and "Salt" in found and "soon" in found


def test_the_number_and_the_word_that_fill_a_field_are_picked_by_their_neighbours():
    picks = {r["path"]: r["allowed"] for r in bank().vote("show me 4 lofts in Madrid with 2 bedrooms")}
    assert picks == {"/limit": [4], "/city": ["Madrid"]}
    assert "/limit" not in {r["path"] for r in bank().vote("lofts in Madrid with 2 bedrooms")}


def test_a_sure_pick_admits_only_that_value_in_the_grammar():
    spec = DeclarativeSpec.from_sections(context={}, ground={"/limit": "numbers", "/city": "words"}, units={},
                                         derive={}, vote={}, harden=[])
    request = "show me 4 lofts in Madrid with 2 bedrooms"
    schema, notes = Declarative(spec, SCHEMA).grammar(SCHEMA, request, flags=Switches(), votes=bank().vote(request))
    assert schema["properties"]["limit"] == {"enum": [4]} and schema["properties"]["city"] == {"enum": ["Madrid"]}
    loose, _ = Declarative(spec, SCHEMA).grammar(SCHEMA, request, flags=Switches(), votes=[])
    assert loose["properties"]["limit"] == {"enum": [4, 2, None]} and None in loose["properties"]["city"]["enum"]


def test_reviewed_answers_teach_a_new_phrasing():
    request = "lofts: 6 results"
    assert "/limit" not in {r["path"] for r in bank().vote(request)}
    taught = bank().vote(request, extra=[("houses: 9 results", {"city": None, "limit": 9})])
    assert {r["path"]: r["allowed"] for r in taught}["/limit"] == [6]


def test_leave_one_out_judges_each_field():
    judged = judge_slots(bank(), EXAMPLES)
    assert set(judged) == {"/limit", "/city"}
    assert judged["/city"]["narrowed"] >= 3 and judged["/city"]["reliable"]


LOGS = [
    ("give me the last 2 hours of errors", {"limit": None}),
    ("give me the last 3 days", {"limit": None}),
    ("give me the last 5 hours of web logs", {"limit": None}),
    ("give me the last 30 minutes", {"limit": None}),
    ("give me the last 6 hours", {"limit": None}),
    ("the last 50 errors from the queue", {"limit": 50}),
    ("show the last 20 warnings", {"limit": 20}),
    ("worker errors, the last 10 please", {"limit": 10}),
]


def test_a_number_written_with_a_unit_is_no_slots_and_teaches_none():
    units = {"minute": 1, "hour": 60, "day": 1440}
    plain = SlotBank((("limit",),), ())
    bound = SlotBank((("limit",),), (), units=units)
    for question, answer in LOGS:
        plain.learn(question, answer)
        bound.learn(question, answer)
    assert len(bound.windows["numbers"]) == 3  # "2 hours", "3 days", "30 minutes" ... are the window's
    request = "give me the last 40 debug lines"
    # the windows of "the last N hours" outvote the few of "the last N errors" ...
    assert "/limit" not in {r["path"] for r in plain.vote(request)}
    # ... unless the numbers a unit takes are left out: they are never the limit's candidates
    assert {r["path"]: r["allowed"] for r in bound.vote(request)}["/limit"] == [40]
    assert bound.candidates("errors in the last three days", "numbers") == []
    # a number like no window of the examples ("2FA") is left to grounding, not given to the only field left
    assert "/limit" not in {r["path"] for r in bound.vote("2FA failures by user")}
    # nor is another number then surely the field's where the far one might be it: as many digits as its values
    assert "/limit" in {r["path"] for r in bound.vote("failures by user, the last 40 please")}
    assert "/limit" not in {r["path"] for r in bound.vote("ticket 77 failures by user, the last 40 please")}
    assert "/limit" in {r["path"] for r in bound.vote("2FA failures by user, the last 40 please")}


def test_fields_with_time_units_or_in_lists_are_no_slots():
    spec = DeclarativeSpec.from_sections(context={}, ground={"/limit": "numbers", "/filters/*/value": "numbers",
                                                             "/city": "words"},
                                         units={"/days": {"day": 1, "week": 7}}, derive={}, vote={}, harden=[])
    assert slot_paths(spec) == ((("limit",),), (("city",),))


def test_the_pipeline_fills_the_listing_slots():
    from rag_middleware import Middleware, load_settings

    mw = Middleware(load_settings(None, data_dir=Path(tempfile.mkdtemp())))
    rendered = mw.render("villas for sale in Nice, most expensive first, show 4", domain="listing_search")
    assert rendered.json_schema["properties"]["city"]["enum"] == ["Nice"]
    assert rendered.json_schema["properties"]["limit"]["enum"] == [4]


def test_an_ordinal_is_no_slots_mention():
    bank = SlotBank((("limit",),), ())
    assert [v for v, _ in bank.candidates("the 95th percentile of the top 5, on the 3rd", "numbers")] == [5]
