"""feedback sync --from-openwebui: ratings, comments and edits made in Open WebUI reach our feedback.

A fake Open WebUI (tests/openwebui_fake.py) serves chats and rating feedback in Open WebUI's JSON shapes."""

from __future__ import annotations

import json

import pytest
from conftest import FakeLLM, fake_middleware, run_cli as run, use_cli_backend
from openwebui_fake import FakeOpenWebUI, plan, chat, edit_answer, message_pair, rating

from rag_middleware.errors import OpenWebUIAuthError, OpenWebUIUnavailableError
from rag_middleware.learning.feedback import FeedbackLog
from rag_middleware.learning.feedback_sync import sync_judgements
from rag_middleware.learning.openwebui import OpenWebUIClient, collect_judgements

USER = "5f0e3c1a-0d4b-4c71-9d1e-2b7a6e0c9f11"


def answer_text(result) -> str:
    """What our server sends Open WebUI for a validated JSON answer."""
    return json.dumps(result.output, ensure_ascii=False)


@pytest.fixture
def smw(settings, embedder):
    m = fake_middleware(settings, FakeLLM(default=json.dumps(plan())), embedder)
    yield m
    m.close()


@pytest.fixture
def owui(httpserver):
    return FakeOpenWebUI(httpserver)


def judgements(owui, token="sk-test"):
    with OpenWebUIClient(owui.url, token=token) as client:
        return collect_judgements(client)


def feedback_of(mw, iid):
    log = FeedbackLog(mw.settings.db_path)
    try:
        return log.of(iid)
    finally:
        log.close()


def test_ratings_comments_and_edits_map_to_interactions(smw, owui):
    liked = smw.ask("Columns: a, b\nsort by a", domain="data_ops")
    disliked = smw.ask("Columns: a, b\nsort by b", domain="data_ops")
    edited = smw.ask("Columns: a, b\nsort by a, newest first", domain="data_ops")
    u1, a1 = message_pair("Columns: a, b\nsort by a", answer_text(liked))
    u2, a2 = message_pair("Columns: a, b\nsort by b", answer_text(disliked), parent=a1["id"])
    u3, a3 = message_pair("Columns: a, b\nsort by a, newest first", answer_text(edited), parent=a2["id"])
    conversation = chat(USER, [u1, a1, u2, a2, u3, a3])
    owui.chats.append(conversation)
    owui.feedbacks += [rating(conversation, a1["id"], 1, detailed=9),
                       rating(conversation, a2["id"], -1, comment="should sort by b descending",
                              reason="Inaccurate information")]
    edit_answer(conversation, a3["id"], json.dumps(plan(ascending=False)))  # edited later, never rated

    rows = {r.key.split("/")[1]: r for r in sync_judgements(smw, judgements(owui))}
    assert len(rows) == 3
    assert (rows[a1["id"]].interaction_id, rows[a1["id"]].action, rows[a1["id"]].outcome) == (
        liked.interaction_id, "approve", "applied")
    assert rows[a1["id"]].matched_by == "question+answer"
    assert (rows[a2["id"]].interaction_id, rows[a2["id"]].action) == (disliked.interaction_id, "reject")
    assert (rows[a3["id"]].interaction_id, rows[a3["id"]].action) == (edited.interaction_id, "edit")

    [up] = feedback_of(smw, liked.interaction_id)
    assert (up.action, up.reviewer, up.score) == ("approve", f"openwebui:{USER}", 5)
    [down] = feedback_of(smw, disliked.interaction_id)
    assert down.action == "reject" and down.reason == "should sort by b descending"
    [fix] = feedback_of(smw, edited.interaction_id)
    assert fix.action == "edit" and fix.edited_output == plan(ascending=False)
    memory = {m.id: m for m in smw.store.get([liked.interaction_id, disliked.interaction_id, edited.interaction_id],
                                              tenant=liked.tenant)}
    assert memory[liked.interaction_id].status == "approved"
    assert (memory[disliked.interaction_id].kind, memory[disliked.interaction_id].reason) == (
        "negative", "should sort by b descending")
    assert memory[edited.interaction_id].source == "edited"


