"""feedback sync maps Open WebUI's ratings by the chat and message ids our server recorded on the interaction.

Open WebUI, with ``ENABLE_FORWARD_USER_INFO_HEADERS=true`` (and the message id as a custom connection header),
sends ``X-OpenWebUI-Chat-Id`` / ``X-OpenWebUI-Message-Id`` with each chat request; the server keeps them in
``Interaction.request["openwebui"]``. The sync maps by our interaction id first (when Open WebUI kept it), then
by those ids, then by model, question and answer. Fixtures: the fake Open WebUI of tests/openwebui_fake.py."""

from __future__ import annotations

import json

import pytest
from conftest import FakeLLM, fake_middleware, run_cli as run, use_cli_backend
from openwebui_fake import FakeOpenWebUI, plan, chat, message_pair, new_id, rating

import owui_shapes as owui
import test_server
from rag_middleware.learning.feedback import FeedbackLog
from rag_middleware.learning.feedback_sync import sync_judgements
from rag_middleware.learning.openwebui import OpenWebUIClient, collect_judgements
from rag_middleware.memory.interaction_log import InteractionLog

USER = "0c6f3a52-7d8e-4f1b-a3c9-5e2d1b7f9a40"
QUESTION = "Columns: a, b\nsort by a"
start = test_server.start  # the live-server fixture


@pytest.fixture
def smw(settings, embedder):
    m = fake_middleware(settings, FakeLLM(default=json.dumps(plan())), embedder)
    yield m
    m.close()


@pytest.fixture
def owui_fake(httpserver):
    return FakeOpenWebUI(httpserver)


def judgements(fake):
    with OpenWebUIClient(fake.url, token="sk-test") as client:
        return collect_judgements(client)


def feedback_of(mw, iid):
    log = FeedbackLog(mw.settings.db_path)
    try:
        return log.of(iid)
    finally:
        log.close()


def ask_from(mw, chat_id: str, message_id: str | None = None, question: str = QUESTION):
    """An interaction as the server records it for a request Open WebUI sent with its ids in headers."""
    result = mw.ask(question, domain="data_ops")
    interaction = mw.journal.get(result.interaction_id)
    interaction.request["openwebui"] = {"chat_id": chat_id, "user_id": USER,
                                        **({"message_id": message_id} if message_id else {})}
    mw.journal.write(interaction)
    return result


def answer_text(result) -> str:
    return json.dumps(result.output, ensure_ascii=False)


def test_same_question_same_answer_each_message_maps_to_the_interaction_its_ids_name(smw, owui_fake):
    # three identical exchanges: only the ids tell them apart (timestamps all point at the last one)
    pairs = [message_pair(QUESTION, "the answer as Open WebUI rendered it") for _ in range(3)]
    chats = [chat(USER, [u, a]) for u, a in pairs]
    asked = [ask_from(smw, c["id"], a["id"]) for c, (_, a) in zip(chats, pairs, strict=True)]
    owui_fake.chats += chats
    owui_fake.feedbacks += [rating(chats[2], pairs[2][1]["id"], 1), rating(chats[0], pairs[0][1]["id"], 1)]

    rows = {r.key: r for r in sync_judgements(smw, judgements(owui_fake))}
    assert {k: (r.interaction_id, r.matched_by, r.outcome) for k, r in rows.items()} == {
        f"{chats[2]['id']}/{pairs[2][1]['id']}": (asked[2].interaction_id, "chat+message", "applied"),
        f"{chats[0]['id']}/{pairs[0][1]['id']}": (asked[0].interaction_id, "chat+message", "applied")}
    assert feedback_of(smw, asked[1].interaction_id) == []
    assert [f.reviewer for f in feedback_of(smw, asked[0].interaction_id)] == [f"openwebui:{USER}"]


def test_the_ids_win_over_a_question_and_answer_that_would_match_another_interaction(smw, owui_fake):
    u, a = message_pair(QUESTION, json.dumps(plan()))
    conversation = chat(USER, [u, a])
    by_ids = ask_from(smw, conversation["id"], a["id"])
    by_text = smw.ask(QUESTION, domain="data_ops")  # newer, same question and answer, no ids
    owui_fake.chats.append(conversation)
    owui_fake.feedbacks.append(rating(conversation, a["id"], -1, comment="should sort by b"))
    [row] = sync_judgements(smw, judgements(owui_fake))
    assert (row.interaction_id, row.matched_by, row.action) == (by_ids.interaction_id, "chat+message", "reject")
    assert feedback_of(smw, by_text.interaction_id) == []


