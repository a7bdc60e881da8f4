"""Feedback: durable, idempotent per reviewer, and each action changes what the NEXT similar request sees."""

from __future__ import annotations

import json

import pytest
from conftest import HashEmbedder, mw_feedback

from rag_middleware.errors import InvalidEditError, RequestError, UnknownInteractionError
from rag_middleware.learning.feedback import Feedback, FeedbackLog

Q = "Columns: price, qty\nsort by price, cheapest first"
A = "Columns: price, qty\nsort the rows by price, cheapest first"  # a little less similar to Q than B
B = "Columns: price, qty\nsort by price, cheapest first please"


def plan(column: str = "price", ascending: bool = True) -> dict:
    return {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
        "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": column, "ascending": ascending}}}]}


def ask(mw, fake_llm, question: str, answer: dict):
    fake_llm.enqueue(json.dumps(answer))
    return mw.ask(question, domain="data_ops")


def probe(mw, fake_llm):
    """The next similar request; it does not learn, so it never competes with the entries under test."""
    fake_llm.enqueue(json.dumps(plan()))
    return mw.ask(Q, domain="data_ops", learn=False)


def selected(result, rid: str):
    return next((s for s in result.selected if s.id == rid), None)


def test_similarities_behind_the_ranking_test():
    e = HashEmbedder()
    q, a, b = e.encode([Q, A, B])
    assert q @ b > q @ a > q @ b - 0.05, "A ranks behind B, but within approved_boost of it"
    assert a @ b < 0.95, "A and B must not be near-duplicates of each other"


def test_approve_makes_the_entry_approved_and_rank_ahead_of_validated(mw, fake_llm):
    mw.settings.learn = "all"  # unreviewed answers are examples too, so the two can be compared
    first_a = ask(mw, fake_llm, A, plan())
    first_b = ask(mw, fake_llm, B, plan(ascending=False))
    before = probe(mw, fake_llm)
    a_before, b_before = selected(before, first_a.interaction_id), selected(before, first_b.interaction_id)
    assert a_before.status == "validated" and b_before.status == "validated"
    assert b_before.mmr_rank < a_before.mmr_rank

    result = mw_feedback(mw, Feedback(interaction_id=first_a.interaction_id, action="approve", score=5,
                                         reviewer="ana"))
    assert result.effective == "approve" and not result.replaced
    mem = mw.store.get([first_a.interaction_id])[0]
    assert (mem.kind, mem.status, mem.meta["feedback"]["reviewer"]) == ("interaction", "approved", "ana")

    after = probe(mw, fake_llm)
    a_after, b_after = selected(after, first_a.interaction_id), selected(after, first_b.interaction_id)
    assert a_after.status == "approved"
    assert a_after.mmr_rank == 0 and a_after.mmr_rank < b_after.mmr_rank


def test_edit_stores_the_corrected_answer_as_gold(mw, fake_llm):
    first = ask(mw, fake_llm, A, plan())
    corrected = plan(ascending=False)
    result = mw_feedback(mw, Feedback(interaction_id=first.interaction_id, action="edit",
                                         edited_output=json.dumps(corrected), reviewer="ana", score=4))
    mem = result.memory
    assert (mem.status, mem.source) == ("approved", "edited")
    stored = mw.store.get([first.interaction_id])[0]
    assert (stored.status, stored.source) == ("approved", "edited") and json.loads(stored.answer) == corrected

    nxt = probe(mw, fake_llm)
    hit = selected(nxt, first.interaction_id)
    shown = mw.domains.get("data_ops").declarative.for_display(corrected)  # derived method/task are never shown
    assert hit is not None and hit.status == "approved" and json.loads(hit.answer) == shown
    # the model saw the corrected answer as an example turn
    sent = fake_llm.requests[-1].messages
    assert any(m["role"] == "assistant" and m.get("kind") == "example" and json.loads(m["content"]) == shown
               for m in sent)


def test_an_invalid_edit_is_refused_with_the_errors_and_changes_nothing(mw, fake_llm):
    first = ask(mw, fake_llm, A, plan())
    with pytest.raises(InvalidEditError) as info:
        mw_feedback(mw, Feedback(interaction_id=first.interaction_id, action="edit",
                                    edited_output=plan(column="cost"), reviewer="ana"))
    assert info.value.http_status == 422
    assert any("unknown column cost" in e for e in info.value.errors), info.value.errors
    with pytest.raises(InvalidEditError, match="not JSON"):
        mw_feedback(mw, Feedback(interaction_id=first.interaction_id, action="edit", edited_output="{oops",
                                    reviewer="ana"))
    assert mw.store.get([first.interaction_id])[0].status == "validated"
    log = FeedbackLog(mw.settings.db_path)
    assert log.of(first.interaction_id) == []
    log.close()