def test_the_interaction_id_open_webui_kept_wins_over_text_matching(smw, owui):
    first = smw.ask("Columns: a, b\nsort by a", domain="data_ops")
    second = smw.ask("Columns: a, b\nsort by a", domain="data_ops")  # same question, same answer
    user, reply = message_pair("Columns: a, b\nsort by a", "the answer as Open WebUI rendered it",
                               usage={"prompt_tokens": 10, "rag_interaction_id": first.interaction_id})
    conversation = chat(USER, [user, reply])
    owui.chats.append(conversation)
    owui.feedbacks.append(rating(conversation, reply["id"], 1))
    [row] = sync_judgements(smw, judgements(owui))
    assert (row.interaction_id, row.matched_by, row.outcome) == (first.interaction_id, "id", "applied")
    assert feedback_of(smw, second.interaction_id) == []


def test_same_question_twice_each_message_gets_its_own_interaction(smw, owui):
    early = smw.ask("Columns: a, b\nsort by a", domain="data_ops")
    late = smw.ask("Columns: a, b\nsort by a", domain="data_ops")
    stamp = lambda r: int(smw.journal.get(r.interaction_id).created_at.timestamp())  # noqa: E731
    u1, a1 = message_pair("Columns: a, b\nsort by a", answer_text(early), at=stamp(early))
    u2, a2 = message_pair("Columns: a, b\nsort by a", answer_text(late), at=stamp(late) + 1)
    c1, c2 = chat(USER, [u1, a1]), chat(USER, [u2, a2])
    owui.chats += [c1, c2]
    owui.feedbacks += [rating(c2, a2["id"], 1), rating(c1, a1["id"], 1)]
    rows = sync_judgements(smw, judgements(owui))
    assert {r.interaction_id for r in rows} == {early.interaction_id, late.interaction_id}


def test_unmatched_and_skipped_messages_are_reported(smw, owui):
    asked = smw.ask("Columns: a, b\nsort by a", domain="data_ops")
    u1, a1 = message_pair("Columns: a, b\nsort by a", json.dumps(plan("b")))  # an answer we never gave
    u2, a2 = message_pair("what is the capital of France?", "Paris", parent=a1["id"])  # never asked here
    u3, a3 = message_pair("Columns: a, b\nsort by a", answer_text(asked), parent=a2["id"])
    u4, a4 = message_pair("hello", "hi!", model="llama3.2:latest", parent=a3["id"])
    conversation = chat(USER, [u1, a1, u2, a2, u3, a3, u4, a4])
    owui.chats.append(conversation)
    owui.feedbacks += [rating(conversation, a1["id"], 1), rating(conversation, a2["id"], -1, comment="wrong"),
                       rating(conversation, a3["id"], -1), rating(conversation, a4["id"], 1)]
    rows = {r.key.split("/")[1]: r for r in sync_judgements(smw, judgements(owui))}
    assert rows[a1["id"]].outcome == "unmatched" and "none with this answer" in rows[a1["id"]].detail
    assert rows[a2["id"]].outcome == "unmatched" and "no interaction of domain data_ops" in rows[a2["id"]].detail
    assert rows[a4["id"]].outcome == "unmatched" and "model llama3.2:latest" in rows[a4["id"]].detail
    assert rows[a3["id"]].outcome == "skipped" and rows[a3["id"]].interaction_id == asked.interaction_id
    assert "needs a reason" in rows[a3["id"]].detail
    assert feedback_of(smw, asked.interaction_id) == []


def test_not_an_admin_reads_its_own_feedback_page_by_page(smw, httpserver):
    owui = FakeOpenWebUI(httpserver, admin=False)
    asked = smw.ask("Columns: a, b\nsort by a", domain="data_ops")
    chats = [chat(USER, list(message_pair("Columns: a, b\nsort by a", answer_text(asked)))) for _ in range(2)]
    owui.chats += chats
    for c in (chats[0], chats[1], chats[0], chats[0]):  # re-rating a message updates; here: four records
        owui.feedbacks.append(rating(c, c["current_message_id"], 1))
    found = judgements(owui)
    assert len(found) == 2 and {j.chat_id for j in found} == {c["id"] for c in chats}
    assert owui.requests.count("/api/v1/evaluations/feedbacks/user") == 2  # two pages of two
    assert all(j.answer == answer_text(asked) and j.rating == 1 for j in found)