def test_the_interaction_id_open_webui_kept_comes_before_the_ids(smw, owui_fake):
    u, a = message_pair(QUESTION, "rendered")
    conversation = chat(USER, [u, a])
    by_ids = ask_from(smw, conversation["id"], a["id"])
    kept = smw.ask(QUESTION, domain="data_ops")
    a["usage"]["rag_interaction_id"] = kept.interaction_id
    owui_fake.chats.append(conversation)
    owui_fake.feedbacks.append(rating(conversation, a["id"], 1))
    [row] = sync_judgements(smw, judgements(owui_fake))
    assert (row.interaction_id, row.matched_by) == (kept.interaction_id, "id")
    assert feedback_of(smw, by_ids.interaction_id) == []


def test_a_continued_message_maps_to_its_interaction_whose_answer_it_shows(smw, owui_fake):
    u, a = message_pair(QUESTION, json.dumps(plan("b")))
    conversation = chat(USER, [u, a])
    smw.backend.enqueue(json.dumps(plan("b")), json.dumps(plan("a")))
    shown = ask_from(smw, conversation["id"], a["id"])  # the answer the message shows
    ask_from(smw, conversation["id"], a["id"])  # a later request for the same message, another answer
    owui_fake.chats.append(conversation)
    owui_fake.feedbacks.append(rating(conversation, a["id"], 1))
    [row] = sync_judgements(smw, judgements(owui_fake))
    assert (row.interaction_id, row.matched_by) == (shown.interaction_id, "chat+message")


def test_without_a_message_id_the_question_and_answer_match_prefers_the_same_chat(smw, owui_fake):
    u, a = message_pair(QUESTION, json.dumps(plan()))
    conversation = chat(USER, [u, a])
    here = ask_from(smw, conversation["id"])  # only the chat id was forwarded
    elsewhere = ask_from(smw, new_id())  # newer: closer to the message's time, another chat
    a["timestamp"] = int(smw.journal.get(elsewhere.interaction_id).created_at.timestamp())
    owui_fake.chats.append(conversation)
    owui_fake.feedbacks.append(rating(conversation, a["id"], 1))
    [row] = sync_judgements(smw, judgements(owui_fake))
    assert (row.interaction_id, row.matched_by) == (here.interaction_id, "question+answer")


def test_a_regenerated_message_has_no_ids_recorded_and_falls_back_to_question_and_answer(smw, owui_fake):
    u, a = message_pair(QUESTION, json.dumps(plan()))
    conversation = chat(USER, [u, a])
    first = ask_from(smw, conversation["id"], "an-earlier-response-id")
    owui_fake.chats.append(conversation)
    owui_fake.feedbacks.append(rating(conversation, a["id"], 1))
    [row] = sync_judgements(smw, judgements(owui_fake))
    assert (row.interaction_id, row.matched_by) == (first.interaction_id, "question+answer")


def test_unmatched_ids_and_text_are_reported(smw, owui_fake):
    u, a = message_pair("Columns: a, b\nnever asked", "no")
    conversation = chat(USER, [u, a])
    owui_fake.chats.append(conversation)
    owui_fake.feedbacks.append(rating(conversation, a["id"], 1))
    [row] = sync_judgements(smw, judgements(owui_fake))
    assert (row.outcome, row.matched_by, row.interaction_id) == ("unmatched", "", None)
    assert "no interaction of domain data_ops" in row.detail


def test_sync_by_ids_is_idempotent_and_a_changed_rating_replaces(smw, owui_fake):
    u, a = message_pair(QUESTION, json.dumps(plan()))
    conversation = chat(USER, [u, a])
    asked = ask_from(smw, conversation["id"], a["id"])
    owui_fake.chats.append(conversation)
    owui_fake.feedbacks.append(rating(conversation, a["id"], 1, detailed=8))
    assert [r.outcome for r in sync_judgements(smw, judgements(owui_fake), dry_run=True)] == ["would apply"]
    assert feedback_of(smw, asked.interaction_id) == []
    assert [r.outcome for r in sync_judgements(smw, judgements(owui_fake))] == ["applied"]
    again = sync_judgements(smw, judgements(owui_fake))
    assert [(r.outcome, r.matched_by) for r in again] == [("already synced", "chat+message")]
    assert [(f.action, f.score) for f in feedback_of(smw, asked.interaction_id)] == [("approve", 4)]

    owui_fake.feedbacks[0] = rating(conversation, a["id"], -1, reason="Inaccurate information")
    assert [r.outcome for r in sync_judgements(smw, judgements(owui_fake))] == ["replaced"]
    assert [(f.action, f.reason) for f in feedback_of(smw, asked.interaction_id)] == [
        ("reject", "Inaccurate information")]


