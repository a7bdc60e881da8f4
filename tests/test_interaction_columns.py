"""Migration 0008: what stats, A/B and the journal's filters read are columns, backfilled from older rows' JSON."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

from rag_middleware.analytics.stats import compute, load_rows
from rag_middleware.memory import db
from rag_middleware.memory.interaction_log import InteractionLog
from rag_middleware.records import Attempt, Interaction

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _interactions() -> list[Interaction]:
    out = []
    for i in range(12):
        status = ("validated", "failed", "answered", "error")[i % 4]
        attempts = [Attempt(number=n + 1, messages=[], errors=["steps.0.op: bad"] if n < i % 3 else [],
                            error_kind="validation" if n < i % 3 else "") for n in range(1 + i % 3)]
        out.append(Interaction(
            id=f"i{i}", created_at=T0 + timedelta(hours=5 * i), tenant="default",
            domain="data_ops" if i % 2 else "shop",
            status=status, request={}, question=f"question {i}", template_version="v1", model="m", backend="fake",
            attempts=attempts, variant=("", "a", "b")[i % 3], timings_ms={"total": 100.0 + 7 * i} if i != 5 else {},
            prompt_tokens=10 * i, completion_tokens=i, confidence=None if i % 4 else 0.1 * i,
            replay_of="i0" if i == 11 else None))
    return out


def _old_database(path) -> None:
    """A database as the journal wrote it before 0008: the JSON body and the first columns only."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, sql in db.MIGRATIONS:
        if name == "0008_interaction_columns":
            continue
        for statement in db._statements(sql):
            conn.execute(statement)
        conn.execute("INSERT INTO _migrations VALUES (?, '2026-01-01T00:00:00.000Z')", (name,))
    for it in _interactions():
        conn.execute("INSERT INTO interactions (id, created_at, tenant, domain, status, question, template_version,"
                     " model, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (it.id, it.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), it.tenant, it.domain, it.status,
                      it.question, it.template_version, it.model, it.model_dump_json()))
    conn.close()


def _stats(path) -> dict:
    conn = db.connect(path)
    try:
        return compute(load_rows(conn), by="variant")
    finally:
        conn.close()


def test_an_old_database_migrates_and_gives_the_same_stats(tmp_path):
    fresh = tmp_path / "fresh.db"
    log = InteractionLog(fresh)
    for it in _interactions():
        log.write(it)
    log.close()
    old = tmp_path / "old.db"
    _old_database(old)

    assert _stats(old) == _stats(fresh)
    stats = _stats(old)
    assert stats["overall"]["requests"] == 11  # the replay is not traffic
    assert {g["key"] for g in stats["groups"]} == {"(none)", "a", "b"}
    conn = db.connect(old)
    row = conn.execute("SELECT variant, replay_of, attempts, total_ms, prompt_tokens, completion_tokens, confidence"
                       " FROM interactions WHERE id = 'i11'").fetchone()
    assert row == ("b", "i0", 3, 177.0, 110, 11, None)
    assert conn.execute("SELECT total_ms, confidence FROM interactions WHERE id = 'i5'").fetchone() == (None, None)
    assert conn.execute("SELECT confidence FROM interactions WHERE id = 'i8'").fetchone()[0] == 0.8
    conn.close()
    assert [i.id for i in InteractionLog(old).list(limit=100)] == [f"i{i}" for i in range(10, -1, -1)]


def test_a_renamed_json_field_no_longer_breaks_stats(tmp_path):
    path = tmp_path / "rag.db"
    log = InteractionLog(path)
    for it in _interactions():
        log.write(it)
    before = _stats(path)
    conn = db.connect(path)
    for rid, body in conn.execute("SELECT id, body FROM interactions").fetchall():
        data = json.loads(body)
        for old, new in (("variant", "ab_variant"), ("timings_ms", "timings"), ("replay_of", "replays"),
                         ("prompt_tokens", "tokens_in"), ("confidence", "sureness")):
            data[new] = data.pop(old)
        conn.execute("UPDATE interactions SET body = ? WHERE id = ?", (json.dumps(data), rid))
    conn.close()
    assert _stats(path) == before


def test_rewriting_an_interaction_rewrites_its_columns(tmp_path):
    log = InteractionLog(tmp_path / "rag.db")
    first = _interactions()[1]
    log.write(first)
    log.write(first.model_copy(update={"status": "validated", "variant": "b", "attempts": first.attempts * 2,
                                       "timings_ms": {"total": 9.0}, "confidence": 0.9}))
    conn = db.connect(tmp_path / "rag.db")
    assert conn.execute("SELECT status, variant, attempts, total_ms, confidence FROM interactions").fetchall() == [
        ("validated", "b", 4, 9.0, 0.9)]