def test_a_chat_the_token_cannot_read_is_judged_from_the_feedback_snapshot(smw, owui):
    asked = smw.ask("Columns: a, b\nsort by a", domain="data_ops")
    theirs = chat("another-user", list(message_pair("Columns: a, b\nsort by a", answer_text(asked))))
    owui.feedbacks.append(rating(theirs, theirs["current_message_id"], -1, comment="not what I asked"))
    [row] = sync_judgements(smw, judgements(owui))
    assert f"/api/v1/chats/{theirs['id']}" in owui.requests  # tried the chat as it is now, first
    assert (row.interaction_id, row.action, row.outcome) == (asked.interaction_id, "reject", "applied")
    assert feedback_of(smw, asked.interaction_id)[0].reviewer == "openwebui:another-user"


def test_client_errors_are_ours(owui):
    with pytest.raises(OpenWebUIAuthError, match=r"refused the token \(401\)"):
        judgements(owui, token="wrong")
    with OpenWebUIClient("http://127.0.0.1:9", token="t", timeout=2) as client, \
            pytest.raises(OpenWebUIUnavailableError, match="unreachable"):
        client.chats()


@pytest.fixture
def cli(cli_project, monkeypatch):
    use_cli_backend(monkeypatch, lambda: FakeLLM(default=json.dumps(plan())))
    return cli_project


def test_cli_sync_reports_then_is_idempotent(cli, capsys, owui):
    code, out, _ = run(capsys, "ask", "Columns: a, b\nsort by a", "--domain", "data_ops", "--json")
    iid = json.loads(out)["interaction_id"]
    u1, a1 = message_pair("Columns: a, b\nsort by a", json.dumps(plan()))
    u2, a2 = message_pair("never asked", "no", parent=a1["id"])
    conversation = chat(USER, [u1, a1, u2, a2])
    owui.chats.append(conversation)
    owui.feedbacks += [rating(conversation, a1["id"], 1), rating(conversation, a2["id"], 1)]
    args = ["feedback", "sync", "--from-openwebui", owui.url, "--token", "sk-test"]

    code, out, _ = run(capsys, *args, "--dry-run")
    assert code == 0 and "would apply" in out
    log = FeedbackLog(cli / ".rag-mw" / "rag.db")
    assert log.count() == 0
    code, out, _ = run(capsys, *args)
    assert code == 0 and "Matched (1)" in out and "Not matched (1)" in out and iid[:12] in out
    assert "2 Open WebUI messages: 1 applied, 1 unmatched" in out
    assert [f.action for f in log.of(iid)] == ["approve"]
    first = log.of(iid)[0].updated_at

    code, out, _ = run(capsys, *args)  # nothing changed in Open WebUI: nothing changes here
    assert code == 0 and "1 already synced, 1 unmatched" in out
    assert log.count() == 1 and log.of(iid)[0].updated_at == first

    owui.feedbacks[0] = rating(conversation, a1["id"], -1, comment="ascending is wrong")  # the user changed it
    code, out, _ = run(capsys, *args, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert {(r["outcome"], r["action"]) for r in rows} == {("replaced", "reject"), ("unmatched", "approve")}
    assert [(f.action, f.reason) for f in log.of(iid)] == [("reject", "ascending is wrong")]
    log.close()


def test_cli_sync_errors_are_one_line(cli, capsys, owui):
    code, _, err = run(capsys, "feedback", "sync", "--from-openwebui", owui.url, "--token", "nope")
    assert code == 2 and "error: Open WebUI at" in err and "refused the token (401)" in err
    code, _, err = run(capsys, "feedback", "sync", "--from-openwebui", "http://127.0.0.1:9", "--token", "t")
    assert code == 1 and "unreachable" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "feedback", "--help")
    assert code == 0 and "sync" in out and "give" in out
