"""Migration 0009: Open WebUI's chat and message ids are indexed columns of the journal, backfilled from the JSON.

The server records the ids Open WebUI forwards (``X-OpenWebUI-Chat-Id`` / ``-Message-Id``) in
``Interaction.request["openwebui"]``; feedback sync used to find a chat's interactions by reading the whole
journal and picking the ids out of each body. Now ``InteractionLog.in_chat`` asks the ``interactions_chat``
index."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from rag_middleware.learning.feedback_sync import _Journal, match_interaction
from rag_middleware.learning.openwebui import Judgement
from rag_middleware.memory import db
from rag_middleware.memory.interaction_log import InteractionLog
from rag_middleware.records import Interaction

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
MIGRATION = "0009_interaction_chat_ids"


def _interaction(iid: str, hours: int, openwebui=None, **extra) -> Interaction:
    request = {"input": "q"} if openwebui is None else {"input": "q", "openwebui": openwebui}
    return Interaction(id=iid, created_at=T0 + timedelta(hours=hours), tenant="default", domain="data_ops",
                       status="validated", request=request, question=f"question {iid}", template_version="v1",
                       model="m", backend="fake", output_text=f"answer {iid}", **extra)


OLD = [
    _interaction("a1", 1, {"chat_id": "chat-a", "message_id": "msg-1", "user_id": "u"}),
    _interaction("a2", 2, {"chat_id": "chat-a", "message_id": "msg-2", "user_id": "u"}),
    _interaction("b1", 3, {"chat_id": "chat-b", "message_id": "msg-1"}),
    _interaction("c0", 4, {"chat_id": "chat-c"}),  # no message id
    _interaction("none", 5),  # not from Open WebUI
    _interaction("empty", 6, {"chat_id": "", "message_id": ""}),
    _interaction("odd", 7, "not a dict"),
    _interaction("num", 8, {"chat_id": 42, "message_id": ["x"]}),  # not strings: not ids
]


def _old_database(path) -> None:
    """A database as the journal wrote it before 0009: every earlier migration, the ids only in the JSON body."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, sql in db.MIGRATIONS:
        if name == MIGRATION:
            break
        for statement in db._statements(sql):
            conn.execute(statement)
        conn.execute("INSERT INTO _migrations VALUES (?, '2026-01-01T00:00:00.000Z')", (name,))
    for it in OLD:
        conn.execute("INSERT INTO interactions (id, created_at, tenant, domain, status, question, template_version,"
                     " model, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (it.id, it.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), it.tenant, it.domain, it.status,
                      it.question, it.template_version, it.model, it.model_dump_json()))
    conn.close()


def _ids(path) -> dict[str, tuple[str | None, str | None]]:
    conn = db.connect(path)
    try:
        return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, chat_id, message_id FROM interactions")}
    finally:
        conn.close()


EXPECTED = {"a1": ("chat-a", "msg-1"), "a2": ("chat-a", "msg-2"), "b1": ("chat-b", "msg-1"), "c0": ("chat-c", None),
            "none": (None, None), "empty": (None, None), "odd": (None, None), "num": (None, None)}


def test_the_migration_backfills_the_ids_of_old_rows(tmp_path):
    old = tmp_path / "old.db"
    _old_database(old)
    assert MIGRATION in dict(db.MIGRATIONS)
    assert _ids(old) == EXPECTED

    fresh = tmp_path / "fresh.db"  # the columns a new write fills agree with the backfill
    log = InteractionLog(fresh)
    for it in OLD:
        log.write(it)
    log.close()
    assert _ids(fresh) == EXPECTED

    journal = InteractionLog(old)
    try:
        assert [i.id for i in journal.in_chat("chat-a")] == ["a2", "a1"]  # newest first
        assert [i.id for i in journal.in_chat("chat-a", message_id="msg-1")] == ["a1"]
    finally:
        journal.close()


def test_the_migration_is_idempotent(tmp_path):
    path = tmp_path / "old.db"
    _old_database(path)
    first = _ids(path)
    conn = db.connect(path)  # the second run: 0009 is recorded, nothing is applied again
    try:
        db._migrate(conn)  # and a third, on an open connection
        applied = [r[0] for r in conn.execute("SELECT name FROM _migrations WHERE name = ?", (MIGRATION,))]
        indexes = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'"
                                              " AND name = 'interactions_chat'")]
    finally:
        conn.close()
    assert applied == [MIGRATION] and indexes == ["interactions_chat"]
    assert _ids(path) == first == EXPECTED
    log = InteractionLog(path)  # a fresh database too, opened twice
    log.close()
    assert [i.id for i in InteractionLog(path).in_chat("chat-b")] == ["b1"]


@pytest.fixture
def journal(tmp_path):
    log = InteractionLog(tmp_path / "rag.db")
    for it in OLD:
        log.write(it)
    yield log
    log.close()


def test_the_lookup_returns_the_chats_interactions_by_the_index(journal):
    assert [i.id for i in journal.in_chat("chat-b")] == ["b1"]
    assert [i.id for i in journal.in_chat("chat-a", message_id="msg-2")] == ["a2"]
    assert journal.in_chat("chat-a", message_id="msg-9") == [] and journal.in_chat("nope") == []
    assert journal.in_chat("") == []
    assert [i.id for i in journal.in_chat("chat-a", since=T0 + timedelta(hours=2))] == ["a2"]
    assert [i.id for i in journal.in_chat("chat-a", limit=1)] == ["a2"]
    plan = " ".join(r[-1] for r in journal._conn.execute(
        "EXPLAIN QUERY PLAN SELECT body FROM interactions WHERE replay_of IS NULL AND chat_id = ?"
        " ORDER BY created_at DESC", ("chat-a",)))
    assert "interactions_chat" in plan, plan


def test_ids_noted_later_and_replays(journal):
    """The server notes the ids on an interaction already written (a rewrite): the columns follow. A replay
    keeps its original's request but is not traffic, so the lookup leaves it out."""
    late = _interaction("late", 9)
    journal.write(late)
    assert journal.in_chat("chat-d") == []
    late.request["openwebui"] = {"chat_id": "chat-d", "message_id": "msg-5"}
    journal.write(late)
    journal.write(_interaction("replay", 10, {"chat_id": "chat-d", "message_id": "msg-5"}, replay_of="late"))
    assert [i.id for i in journal.in_chat("chat-d")] == ["late"]
    assert [i.id for i in journal.in_chat("chat-d", replays=True)] == ["replay", "late"]


def test_feedback_sync_finds_the_interaction_by_chat_and_message_without_a_scan(journal, monkeypatch):
    def no_scan(**_):
        raise AssertionError("the journal was scanned")

    monkeypatch.setattr(journal, "list", no_scan)
    mw = SimpleNamespace(journal=journal)
    judgement = Judgement(chat_id="chat-a", message_id="msg-1", user_id="u", model="data_ops:latest",
                          question="question a1", answer="answer a1", rating=1)
    found, matched_by, why = match_interaction(judgement, _Journal(mw), claimed=set())
    assert (found.id, matched_by, why) == ("a1", "chat+message", "")
