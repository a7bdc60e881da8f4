"""Label glosses (domains/glosses.py): the clauses of a domain's descriptions and rules that name one label
become cue words for it, so a word no example uses ("villa") still votes."""

from __future__ import annotations

from pathlib import Path

from rag_middleware.domains.glosses import GLOSS_WEIGHT, gloss_pairs, label_glosses
from rag_middleware.domains.loader import load_domain

ROOT = Path(__file__).resolve().parents[1] / "knowledge_base"
SCHEMA = {"type": "object", "properties": {
    "kind": {"enum": ["house", "townhouse", "land"],
             "description": "house (also villa, cottage), townhouse (also terraced or row house), land"},
    "sort": {"description": "the order asked for: cheapest price asc, biggest area desc",
             "anyOf": [{"type": "object", "properties": {"by": {"enum": ["price", "area"]},
                                                         "order": {"enum": ["asc", "desc"]}}},
                       {"type": "null"}]},
}}
LABELS = {("kind",): ["house", "townhouse", "land"], ("sort", "by"): ["price", "area"],
          ("sort", "order"): ["asc", "desc"]}


def test_clauses_and_parentheses_that_name_one_label_gloss_it():
    rules = ["kind: a plot or lot is land", "sort: oldest first is price asc", "a rule about nothing we vote on"]
    found = label_glosses(SCHEMA, list(LABELS), LABELS, rules)
    assert found[("kind",)]["house"] == ["also villa, cottage", "house"]
    # the parentheses belong to the label before them, even when they name another label's word
    assert "also terraced or row house" in found[("kind",)]["townhouse"]
    assert "a plot or lot is land" in found[("kind",)]["land"]
    # a nested field reads its parent's description and the rules that name the parent
    assert found[("sort", "by")] == {"price": ["cheapest price asc", "oldest first is price asc"],
                                     "area": ["biggest area desc"]}
    assert found[("sort", "order")]["asc"] == ["cheapest price asc", "oldest first is price asc"]
    assert not any("nothing" in c for g in found.values() for cs in g.values() for c in cs)
    # the clauses after a label's first one gloss it too, until another label is named
    listed = label_glosses({"properties": {"op": {"enum": ["gte", "lte"], "description":
                                                  "gte for at least, minimum, or more; lte for at most, max"}}},
                           [("op",)], {("op",): ["gte", "lte"]}, [])
    assert listed[("op",)] == {"gte": ["gte for at least", "minimum", "or more"], "lte": ["lte for at most", "max"]}
    # a label alone in its clause starts no gloss: a list of examples of a statistic names labels among others
    statistic = label_glosses({"properties": {"func": {"enum": ["count", "avg", "max"], "description":
                                                       "a statistic (how many, count, average, max, peak)"}}},
                              [("func",)], {("func",): ["count", "avg", "max"]}, [])
    assert statistic[("func",)] == {"count": ["count"], "max": ["max"]}  # "average" and "peak" gloss nothing


def test_glosses_become_weighted_pseudo_examples_at_their_path():
    pairs = gloss_pairs({("sort", "by"): {"price": ["cheapest price asc"]}})
    assert pairs == [("cheapest price asc", {"sort": {"by": "price"}})] * GLOSS_WEIGHT


def test_a_domains_glosses_teach_words_its_examples_never_use():
    domain = load_domain(ROOT / "listing_search")
    questions = " ".join(e.question.lower() for e in domain.examples)
    assert not {"villa", "bungalow", "acreage"} & set(questions.split())
    assert domain.cues[("listing_type",)]["villa"][0] == "house"
    assert domain.cues[("listing_type",)]["bungalow"][0] == "house"
    assert domain.cues[("listing_type",)]["acreage"][0] == "land"
    assert domain.glossed  # the retriever's leave-one-out judgement mines the same pseudo-examples


def test_anchored_list_labels_read_the_glosses_where_no_example_has_the_words():
    from rag_middleware.domains.anchors import AnchorBank

    domain = load_domain(ROOT / "listing_search")
    bank = domain.anchors[0]
    assert any(labels == {("op",): "gte"} and "L1:since" in feats for feats, labels, _ in bank.glossed)
    without = AnchorBank(bank.anchor, list(bank.windows), bank.k, bank.margin)
    for question, op in (("houses built since 1990 in Leeds", "gte"),  # "since" and "below" are in no example
                         ("flats in Lyon, 3 bedrooms, area below 70 square meters", "lt")):
        last = bank.vote(question)["items"][-1]
        assert last["labels"]["op"] == [op]
        assert without.vote(question)["items"][-1]["labels"]["op"] != [op]