def test_millisecond_timestamps_are_read_as_seconds(smw, owui_fake):
    asked = smw.ask(QUESTION, domain="data_ops")
    u, a = message_pair(QUESTION, answer_text(asked))
    a["timestamp"] = int(smw.journal.get(asked.interaction_id).created_at.timestamp() * 1000)
    conversation = chat(USER, [u, a])
    owui_fake.chats.append(conversation)
    owui_fake.feedbacks.append(rating(conversation, a["id"], 1))
    [row] = sync_judgements(smw, judgements(owui_fake))
    assert (row.interaction_id, row.outcome) == (asked.interaction_id, "applied")


def test_through_the_server_the_forwarded_headers_map_the_rating(start, owui_fake):
    """The whole path: Open WebUI's request with its headers, the recorded ids, the rating mapped by them."""
    llm = FakeLLM(flat_prompt=True, default=json.dumps(plan("amount", ascending=False)))
    stack = start("embedded", backend=llm)
    u, a = message_pair(owui.QUESTION, "rendered differently", model="data_ops:latest")
    conversation = chat(USER, [u, a])
    headers = {**owui.FORWARDED, "X-OpenWebUI-Chat-Id": conversation["id"], "X-OpenWebUI-Message-Id": a["id"],
               "X-OpenWebUI-User-Id": USER}
    with stack.http() as c:
        r = c.post("/api/chat", json={"model": "data_ops:latest", "messages": owui.rag_chat(), "stream": False},
                   headers=headers)
    assert r.status_code == 200, r.text
    iid = r.headers["x-rag-interaction-id"]
    assert stack.mw.journal.get(iid).request["openwebui"]["message_id"] == a["id"]
    owui_fake.chats.append(conversation)
    owui_fake.feedbacks.append(rating(conversation, a["id"], 1))
    [row] = sync_judgements(stack.mw, judgements(owui_fake))
    assert (row.interaction_id, row.matched_by, row.outcome) == (iid, "chat+message", "applied")


def test_cli_sync_says_how_each_message_was_matched(cli_project, monkeypatch, capsys, owui_fake):
    use_cli_backend(monkeypatch, lambda: FakeLLM(default=json.dumps(plan())))
    code, out, _ = run(capsys, "ask", QUESTION, "--domain", "data_ops", "--json")
    by_ids = json.loads(out)["interaction_id"]
    code, out, _ = run(capsys, "ask", "Columns: a, b\nsort by b", "--domain", "data_ops", "--json")
    by_text = json.loads(out)["interaction_id"]
    u1, a1 = message_pair(QUESTION, "rendered by Open WebUI")
    u2, a2 = message_pair("Columns: a, b\nsort by b", json.dumps(plan()), parent=a1["id"])
    conversation = chat(USER, [u1, a1, u2, a2])
    journal = InteractionLog(cli_project / ".rag-mw" / "rag.db")
    recorded = journal.get(by_ids)
    recorded.request["openwebui"] = {"chat_id": conversation["id"], "message_id": a1["id"], "user_id": USER}
    journal.write(recorded)
    journal.close()
    owui_fake.chats.append(conversation)
    owui_fake.feedbacks += [rating(conversation, a1["id"], 1), rating(conversation, a2["id"], 1)]

    code, out, _ = run(capsys, "feedback", "sync", "--from-openwebui", owui_fake.url, "--token", "sk-test")
    assert code == 0 and "Matched (2)" in out and "chat+message" in out
    assert "2 Open WebUI messages: 2 applied; matched by chat+message 1, question+answer 1" in out
    code, out, _ = run(capsys, "feedback", "sync", "--from-openwebui", owui_fake.url, "--token", "sk-test", "--json")
    rows = {r["interaction_id"]: r for r in map(json.loads, out.splitlines())}
    assert {i: (r["matched_by"], r["outcome"]) for i, r in rows.items()} == {
        by_ids: ("chat+message", "already synced"), by_text: ("question+answer", "already synced")}
