"""Anchored list items: one item per number the request states, labelled by the words around the number."""

from __future__ import annotations

import tempfile
from pathlib import Path

from jsonschema import Draft202012Validator

from rag_middleware.domains.anchors import Anchor, AnchorBank, admits, find_anchors, judge, mentions
from rag_middleware.domains.mechanisms import Declarative
from rag_middleware.domains.spec import DeclarativeSpec
from rag_middleware.request.ask import Switches

ITEM = {"type": "object", "properties": {
    "field": {"enum": ["bedrooms", "price", "area"]}, "op": {"enum": ["eq", "gte", "lt"]}, "value": {"type": "number"}},
    "required": ["field", "op", "value"], "additionalProperties": False}
SCHEMA = {"type": "object", "properties": {"filters": {"type": "array", "items": ITEM},
                                           "limit": {"type": ["integer", "null"]}}}
ANCHOR = Anchor(("filters",), ("value",), (("field",), ("op",)))


def item(field, op, value):
    return {"field": field, "op": op, "value": value}


EXAMPLES = [
    ("flats with at least 2 bedrooms under 900 a month", [item("bedrooms", "gte", 2), item("price", "lt", 900)]),
    ("houses with at least 4 bedrooms, show me 5", [item("bedrooms", "gte", 4)]),
    ("condos under 300,000", [item("price", "lt", 300000)]),
    ("3 bedrooms in town, show me 10", [item("bedrooms", "eq", 3)]),
    ("lofts of at least 80 square meters under 2,000", [item("area", "gte", 80), item("price", "lt", 2000)]),
    ("show me 3 houses under 500,000", [item("price", "lt", 500000)]),
    ("2 bedrooms, at least 60 square meters", [item("bedrooms", "eq", 2), item("area", "gte", 60)]),
    ("show me 7 flats with at least 1 bedrooms", [item("bedrooms", "gte", 1)]),
]


def bank(examples=EXAMPLES):
    out = AnchorBank(ANCHOR)
    for question, filters in examples:
        out.learn(question, {"filters": filters})
    return out


def test_mentions_keep_repeats_and_number_words():
    assert [m.value for m in mentions("two bedrooms, 2 baths and 1,200 a month")] == [2, 2, 1200]


def test_a_list_with_a_grounded_number_and_enum_labels_is_anchored():
    assert find_anchors(SCHEMA, [("filters", "*", "value"), ("limit",)]) == [ANCHOR]
    assert find_anchors(SCHEMA, [("limit",)]) == []


def test_each_number_is_labelled_by_its_words_and_a_count_of_results_is_no_item():
    record = bank().vote("show me 4 flats with at least 3 bedrooms under 1,500")
    assert record["confident"] and [i["value"] for i in record["items"]] == [3, 1500]
    assert record["items"][0]["labels"] == {"field": ["bedrooms"], "op": ["gte"]}
    assert record["items"][1]["labels"]["field"][0] == "price" and record["items"][1]["labels"]["op"][0] == "lt"
    assert not record["mentions"][0]["item"]  # "show me 4"


def test_an_unsure_number_before_a_sure_item_leaves_the_list_to_the_model():
    record = bank().vote("zzz 98765432 qqq qqq qqq; flats with at least 3 bedrooms")  # no word, no size seen
    assert "items" not in record and "not sure" in record["reason"]
    record = bank().vote("flats with at least 3 bedrooms; zzz zzz zzz 98765432 qqq qqq qqq")
    assert [i.get("optional", False) for i in record["items"]] == [False, True]


def test_the_plan_fixes_each_position_in_the_grammar():
    spec = DeclarativeSpec.from_sections(context={}, ground={"/filters/*/value": "numbers"}, units={}, derive={},
                                         vote={}, harden=[])
    vote = bank().vote("show me 4 flats with at least 3 bedrooms under 1,500")
    schema, notes = Declarative(spec, SCHEMA).grammar(SCHEMA, "show me 4 flats with at least 3 bedrooms under 1,500",
                                                      flags=Switches(), votes=[vote])
    assert "/filters: one item per number, [3, 1500]" in notes
    v = Draft202012Validator(schema)
    assert v.is_valid({"filters": [item("bedrooms", "gte", 3), item("price", "lt", 1500)]})
    for wrong in ([item("price", "gte", 3), item("price", "lt", 1500)],  # a label the vote did not admit
                  [item("bedrooms", "gte", 4), item("price", "lt", 1500)],  # another number
                  [item("bedrooms", "gte", 3)]):  # an item left out
        assert not v.is_valid({"filters": wrong})


