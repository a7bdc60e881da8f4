"""The fast leave-one-out judgements give what the plain ones give: cue words with one example left out, and
slot and anchor plans voted by the other examples' windows."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_middleware.domains.anchors import AnchorBank
from rag_middleware.domains.grounding import request_body
from rag_middleware.domains.loader import load_domain
from rag_middleware.domains.slots import SlotBank
from rag_middleware.domains.votes import _base, _cue_counts, _LeaveOneOutCues, _select_cues, _terms

ROOT = Path(__file__).resolve().parents[1] / "knowledge_base"


@pytest.mark.parametrize("name", ["claims_intake", "listing_search", "shop_query"])
def test_cue_words_with_one_example_left_out_match_a_fresh_selection(name):
    domain = load_domain(ROOT / name)
    spec = domain.declarative.spec
    paths = [p for p, v in spec.vote.items() if not v.per_clause]
    examples = [(e.question, e.answer) for e in domain.examples]
    term_sets, seen, by_path, labels = _cue_counts(examples, paths, {p for p in paths if spec.vote[p].presence})
    for path in paths:
        base = _base(labels, path)
        fast = _LeaveOneOutCues(by_path[path], seen, len(examples) - 1, base)
        for i, (question, _) in enumerate(examples):
            needed = _terms(request_body(question, spec.context))
            plain = _select_cues(by_path[path], seen, len(examples) - 1, (term_sets[i], labels[i].get(path)), base)
            assert fast.without(term_sets[i], labels[i].get(path), needed) == {
                t: c for t, c in plain.items() if t in needed}


def test_slot_and_anchor_votes_skipping_an_example_match_banks_without_it():
    domain = load_domain(ROOT / "listing_search")
    context = domain.declarative.spec.context
    pairs = [(request_body(e.question, context), e.answer) for e in domain.examples]
    anchor = domain.anchors[0].anchor
    slots = domain.slots
    every_anchor = AnchorBank(anchor)
    every_slot = SlotBank(slots.numbers, slots.words, shapes=slots.shapes)
    spans = []
    for question, answer in pairs:
        start = (len(every_anchor.windows), {k: len(w) for k, w in every_slot.windows.items()})
        every_anchor.learn(question, answer)
        every_slot.learn(question, answer)
        spans.append((range(start[0], len(every_anchor.windows)),
                      {k: range(start[1][k], len(w)) for k, w in every_slot.windows.items()}))
    planned = 0
    for i, (question, _) in enumerate(pairs):
        others_anchor = AnchorBank(anchor)
        others_slot = SlotBank(slots.numbers, slots.words, shapes=slots.shapes)
        for j, (q, a) in enumerate(pairs):
            if j != i:
                others_anchor.learn(q, a)
                others_slot.learn(q, a)
        expected = others_anchor.vote(question)
        assert every_anchor.vote(question, skip=spans[i][0]) == expected
        assert every_slot.vote(question, skip=spans[i][1]) == others_slot.vote(question)
        planned += "items" in expected
    assert planned >= 10  # the comparison covered real plans, not only empty ones