def test_reject_turns_the_entry_into_a_negative_the_next_request_is_shown(mw, fake_llm):
    wrong = plan(ascending=False)
    first = ask(mw, fake_llm, A, wrong)
    reason = "cheapest first means ascending order"
    mw_feedback(mw, Feedback(interaction_id=first.interaction_id, action="reject", reason=reason, reviewer="ana"))
    mem = mw.store.get([first.interaction_id])[0]
    assert (mem.kind, mem.status, mem.reason) == ("negative", "rejected", reason)
    assert json.loads(mem.wrong) == wrong and mem.answer == ""

    nxt = probe(mw, fake_llm)
    assert selected(nxt, first.interaction_id) is None, "a rejected answer left positive retrieval"
    neg = next(n for n in nxt.negatives if n.id == first.interaction_id)
    assert neg.reason == reason and json.loads(neg.wrong) == wrong
    system = fake_llm.requests[-1].messages[0]["content"]
    assert reason in system and "RIGHT: \n" not in system


def test_feedback_is_idempotent_per_reviewer_and_the_newest_decides(mw, fake_llm):
    first = ask(mw, fake_llm, A, plan())
    iid = first.interaction_id
    r1 = mw_feedback(mw, Feedback(interaction_id=iid, action="reject", reason="wrong order", reviewer="ana"))
    r2 = mw_feedback(mw, Feedback(interaction_id=iid, action="reject", reason="wrong order", reviewer="ana"))
    assert not r1.replaced and r2.replaced
    log = FeedbackLog(mw.settings.db_path)
    assert len(log.of(iid)) == 1 and log.count() == 1
    # the same reviewer changes their mind: replaced, not added; the entry is positive again
    r3 = mw_feedback(mw, Feedback(interaction_id=iid, action="approve", score=4, reviewer="ana"))
    assert r3.replaced and len(log.of(iid)) == 1 and log.of(iid)[0].action == "approve"
    mem = mw.store.get([iid])[0]
    assert (mem.kind, mem.status, mem.wrong, mem.reason) == ("interaction", "approved", "", "")
    assert json.loads(mem.answer) == plan()
    # another reviewer adds a row; theirs is the newest, so it decides
    mw_feedback(mw, Feedback(interaction_id=iid, action="reject", reason="not what I asked", reviewer="bo"))
    assert len(log.of(iid)) == 2
    assert mw.store.get([iid])[0].kind == "negative"
    assert selected(probe(mw, fake_llm), iid) is None
    log.close()
    # durable: a fresh connection (a new process) sees both rows
    again = FeedbackLog(mw.settings.db_path)
    assert {f.reviewer for f in again.of(iid)} == {"ana", "bo"}
    again.close()


def test_unknown_interaction_is_a_clear_404_error(mw):
    with pytest.raises(UnknownInteractionError, match="no interaction 'nope'") as info:
        mw_feedback(mw, Feedback(interaction_id="nope", action="approve"))
    assert info.value.http_status == 404


def test_feedback_needs_its_fields():
    with pytest.raises(ValueError, match="edited_output"):
        Feedback(interaction_id="x", action="edit")
    with pytest.raises(ValueError, match="reason"):
        Feedback(interaction_id="x", action="reject", reason="  ")
    with pytest.raises(ValueError):
        Feedback(interaction_id="x", action="approve", score=6)


def test_a_failed_interaction_cannot_be_approved_but_an_edit_puts_it_in_memory(mw, fake_llm):
    fake_llm.enqueue("no json", "still none", "nothing")
    failed = mw.ask(A, domain="data_ops", raise_on_invalid=False)
    assert failed.status == "failed" and mw.store.get([failed.interaction_id]) == []
    with pytest.raises(RequestError, match="no valid answer to approve"):
        mw_feedback(mw, Feedback(interaction_id=failed.interaction_id, action="approve"))
    mw_feedback(mw, Feedback(interaction_id=failed.interaction_id, action="edit", edited_output=plan()))
    mem = mw.store.get([failed.interaction_id])[0]
    assert (mem.status, mem.source, mem.tenant, mem.domain) == ("approved", "edited", "default", "data_ops")
    assert selected(probe(mw, fake_llm), failed.interaction_id) is not None


def test_free_text_edit_and_reject_of_a_failed_answer(mw, fake_llm):
    fake_llm.enqueue("Use SUM.")
    first = mw.ask("How do I add a column of numbers?", domain="assistant")
    assert mw.store.get([first.interaction_id])[0].status == "pending"
    mw_feedback(mw, Feedback(interaction_id=first.interaction_id, action="edit",
                                edited_output="Type =SUM(A2:A10) in the cell below the numbers."))
    mem = mw.store.get([first.interaction_id])[0]
    assert mem.answer.startswith("Type =SUM") and mem.status == "approved"