def test_a_reviewed_answer_teaches_a_new_phrasing():
    question = "homes sized 12000000 m2 or more"  # no word of it, nor a number that size, in the examples
    before = bank().vote(question)
    assert before["items"] == [{"value": 12000000, "labels": {}, "candidates": {}, "optional": True}]  # unsure
    reviewed = [("plots sized 700 m2 or more", {"filters": [item("area", "gte", 700)]}, 3.0)]
    after = bank().vote(question, extra=reviewed)
    assert [(i["value"], i["labels"], i.get("optional")) for i in after["items"]] == [
        (12000000, {"field": ["area"], "op": ["gte"]}, None)]


def test_leave_one_out_judges_the_plans_on_the_examples():
    judged = judge(bank(), [(q, {"filters": f}) for q, f in EXAMPLES])
    assert judged["narrowed"] >= 3 and 0 < judged["precision"] <= 1
    assert admits([{"value": 3, "labels": {"field": ["bedrooms"], "op": []}}], [[item("bedrooms", "lt", 3)]], ANCHOR)
    assert not admits([{"value": 3, "labels": {"field": ["price"], "op": []}}], [[item("bedrooms", "lt", 3)]], ANCHOR)


def test_the_pipeline_plans_the_listing_filters():
    from rag_middleware import Middleware, load_settings

    mw = Middleware(load_settings(None, data_dir=Path(tempfile.mkdtemp())))
    domain = mw.domains.get("listing_search")
    assert [b.anchor.shown for b in domain.anchors] == ["/filters"] and domain.anchors[0].judged["narrowed"] > 10
    rendered = mw.render("2 bedroom flats for rent in Oslo under 1,400 a month", domain="listing_search")
    plan = [v for v in rendered.votes if v["path"] == "/filters"]
    assert plan and [i["value"] for i in plan[0]["items"]] == [2, 1400]
    assert rendered.json_schema["properties"]["filters"]["minItems"] == 2


def test_a_plan_longer_than_the_lists_bound_still_compiles():
    from rag_middleware import Middleware, load_settings

    mw = Middleware(load_settings(None, data_dir=Path(tempfile.mkdtemp())))
    # listing_search bounds filters at 4 (harden max_items); this request's numbers plan more items than that
    rendered = mw.render("We're a family of five (3 kids and 1 very large dog) relocating to Calgary in 2 months. We "
                         "need a house to rent, somewhere between 2,500 and 3,200 a month, with at least 4 bedrooms.",
                         domain="listing_search")
    filters = rendered.json_schema["properties"]["filters"]
    assert filters["maxItems"] == 4 and filters.get("minItems", 0) <= 4
    assert len(filters.get("prefixItems", [])) <= 4


def test_a_number_the_list_takes_is_no_other_fields_value():
    spec = DeclarativeSpec.from_sections(context={}, ground={"/filters/*/value": "numbers", "/limit": "numbers"},
                                         units={}, derive={}, vote={}, harden=[])
    request = "show me 4 flats with at least 3 bedrooms under 1,500"
    schema, notes = Declarative(spec, SCHEMA).grammar(SCHEMA, request, flags=Switches(), votes=[bank().vote(request)])
    assert schema["properties"]["limit"] == {"enum": [4, None]}
    assert "/limit: [3, 1500] taken by /filters" in notes
    loose, _ = Declarative(spec, SCHEMA).grammar(SCHEMA, request, flags=Switches(), votes=[])
    assert loose["properties"]["limit"] == {"enum": [4, 3, 1500, None]}


def test_the_plan_reads_in_one_line_in_explain_and_the_replay_report():
    from rag_middleware.analytics.report_items import explain
    from rag_middleware.domains.anchors import describe

    vote = bank().vote("flats with at least 3 bedrooms; zzz zzz zzz 98765432 qqq qqq qqq")
    assert describe(vote) == "one item per number: 3: field bedrooms, op gte; 98765432 (optional)"
    assert explain({"votes": [vote]}) == [f"vote /filters: {describe(vote)}"]


