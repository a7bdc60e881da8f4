"""The declarative mechanisms one by one: paths, grounding, the narrowed grammar, hardening and derived fields,
label votes, and domain.yaml errors that name their line."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from rag_middleware.domains import load_domain
from rag_middleware.domains.grounding import (
    build_context,
    mentioned,
    numbers_in,
    pattern_matches,
    quantities,
    request_body,
    unit_bound,
    words_in,
)
from rag_middleware.domains.mechanisms import Declarative
from rag_middleware.domains.paths import MISSING, inline_refs, parse_path, remove_at, schema_nodes, set_at, values_at
from rag_middleware.domains.spec import ContextSpec, DeclarativeSpec, VoteSpec, against_schema
from rag_middleware.domains.votes import Neighbour, field_votes, margin_of
from rag_middleware.errors import DomainError


class On:
    ground = derive = vote = harden = True


def flags(**switched: bool) -> On:
    """Every mechanism on except those given False."""
    f = On()
    f.__dict__.update(switched)
    return f


# -- paths ------------------------------------------------------------------------------------------------

PLAN = {"ops": [{"type": "sort", "args": ["a", "b"]}, {"type": "filter", "args": ["c"]}], "meta": {"x": 1, "y": 2}}


def test_parse_path_splits_and_unescapes():
    assert parse_path("/ops/*/type") == ("ops", "*", "type")
    assert parse_path("/a~1b/c~0d") == ("a/b", "c~d")
    assert parse_path("/") == ()
    with pytest.raises(ValueError, match="starts with '/'"):
        parse_path("ops/type")


def test_values_at_wildcards_reach_every_item_and_missing_keys_reach_none():
    assert values_at(PLAN, ("ops", "*", "type")) == ["sort", "filter"]
    assert values_at(PLAN, ("ops", "*", "args", "*")) == ["a", "b", "c"]
    assert values_at(PLAN, ("ops", "1", "args", "0")) == ["c"]
    assert values_at(PLAN, ("meta", "*")) == [1, 2]
    assert values_at(PLAN, ("ops", "*", "nope")) == []
    assert values_at(PLAN, ("ops", "7")) == []


def test_set_at_replaces_through_wildcards_creates_and_deletes():
    plan = copy.deepcopy(PLAN)
    set_at(plan, ("ops", "*", "type"), str.upper)
    assert values_at(plan, ("ops", "*", "type")) == ["SORT", "FILTER"]
    set_at(plan, ("ops", "*", "n"), lambda old: 0 if old is MISSING else old + 1)  # created where missing
    assert [op["n"] for op in plan["ops"]] == [0, 0]
    set_at(plan, ("ops", "0", "args", "*"), lambda v: MISSING if v == "a" else v)  # an item deleted
    assert plan["ops"][0]["args"] == ["b"]
    remove_at(plan, ("meta", "x"))
    assert plan["meta"] == {"y": 2}
    with pytest.raises(ValueError):
        set_at(plan, (), lambda v: v)


def test_inline_refs_copies_definitions_so_one_use_can_be_narrowed_alone():
    schema = {"$defs": {"Col": {"type": "string"}},
              "properties": {"a": {"$ref": "#/$defs/Col"}, "b": {"$ref": "#/$defs/Col", "description": "b"}}}
    flat = inline_refs(schema)
    assert "$defs" not in flat
    assert flat["properties"]["a"] == {"type": "string"}
    assert flat["properties"]["b"] == {"type": "string", "description": "b"}
    flat["properties"]["a"]["enum"] = ["x"]
    assert "enum" not in flat["properties"]["b"]  # not shared
    assert schema["properties"]["a"] == {"$ref": "#/$defs/Col"}  # the original is untouched


def test_inline_refs_keeps_definitions_of_a_recursive_schema():
    schema = {"$defs": {"Node": {"type": "object", "properties": {"kids": {"type": "array",
                                                                           "items": {"$ref": "#/$defs/Node"}}}}},
              "$ref": "#/$defs/Node"}
    flat = inline_refs(schema)
    assert "$defs" in flat
    assert flat["type"] == "object"  # the root reference is followed once
    assert flat["properties"]["kids"]["items"] == {"$ref": "#/$defs/Node"}  # and not again inside itself


def test_schema_nodes_go_through_anyof_items_and_refs():
    schema = inline_refs({
        "$defs": {"Sort": {"type": "object", "properties": {"type": {"const": "sort"}, "by": {"type": "string"}}},
                  "Top": {"type": "object", "properties": {"type": {"const": "top"}, "n": {"type": "integer"}}}},
        "type": "object",
        "properties": {"ops": {"type": "array",
                               "items": {"anyOf": [{"$ref": "#/$defs/Sort"}, {"$ref": "#/$defs/Top"}]}},
                       "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
    })
    assert [n["const"] for n in schema_nodes(schema, ("ops", "*", "type"))] == ["sort", "top"]
    assert schema_nodes(schema, ("ops", "*", "n")) == [{"type": "integer"}]
    assert schema_nodes(schema, ("nope",)) == []
    nodes = schema_nodes(schema, ("ops", "*", "by"))
    nodes[0]["enum"] = ["a"]  # nodes are the schema's own objects, to edit in place
    assert schema["properties"]["ops"]["items"]["anyOf"][0]["properties"]["by"]["enum"] == ["a"]


# -- grounding --------------------------------------------------------------------------------------------

def test_numbers_as_written_with_separators_suffixes_and_words():
    assert numbers_in("The garage quoted $2,300 for the repair") == [2300]
    assert numbers_in("budget 2.5k, maybe 1.5 million") == [2500, 1500000]
    assert numbers_in("three bedrooms and twelve photos") == [3, 12]
    assert numbers_in("a dozen eggs") == [12]
    assert numbers_in("7 then 7 again") == [7]  # no repeats


def test_numbers_written_the_european_or_swiss_way():
    assert numbers_in("R$ 18.500,00 for the roof") == [18500]
    assert numbers_in("2 900 € for the car, €1 200 for the van") == [2900, 1200]
    assert numbers_in("2 900,50 EUR") == [2900.5]
    assert numbers_in("1.250.000 euros") == [1250000]
    assert numbers_in("CHF 1'250'000") == [1250000]
    assert numbers_in("a fee of 12,50 €") == [12.5]


def test_dates_times_and_references_are_no_numbers():
    # a digit group joined to another by '/', ':' or a second '.' is a date, a time or a reference
    assert numbers_in("Incident date: 02/09/2024, call at 09:40, born 12.06.1958, crime ref 4471/22") == []
    assert numbers_in("Call note 14/03: 2 bags lost, 1,250.00 claimed, 3.5 stars, then 5.") == [2, 1250, 3.5, 5]


def test_a_day_of_a_date_and_an_hour_are_no_numbers_but_a_year_is():
    assert numbers_in("killed on 21 May; trip 14-21 June; on April 8th; the 3rd of March; around 11pm") == []
    assert numbers_in("since May 2024, 300 may be left, 2,300 Jan, 3 decks") == [2024, 300, 2300, 3]


def test_a_comma_grouped_number_with_decimals_keeps_its_thousands():
    # the last mark is the decimal one: "1,250.00" is 1250 (it was read as 1.25, the European way)
    assert numbers_in("Value claimed: 1,250.00 | Policy: POL-1") == [1250]
    assert numbers_in("a total of $1,234.56") == [1234.56]
    assert numbers_in("R$ 18.500,00 and 1,250.00") == [18500, 1250]


def test_ambiguous_groupings_stay_separate_numbers():
    assert numbers_in("3 500 people came") == [3, 500]  # spaced groups count only beside a currency
    assert numbers_in("floors 1,2 and 3") == [1, 2, 3]
    assert numbers_in("version 18.500") == [18.5]  # one dot group may be decimals
    assert numbers_in("3.250 kg, $4.99") == [3.25, 4.99]


def test_one_dot_group_beside_a_currency_is_thousands():
    # money has two decimals or none: "4.180 EUR" is 4180, not 4.18
    assert numbers_in("the repair was 4.180 EUR, the van €12.400") == [4180, 12400]
    assert numbers_in("EUR 2.300 claimed, CHF 1.250 paid, 10.950 € in all") == [2300, 1250, 10950]
    assert numbers_in("USD 1.250 and 3.5 hours") == [1250, 3.5]


def test_numbers_inside_identifiers_are_not_numbers():
    assert numbers_in("my policy POL-123456, ticket svc-12, file v2.txt, user abc123") == []
    assert numbers_in("policy POL-123456 and 900 euros") == [900]


def test_the_one_and_no_are_not_counts():
    assert 1 not in numbers_in("the one I bought last week")
    assert numbers_in("no one was hurt") == []


MINUTES = {"minute": 1, "hour": 60, "day": 1440, "week": 10080}


@pytest.mark.parametrize("text,expected", [
    ("errors in the last day", [1440]),
    ("logins in the past 3 hours", [180]),
    ("over the past two weeks", [20160]),
    ("within 45 minutes", [45]),
    ("since yesterday", [1440]),
    ("the previous hour", [60]),
    # the usual short forms: after a number only, one letter only joined to its digits
    ("last 30 mins, then 2 hrs", [30, 120]),
    ("errors in the last 24h (or 7d, 1.5h)", [1440, 10080, 90]),
    ("half an hour ago", [30]),
    ("crashes in the last half hour, a half-day before", [30, 720]),
    ("3 wks", [30240]),
])
def test_quantities_in_words_become_the_field_unit(text, expected):
    assert quantities(text, MINUTES) == expected


def test_a_bare_unit_word_is_not_a_quantity():
    assert quantities("send the daily report", {"day": 1}) == []
    assert quantities("the min latency on host x24h, 5 m away", MINUTES) == []
    assert quantities("anything", {}) == []


def test_words_in_finds_phrases_quotes_and_identifiers():
    found = words_in('Show flats in New York near "Central Park", ticket svc-12')
    assert "New York" in found and "Central Park" in found and "svc-12" in found
    assert "new york" in found  # lower-case forms too
    assert found.index("New York") < found.index("Show")  # phrases first, then tokens


def test_words_in_keeps_accented_words_whole():
    found = words_in("Malmö, flats near Óbidos or in Zürich")
    assert {"Malmö", "Óbidos", "Zürich"} <= set(found) and "Malm" not in found  # "Malm" was all it read


def test_words_in_keeps_a_dotted_identifier_whole():
    assert "api.example.com" in words_in("errors from api.example.com today")


def test_pattern_matches_whole_tokens_only_and_anchors_dropped():
    text = "policy POL-384120, old POL-1234567, XPOL-111111 and POL-222222"
    assert pattern_matches("^POL-[0-9]{6}$", text) == ["POL-384120", "POL-222222"]
    assert pattern_matches("^ORD-[0-9]{5}$", text) == []
    assert pattern_matches("([", text) == []  # a broken pattern finds nothing instead of raising


def test_build_context_by_line_and_by_regex_and_request_body():
    specs = {"columns": ContextSpec(line=r"^Columns:\s*(.*)$", split=","),
             "tags": ContextSpec(regex=r"#(?P<value>\w+)")}
    request = "Columns: region, units , region\nTotal units per region #urgent #q3"
    assert build_context(request, specs) == {"columns": ["region", "units"], "tags": ["urgent", "q3"]}
    assert request_body(request, specs) == "Total units per region #urgent #q3"
    assert request_body(request, {}) == request


def test_mentioned_by_name_spaces_and_abbreviation():
    values = ["region", "interest_rate", "qty", "units"]
    assert mentioned(values, "average interest rate per region") == ["region", "interest_rate"]
    assert mentioned(values, "total quantity") == ["qty"]  # the value abbreviates a word of the text
    assert mentioned(values, "nothing relevant") == []


def test_mentioned_never_takes_a_word_of_the_text_for_an_abbreviation():
    # 'dept' in the text does not name 'department' (else 'are' would name 'area'); a value 'dept' is named
    assert mentioned(["department", "salary"], "average salary by dept") == ["salary"]
    assert mentioned(["area", "price"], "which are the cheapest") == []
    assert mentioned(["dept", "salary"], "average salary by department") == ["dept", "salary"]


# -- the grammar and the answer ---------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"enum": ["billing", "bug", "other"]},
        "team": {"enum": ["payments", "engineering", "support"]},
        "order_id": {"type": ["string", "null"], "pattern": "^ORD-[0-9]{5}$"},
        "ref": {"type": "string", "pattern": "^REF[0-9]{3}$"},
        "since_minutes": {"type": ["integer", "null"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "filters": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"enum": ["price", "rooms"]}, "value": {"type": "number"}}, "required": ["field", "value"]}},
    },
    "required": ["category", "team", "order_id", "ref", "tags"],
}


def declarative(**sections) -> Declarative:
    base = dict(context={}, ground={}, units={}, derive={}, vote={}, harden=None)
    return Declarative(DeclarativeSpec.from_sections(**{**base, **sections}), SCHEMA)


def test_a_pattern_string_admits_only_the_requests_matches_or_null():
    d = declarative()
    grammar, notes = d.grammar(SCHEMA, "Order ORD-12345 (not ORD-999) was charged twice", flags=On())
    assert grammar["properties"]["order_id"] == {"enum": ["ORD-12345"]}  # written in its pattern: that is the value
    assert any(n.startswith("/order_id: grounded in request") for n in notes)
    grammar, _ = d.grammar(SCHEMA, "I was charged twice", flags=On())
    assert grammar["properties"]["order_id"] == {"enum": [None]}  # nothing to copy: only null
    # a required, non-nullable pattern string with nothing in the request stays open (and says so)
    grammar, notes = d.grammar(SCHEMA, "I was charged twice", flags=On())
    assert grammar["properties"]["ref"]["pattern"] == "^REF[0-9]{3}$"
    assert "/ref: nothing in the request to ground it; left open" in notes
    assert SCHEMA["properties"]["order_id"]["type"] == ["string", "null"]  # the base schema is not edited


def test_grounding_is_switched_off_by_its_flag():
    grammar, notes = declarative().grammar(SCHEMA, "Order ORD-12345", flags=flags(ground=False))
    assert grammar["properties"]["order_id"]["pattern"] == "^ORD-[0-9]{5}$"
    assert not any("grounded" in n for n in notes)


def test_numbers_and_units_ground_nested_and_top_level_fields():
    d = declarative(ground={"/filters/*/value": "numbers"}, units={"/since_minutes": MINUTES})
    grammar, _ = d.grammar(SCHEMA, "Order ORD-12345: price over 300 in the last day", flags=On())
    assert grammar["properties"]["filters"]["items"]["properties"]["value"] == {"enum": [300]}  # not 12345
    assert grammar["properties"]["since_minutes"] == {"enum": [1440, None]}


def test_a_context_grounds_list_items_and_mentioned_keeps_the_named_ones():
    schema = {"type": "object", "properties": {"cols": {"type": "array", "items": {"type": "string"}}}}
    ctx = {"columns": {"line": r"^Columns:\s*(.*)$", "split": ","}}
    request = "Columns: region, units, price\nsum units by region"
    d = Declarative(DeclarativeSpec.from_sections(context=ctx, ground={"/cols/*": "columns"}, units={}, derive={},
                                                  vote={}, harden=None), schema)
    grammar, _ = d.grammar(schema, request, flags=On())
    assert grammar["properties"]["cols"]["items"] == {"enum": ["region", "units", "price"]}
    mentioned_only = {"/cols/*": {"from": "columns", "mentioned": True}}
    d = Declarative(DeclarativeSpec.from_sections(context=ctx, ground=mentioned_only,
                                                  units={}, derive={}, vote={}, harden=None), schema)
    grammar, _ = d.grammar(schema, request, flags=On())
    assert grammar["properties"]["cols"]["items"] == {"enum": ["region", "units"]}


def test_a_derived_field_leaves_the_grammar_and_post_fills_it_with_a_repair_line():
    d = declarative(derive={"/team": {"from": "/category", "map": {"billing": "payments", "bug": "engineering"},
                                      "default": "support"}})
    grammar, notes = d.grammar(SCHEMA, "charged twice", flags=On())
    assert "team" not in grammar["properties"] and "team" not in grammar["required"]
    assert "/team: derived after generation, not asked" in notes
    value, repairs = d.post({"category": "billing", "team": "engineering"}, "charged twice", flags=On())
    assert value["team"] == "payments"
    assert '/team: "engineering" -> "payments" (derived from /category)' in repairs
    value, repairs = d.post({"category": "other"}, "x", flags=On())
    assert value["team"] == "support" and repairs == ['/team: missing -> "support" (derived from /category)']
    value, repairs = d.post({"category": "bug", "team": "engineering"}, "x", flags=On())
    assert repairs == []  # already right: nothing listed
    assert d.for_display({"category": "bug", "team": "engineering"}) == {"category": "bug"}
    assert "team" not in d.display_schema(SCHEMA)["properties"]
    grammar, _ = d.grammar(SCHEMA, "x", flags=flags(derive=False))
    assert "team" in grammar["properties"]


def test_derive_by_precedence_from_a_list():
    schema = {"type": "object", "properties": {"task": {"type": "string"}, "ops": {"type": "array", "items": {
        "type": "object", "properties": {"type": {"type": "string"}}}}}}
    spec = DeclarativeSpec.from_sections(context={}, ground={}, units={}, vote={}, harden=None, derive={
        "/task": {"from": "/ops/*/type", "precedence": [{"any": ["group_by"], "value": "group_by"},
                                                        {"any": ["filter", "top_n"], "value": "filter"}],
                  "default": "clean"}})
    d = Declarative(spec, schema)
    post = lambda ops: d.post({"ops": [{"type": t} for t in ops]}, "x", flags=On())[0]["task"]  # noqa: E731
    assert post(["filter", "group_by"]) == "group_by"
    assert post(["sort", "top_n"]) == "filter"
    assert post(["sort"]) == "clean"


def test_a_vote_record_narrows_an_enum_and_an_open_vote_changes_nothing():
    d = declarative(vote={"/category": {}})
    grammar, notes = d.grammar(SCHEMA, "x", flags=On(), votes=[{"path": "/category", "allowed": ["billing", "bug"]}])
    assert grammar["properties"]["category"] == {"enum": ["billing", "bug"]}
    assert "/category: vote admits ['billing', 'bug']" in notes
    grammar, _ = d.grammar(SCHEMA, "x", flags=On(), votes=[{"path": "/category", "allowed": []}])
    assert grammar["properties"]["category"] == {"enum": ["billing", "bug", "other"]}
    grammar, _ = d.grammar(SCHEMA, "x", flags=flags(vote=False), votes=[{"path": "/category", "allowed": ["bug"]}])
    assert grammar["properties"]["category"]["enum"] == ["billing", "bug", "other"]
    # a value the schema does not allow cannot be forced in
    grammar, notes = d.grammar(SCHEMA, "x", flags=On(), votes=[{"path": "/category", "allowed": ["nonsense"]}])
    assert grammar["properties"]["category"]["enum"] == ["billing", "bug", "other"]
    assert not any("vote admits" in n for n in notes)


def test_snap_enums_fixes_a_near_miss_and_leaves_a_far_one():
    d = declarative(harden=["snap_enums"])
    value, repairs = d.post({"category": "biling", "filters": [{"field": "Price", "value": 3}]}, "x", flags=On())
    assert value["category"] == "billing" and value["filters"][0]["field"] == "price"
    assert "/category: 'biling' -> 'billing' (nearest allowed value)" in repairs
    assert "/filters/0/field: 'Price' -> 'price' (nearest allowed value)" in repairs
    value, repairs = d.post({"category": "weather"}, "x", flags=On())
    assert value["category"] == "weather" and repairs == []
    value, _ = d.post({"category": "biling"}, "x", flags=flags(harden=False))
    assert value["category"] == "biling"


def test_drop_repeats_dedupe_and_max_items():
    d = declarative(harden=["drop_repeats"])
    value, repairs = d.post({"tags": ["a", "a", "b", "a"]}, "x", flags=On())
    assert value["tags"] == ["a", "b", "a"]  # only the repeat in a row
    assert repairs == ["/tags: a repeated item dropped"]
    d = declarative(harden=["dedupe_lists"])
    value, repairs = d.post({"tags": ["a", "b", "a"]}, "x", flags=On())
    assert value["tags"] == ["a", "b"] and repairs == ["/tags: duplicate 'a' dropped"]
    d = declarative(harden=[{"max_items": 2}])
    value, repairs = d.post({"tags": ["a", "b", "c"]}, "x", flags=On())
    assert value["tags"] == ["a", "b"] and repairs == ["/tags: 3 items cut to 2"]
    grammar, _ = d.grammar(SCHEMA, "x", flags=On())
    assert grammar["properties"]["tags"]["maxItems"] == 2 and grammar["properties"]["filters"]["maxItems"] == 2


def test_max_items_cuts_a_planned_list_so_the_grammar_stays_satisfiable():
    # a plan of three fixed positions (anchored items) under a bound of two: minItems 3 > maxItems 2 is a grammar
    # llama.cpp drops without a word, leaving the answer unconstrained
    planned = copy.deepcopy(SCHEMA)
    positions = [{"const": "a"}, {"const": "b"}, {"const": "c"}]
    planned["properties"]["tags"].update(prefixItems=positions, items=False, minItems=3, maxItems=3)
    grammar, _ = declarative(harden=[{"max_items": 2}]).grammar(planned, "x", flags=On())
    tags = grammar["properties"]["tags"]
    assert (tags["minItems"], tags["maxItems"]) == (2, 2) and tags["prefixItems"] == positions[:2]
    assert planned["properties"]["tags"]["minItems"] == 3  # the caller's schema is left alone


def test_post_leaves_the_callers_value_alone():
    d = declarative(harden=["drop_repeats"])
    original = {"tags": ["a", "a"]}
    d.post(original, "x", flags=On())
    assert original == {"tags": ["a", "a"]}


# -- votes ------------------------------------------------------------------------------------------------

def test_a_reviewed_near_identical_neighbour_outweighs_several_curated_ones():
    neighbours = [Neighbour("reviewed", 0.95, {"c": "bug"}, trust=20.0, reviewed=True)]
    neighbours += [Neighbour(f"ex{i}", 0.93, {"c": "billing"}, trust=1.0) for i in range(5)]
    [record] = field_votes(neighbours, {("c",): VoteSpec(k=7, margin=0.6)})
    assert record["allowed"] == ["bug"] and record["confident"]
    assert record["scores"]["bug"] > 0.8
    assert record["voters"][0] == {"id": "reviewed", "value": "bug", "similarity": 0.95, "weight": 20.0,
                                   "reviewed": True, "near_identical": False}
    # the same neighbour as a curated example (trust 1) is outvoted
    curated = [Neighbour("reviewed", 0.95, {"c": "bug"}, trust=1.0), *neighbours[1:]]
    [record] = field_votes(curated, {("c",): VoteSpec(k=7, margin=0.6)})
    assert record["allowed"] == ["billing"]


def test_no_margin_no_allowed_values():
    neighbours = [Neighbour(n, 0.8, {"c": n}, trust=1.0) for n in ("a", "b", "c", "d")]
    [record] = field_votes(neighbours, {("c",): VoteSpec(k=7, margin=0.6, max_labels=2)})
    assert record["allowed"] == [] and not record["confident"]
    assert "hold 60% of the vote" in record["reason"]
    assert margin_of(record) == 0.0
    # two labels together holding the margin are both admitted, without confidence
    neighbours = [Neighbour("1", 0.8, {"c": "a"}, 1.0), Neighbour("2", 0.8, {"c": "b"}, 1.0),
                  Neighbour("3", 0.8, {"c": "a"}, 1.0), Neighbour("4", 0.8, {"c": "b"}, 1.0)]
    [record] = field_votes(neighbours, {("c",): VoteSpec(margin=0.6)})
    assert sorted(record["allowed"]) == ["a", "b"] and not record["confident"]


def test_far_neighbours_do_not_vote_and_k_bounds_the_voters():
    [record] = field_votes([Neighbour("x", 0.1, {"c": "a"}, 1.0)], {("c",): VoteSpec(min_similarity=0.3)})
    assert record["allowed"] == [] and record["reason"] == "no neighbour close enough"
    many = [Neighbour(str(i), 0.9 - i / 100, {"c": "a" if i < 3 else "b"}, 1.0) for i in range(10)]
    [record] = field_votes(many, {("c",): VoteSpec(k=3)})
    assert len(record["voters"]) == 3 and record["allowed"] == ["a"]


def test_booleans_vote_and_come_back_as_booleans():
    neighbours = [Neighbour(str(i), 0.9, {"hurt": True}, 1.0) for i in range(3)]
    [record] = field_votes(neighbours, {("hurt",): VoteSpec()})
    assert record["allowed"] == [True]


# -- domain.yaml errors -----------------------------------------------------------------------------------

def _domain(tmp_path: Path, sections: str) -> Path:
    path = tmp_path / "kb" / "tickets"
    path.mkdir(parents=True)
    (path / "output.schema.json").write_text(json.dumps(SCHEMA), encoding="utf-8")
    (path / "domain.yaml").write_text("description: Route a ticket.\noutput_schema: output.schema.json\n"
                                      "options:\n  temperature: 0.0\n" + sections, encoding="utf-8")
    return path


def _line_of(path: Path, key: str) -> int:
    """The line of a top-level key (``vote``) or of an entry of its section (``vote./category``)."""
    lines = (path / "domain.yaml").read_text(encoding="utf-8").splitlines()
    section, _, entry = key.partition(".")
    top = next(i for i, line in enumerate(lines, 1) if line.startswith(section + ":"))
    if not entry:
        return top
    return next(i for i, line in enumerate(lines, 1) if i > top and line.strip().startswith(entry + ":"))


@pytest.mark.parametrize("sections,key,message", [
    ("context:\n  columns: {line: '^Columns:(('}\n", "context.columns", r"context\.columns\.line: not a valid regex"),
    ("ground:\n  /order_id: nowhere\n", "ground./order_id", r"ground\./order_id: unknown source 'nowhere'"),
    ("derive:\n  /team: {from: /category}\n", "derive./team", r"derive\./team: give map or precedence"),
    ("vote:\n  /category: {margin: 2}\n", "vote./category", r"vote\./category\.margin"),
    ("units:\n  /since_minutes: {hour: sixty}\n", "units./since_minutes",
     r"units\./since_minutes: give \{unit word: factor\}"),
    ("ground:\n  order_id: request\n", "ground", r"ground: a path starts with '/'"),
    ("context:\n  numbers: {line: 'x'}\n", "context.numbers", r"context\.numbers: numbers is built in"),
    # what the schema cannot hold: a typo would pass, and inference quietly cover the real field
    ("ground:\n  /orderid: request\n", "ground./orderid", r"ground: /orderid is not a field of the output schema"),
    ("units:\n  /category: {hour: 60}\n", "units./category", r"units: /category takes no number"),
    ("vote:\n  /categry: {k: 5}\n", "vote./categry", r"vote: /categry is not a field"),
    ("vote:\n  /ref: {k: 5}\n  /category: {rules: [{pattern: 'invoice', label: biling}]}\n",
     "vote./category",
     r"vote: /category rule label 'biling' is not one of billing, bug, other"),
    ("derive:\n  /teams: {from: /category, map: {billing: payments}}\n", "derive./teams",
     r"derive: /teams is not a field"),
    ("derive:\n  /team: {from: /categori, map: {billing: payments}}\n", "derive./team",
     r"derive: /team is derived from /categori, which is not a field"),
])
def test_a_bad_declarative_section_names_domain_yaml_and_its_line(tmp_path, sections, key, message):
    path = _domain(tmp_path, sections)
    with pytest.raises(DomainError) as info:
        load_domain(path)
    assert info.value.path.endswith("domain.yaml")
    assert info.value.line == _line_of(path, key)
    assert re.search(rf"domain\.yaml:{info.value.line}: {message}", str(info.value)), str(info.value)


def test_a_rule_label_may_be_an_unquoted_yaml_boolean_or_null_and_must_be_the_fields():
    schema = {"type": "object", "properties": {"refund": {"type": "boolean"}, "level": {"enum": ["warn", None]},
                                               "note": {"type": "string"}}}
    spec = DeclarativeSpec.from_sections(context={}, ground={}, units={}, derive={}, harden=None, vote={
        "/refund": {"rules": [{"pattern": "money back", "label": True}, {"pattern": "exchange", "label": False}]},
        "/level": {"rules": [{"pattern": "quiet", "label": None}]},
        "/note": {"rules": [{"pattern": "x", "label": "anything"}]}})  # open values: any label
    assert [r.label for r in spec.vote[("refund",)].rules] == ["true", "false"]
    assert against_schema(spec, schema) == []
    spec.vote[("refund",)].rules[0].label = "maybe"
    spec.vote[("level",)].rules[0].label = "error"
    assert against_schema(spec, schema) == [
        ("vote./refund", "vote: /refund rule label 'maybe' is not one of true, false"),
        ("vote./level", "vote: /level rule label 'error' is not one of warn, null")]


def test_a_bad_hardening_names_its_line(tmp_path):
    path = _domain(tmp_path, "harden: [snap, {max_items: 0}]\n")
    with pytest.raises(DomainError, match=r"unknown hardening 'snap'") as info:
        load_domain(path)
    assert info.value.line == _line_of(path, "harden")


def test_a_valid_declarative_domain_loads_and_its_mechanisms_are_on(tmp_path):
    path = _domain(tmp_path, "ground:\n  /filters/*/value: numbers\nderive:\n  /team: {from: /category, map: "
                             "{billing: payments}, default: support}\nvote:\n  /category: {k: 5}\n")
    domain = load_domain(path)
    notes: list[str] = []
    grammar = domain.grammar_schema("Order ORD-12345, price 300", notes=notes)
    assert "team" not in grammar["properties"]
    assert grammar["properties"]["order_id"] == {"enum": ["ORD-12345"]}
    assert "team" not in domain.schema_json["properties"]
    value, repairs = domain.post(None, "x")({"category": "billing"})
    assert value["team"] == "payments" and repairs


def test_a_list_whose_items_need_a_number_the_request_lacks_admits_no_item():
    from rag_middleware.request.ask import Switches

    item = {"type": "object", "properties": {"field": {"enum": ["price", "area"]}, "value": {"type": "number"}},
            "required": ["field", "value"]}
    schema = {"type": "object", "properties": {"filters": {"type": "array", "items": item},
                                               "must": {"type": "array", "minItems": 1, "items": item}}}
    spec = DeclarativeSpec.from_sections(context={}, ground={"/filters/*/value": "numbers",
                                                             "/must/*/value": "numbers"},
                                         units={}, derive={}, vote={}, harden=None)
    decl = Declarative(spec, schema)
    empty, notes = decl.grammar(schema, "any plot near the lake, cheapest first", flags=Switches())
    assert empty["properties"]["filters"]["maxItems"] == 0 and any("/filters: no item" in n for n in notes)
    assert "maxItems" not in empty["properties"]["must"]  # a list that needs an item is left open instead
    some, _ = decl.grammar(schema, "plots under 50,000", flags=Switches())
    assert some["properties"]["filters"].get("maxItems") != 0


SHAPES = {"type": "object", "properties": {"filters": {"type": "array", "maxItems": 4, "items": {"anyOf": [
    {"type": "object", "properties": {"field": {"enum": ["status"]},
                                      "value": {"type": "integer", "x-ground": "numbers"}},
     "required": ["field", "value"]},
    {"type": "object", "properties": {"field": {"enum": ["endpoint"]},
                                      "value": {"type": "string", "pattern": "^/[a-z/]+$"}},
     "required": ["field", "value"]}]}}}}


def test_a_list_item_shape_whose_value_the_request_lacks_goes_and_the_other_shapes_stay():
    # the endpoint shape's pattern finds nothing in the request: that shape goes, not every item (it had given
    # the list maxItems 0, and "host db-1 ... status 503" lost its filters)
    shapes = Declarative(DeclarativeSpec.from_sections(context={}, ground={}, units={}, derive={}, vote={},
                                                       harden=None), SHAPES)
    grammar, notes = shapes.grammar(SHAPES, "status 503 errors on host db-1", flags=On())
    filters = grammar["properties"]["filters"]
    assert filters.get("maxItems") != 0 and len(filters["items"]["anyOf"]) == 1
    assert filters["items"]["anyOf"][0]["properties"]["value"] == {"enum": [503]}
    assert "/filters: no item of a shape whose /value has nothing in the request to ground it" in notes
    # a request with a path keeps both shapes
    both, _ = shapes.grammar(SHAPES, "status 503 on /api/login", flags=On())
    assert len(both["properties"]["filters"]["items"]["anyOf"]) == 2


def test_a_number_written_with_a_declared_unit_is_no_other_fields_value():
    assert unit_bound("errors per region in the last 24h, top 5", MINUTES) == {24}
    assert unit_bound("latency over 90 ms in the last 90 minutes", MINUTES) == set()  # 90 is also written alone
    d = Declarative(DeclarativeSpec.from_sections(context={}, ground={"/filters/*/value": "numbers"},
                                                  units={"/since_minutes": {"minute": 1, "hour": 60}}, derive={},
                                                  vote={}, harden=None), SCHEMA)
    grammar, _ = d.grammar(SCHEMA, "prices above 300 in the last 90 minutes", flags=On())
    assert grammar["properties"]["since_minutes"]["enum"][0] == 90
    assert grammar["properties"]["filters"]["items"]["properties"]["value"] == {"enum": [300]}


def test_the_schemas_own_words_are_no_grounded_words():
    # "by category" names the field, not a value: the schema's field names and labels are not request words
    d = Declarative(DeclarativeSpec.from_sections(context={}, ground={"/tags/*": "words"}, units={}, derive={},
                                                  vote={}, harden=None), SCHEMA)
    grammar, _ = d.grammar(SCHEMA, "Tag Pluto by category, billing first", flags=On())
    words = grammar["properties"]["tags"]["items"]["enum"]
    assert "Pluto" in words and not {"category", "billing"} & {w.lower() for w in words}
    runs = [w.lower() for w in words if " " in w]
    assert runs and not [w for w in runs if {w.split()[0], w.split()[-1]} & {"category", "billing"}]  # "by category"


def test_a_run_of_words_that_starts_or_ends_on_a_stop_word_is_no_value():
    found = words_in("errors per region in the last 24h, on host db-1")
    assert "errors per region" in found and "host db-1" in found
    assert not {"region in the", "in the last", "on host", "the last 24h"} & set(found)
    assert "New York City" in words_in("a flat in New York City")  # a name keeps its words


def test_a_planned_item_whose_number_grounding_left_out_is_dropped_not_the_plan():
    from rag_middleware.domains.narrowing import fix_items

    item = {"type": "object", "properties": {"field": {"enum": ["price", "rooms"]}, "value": {"enum": [50, 900]}}}
    array = {"type": "array", "items": item}  # 12 ("a 12-month contract") is a duration's, not an item's
    plan = [{"value": 12, "labels": {"field": ["price"]}}, {"value": 50, "labels": {"field": ["rooms"]}},
            {"value": 900, "labels": {"field": ["price"]}, "optional": True}]
    assert fix_items(array, ("value",), plan)
    assert [p["properties"]["value"]["enum"] for p in array["prefixItems"]] == [[50], [900]]
    assert (array["minItems"], array["maxItems"]) == (1, 2)
    assert not fix_items({"type": "array", "items": item}, ("value",), plan[:1])  # nothing placeable: left open
