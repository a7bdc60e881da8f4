"""Word shapes (domains/word_shapes.py): a field grounded in the request's words admits only what looks like the
examples' values: names, without digits, not the common words of the questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_middleware.domains.grounding import request_body
from rag_middleware.domains.loader import load_domain
from rag_middleware.domains.word_shapes import WordShape, word_shapes

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [
    ("Show me flats in Paris under 900", {"city": "Paris", "tag": "x1"}),
    ("Show me houses in Lyon", {"city": "Lyon", "tag": "x2"}),
    ("flats in New York City please", {"city": "New York City", "tag": "x3"}),
    ("houses in Oslo with a garden", {"city": "Oslo", "tag": None}),
    ("any flats in Rome", {"city": "Rome", "tag": None}),
    ("show me anything", {"city": None, "tag": None}),
]


def test_the_shape_is_read_off_the_examples():
    shapes = word_shapes([("city",), ("tag",)], PAIRS)
    assert set(shapes) == {("city",)}  # two tag values are too few to learn from
    city = shapes[("city",)]
    assert city.capitalised and not city.digits
    assert {"show", "flats", "houses", "in", "me"} <= city.stop  # in two questions or more, never in a city
    assert "city" not in city.stop and "paris" not in city.stop  # in a value / in one question only


def test_an_example_written_in_lower_case_throughout_does_not_uncapitalise_the_shape():
    lower = ("hey any condos in porto", {"city": "porto", "tag": None})
    assert word_shapes([("city",)], [*PAIRS, lower])[("city",)].capitalised
    cased = ("Any condos in porto", {"city": "porto", "tag": None})  # a writer who uses capitals, a lower name
    assert not word_shapes([("city",)], [*PAIRS, cased])[("city",)].capitalised
    only_lower = [(q.lower(), {"city": (a["city"] or "").lower() or None}) for q, a in PAIRS]
    assert not word_shapes([("city",)], only_lower)[("city",)].capitalised  # nothing to tell names by


@pytest.mark.parametrize(("candidate", "request_text", "admitted"), [
    ("Nashville", "townhome for rent Nashville, newest listings", True),
    ("newest", "townhome for rent Nashville, newest listings", False),  # lower case in a cased request
    ("nashville", "townhome for rent nashville, newest listings", True),  # the writer uses no capitals
    ("2", "flats with 2 bedrooms", False),  # no example value holds a digit
    ("Flats", "Flats in Nashville", False),  # a stop word
    ("flats in nashville", "flats in nashville", False),  # starts with one
    ("New York City", "Lofts in New York City", True),  # ends in a common word, capitalised: part of the name
    ("Lofts in", "Lofts in New York City", False),  # ends in one in lower case
    ("Could you pull", "Could you pull up 12 condos?", False),  # a sentence's capital, then common words
    ("Family of", "Family of five moving to Galway", False),
    ("Rio de Janeiro", "Flats in Rio de Janeiro", True),  # a name's own lower-case joining word
    ("Frankfurt am Main", "Lofts in Frankfurt am Main", True),
])
def test_candidates_are_admitted_by_the_shape(candidate, request_text, admitted):
    shape = WordShape(capitalised=True, digits=False, stop=frozenset({"flats", "in", "city"}))
    assert shape.admits(candidate, request_text) is admitted


def test_a_month_or_a_weekday_is_no_value_unless_an_example_gives_one():
    city = word_shapes([("city",)], PAIRS)[("city",)]
    assert not city.calendar
    assert not city.admits("June", "relocating to Nashville in June") and city.admits("Nashville", "in Nashville")
    assert not city.admits("Tuesday", "viewings in Leeds on Tuesday")
    dated = [*PAIRS, ("the May issue", {"city": "May", "tag": None})]
    assert word_shapes([("city",)], dated)[("city",)].admits("June", "relocating to Nashville in June")


def test_the_listing_grammar_admits_the_city_not_the_other_words_of_the_request():
    domain = load_domain(ROOT / "knowledge_base" / "listing_search")
    assert ("city",) in domain.declarative.spec.shape
    question = "townhome for rent Nashville, newest listings, last 3 days"
    # the examples set the city whenever the request holds a name (infer.set_when_found): no null then
    assert domain.grammar_schema(question)["properties"]["city"]["enum"] == ["Nashville"]
    question = "Townhouses for sale, 4 bedrooms, 3 bathrooms, 2 parking spots"
    assert domain.grammar_schema(question)["properties"]["city"]["enum"] == [None]
    # a slot pick is a value the shape admits
    body = request_body("townhome for rent Nashville, newest listings, last 3 days", domain.declarative.spec.context)
    assert all(v["allowed"] != ["newest"] for v in domain.slots.vote(body))