def test_the_grammar_admits_each_labels_winner_and_the_judgement_reads_the_runner_up():
    """Two operators come near ("at least 3" and "3 or more" both gte; "over 3" gt): the plan admits the winner
    alone, keeps the runner-up as a candidate, and a plan whose truth is the runner-up still counts as right
    in the leave-one-out judgement (the structure was right)."""
    b = AnchorBank(ANCHOR)
    for q, op in [("at least 3 beds", "gte"), ("at least 2 beds", "gte"), ("over 4 beds", "gt"),
                  ("at least 5 beds", "gte")]:
        b.learn(q, {"filters": [{"field": "bedrooms", "op": op, "value": int(q.split()[-2])}]})
    record = b.vote("at least 6 beds or over")
    item = record["items"][0]
    assert item["labels"]["op"] == ["gte"] and item["candidates"]["op"][0] == "gte"
    if len(item["candidates"]["op"]) == 2:
        assert admits([item], [[{"field": "bedrooms", "op": item["candidates"]["op"][1], "value": 6}]], ANCHOR)


def test_words_that_tell_a_label_apart_weigh_more_in_its_vote():
    """'under' always goes with lt, 'flats' with every operator: a window sharing 'flats' and 'beds' with a
    gte window but 'under' with an lt one is voted lt."""
    b = AnchorBank(ANCHOR)
    pairs = [("flats under 3 beds", "lt"), ("houses under 2 rooms", "lt"), ("flats min 4 beds", "gte"),
             ("flats min 5 beds", "gte"), ("flats min 2 beds", "gte")]
    for q, op in pairs:
        value = next(int(w) for w in q.split() if w.isdigit())
        b.learn(q, {"filters": [{"field": "bedrooms", "op": op, "value": value}]})
    item = b.vote("flats under 6 beds")["items"][0]
    assert item["labels"]["op"] == ["lt"]


def test_the_first_number_of_a_range_reads_the_words_after_the_range():
    from rag_middleware.domains.anchors import window

    def right(text):
        return [sorted(f for f in window(text, m) if f.startswith("R")) for m in mentions(text)]

    meters = ["R1:square", "R:meters", "R:square"]
    assert right("a plot between 1,000 and 3,000 square meters") == [meters, meters]
    assert right("homes from 2 to 4 bedrooms")[0] == ["R1:bedrooms", "R:bedrooms"]
    # "and" without "between" joins no range: the price keeps its own words
    assert right("under 2,000 and 3 bedrooms")[0] == ["R1:and", "R:#", "R:and", "R:bedrooms"]


def test_a_month_or_a_currency_is_one_window_word_whichever_the_text_uses():
    from rag_middleware.domains.anchors import window

    def feats(text):
        return [window(text, m) for m in mentions(text)]

    # "since April 2005" reads as "since May 2010" did in an example: a year of a date, whichever month
    assert feats("built since April 2005")[0] == feats("built since May 2010")[0]
    assert "L1:<month>" in feats("since April 2005")[0] and "A:<month>" in feats("posted in June 2024")[0]
    assert [m.value for m in mentions("on 2 April, 3 rooms")] == [3]  # a day of a date is no number at all
    # money, by a sign (which takes no place among the window's words) or by a word, on either side
    signed, worded = feats("the invoice came to £4,300")[0], feats("the invoice came to 4,300 euros")[0]
    assert "A:<money>" in signed and "A:<money>" in worded and "L:invoice" in signed
    assert "A:<money>" in feats("fees of $120 in total")[0] and "A:<money>" not in feats("fees of 120 in total")[0]


def test_a_currency_sign_points_to_the_money_field_the_examples_wrote_in_words():
    b = AnchorBank(ANCHOR)  # every price written with a currency word, after the number, never a sign
    b.learn("a flat of 80 square meters for 900 euros",
            {"filters": [item("area", "gte", 80), item("price", "lt", 900)]})
    b.learn("a house for 700 pounds with 150 square meters",
            {"filters": [item("price", "lt", 700), item("area", "gte", 150)]})
    b.learn("a loft for 1,200 dollars of 95 square meters",
            {"filters": [item("price", "lt", 1200), item("area", "gte", 95)]})

    def field(question):
        return [i["labels"]["field"][0] for i in b.vote(question)["items"]]

    assert field("a studio of 650 in the centre") == ["area"]  # "of 650", as "of 80 square meters"
    assert field("a studio of £650 in the centre") == ["price"]
    assert field("a studio of 650 quid in the centre") == ["price"]
