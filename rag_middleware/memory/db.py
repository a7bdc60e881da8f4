"""SQLite connection and named, append-only schema migrations (shared by store, journal, caches).

A migration is applied once and recorded in ``_migrations``; never edit one that has shipped, add a new one.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataDirError, StoreError

__all__ = ["MIGRATIONS", "connect", "sqlite_errors"]

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_memory",
        """
        CREATE TABLE memory (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            domain TEXT NOT NULL,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT '',
            question TEXT NOT NULL,
            answer TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            wrong TEXT NOT NULL DEFAULT '',
            score REAL,
            template_version TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}',
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL
        );
        CREATE INDEX memory_scope ON memory (tenant, domain, kind, status);
        CREATE INDEX memory_created ON memory (created_at);
        """,
    ),
    (
        "0002_embedding_cache",
        """
        CREATE TABLE embedding_cache (
            model TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (model, content_hash)
        ) WITHOUT ROWID;
        """,
    ),
    (
        "0003_interactions",
        """
        CREATE TABLE interactions (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            tenant TEXT NOT NULL,
            domain TEXT NOT NULL,
            status TEXT NOT NULL,
            question TEXT NOT NULL,
            template_version TEXT NOT NULL,
            model TEXT NOT NULL,
            body TEXT NOT NULL
        );
        CREATE INDEX interactions_scope ON interactions (tenant, domain, created_at);
        """,
    ),
    (
        "0004_memory_generation",
        """
        CREATE TABLE memory_generation (id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL);
        INSERT INTO memory_generation (id, generation) VALUES (1, 0);
        CREATE TRIGGER memory_generation_insert AFTER INSERT ON memory
            BEGIN UPDATE memory_generation SET generation = generation + 1 WHERE id = 1; END;
        CREATE TRIGGER memory_generation_update AFTER UPDATE ON memory
            BEGIN UPDATE memory_generation SET generation = generation + 1 WHERE id = 1; END;
        CREATE TRIGGER memory_generation_delete AFTER DELETE ON memory
            BEGIN UPDATE memory_generation SET generation = generation + 1 WHERE id = 1; END;
        """,
    ),
    (
        "0005_outbox",
        """
        CREATE TABLE outbox (
            record_id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            op TEXT NOT NULL CHECK (op IN ('upsert', 'update', 'delete')),
            payload TEXT NOT NULL DEFAULT '{}',
            vector BLOB,
            enqueued_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX outbox_seq ON outbox (seq);
        """,
    ),
    (
        "0007_template_versions",
        """
        CREATE TABLE template_versions (
            version TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT '',
            files INTEGER NOT NULL
        );
        CREATE TABLE template_labels (
            label TEXT PRIMARY KEY,
            version TEXT NOT NULL REFERENCES template_versions (version),
            updated_at TEXT NOT NULL
        );
        CREATE TABLE template_label_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            label TEXT NOT NULL,
            version TEXT NOT NULL,
            previous TEXT,
            at TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT ''
        );
        """,
    ),
    (
        "0006_feedback",
        """
        CREATE TABLE feedback (
            interaction_id TEXT NOT NULL,
            reviewer TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('approve', 'edit', 'reject')),
            score INTEGER CHECK (score IS NULL OR score BETWEEN 1 AND 5),
            notes TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT '',
            edited_output TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (interaction_id, reviewer)
        );
        CREATE INDEX feedback_updated ON feedback (interaction_id, updated_at);
        """,
    ),
    (
        # what stats, A/B and the journal's filters read, as columns written with each interaction (until now
        # they were picked out of the JSON body by path, and a renamed field silently read as missing)
        "0008_interaction_columns",
        """
        ALTER TABLE interactions ADD COLUMN variant TEXT NOT NULL DEFAULT '';
        ALTER TABLE interactions ADD COLUMN replay_of TEXT;
        ALTER TABLE interactions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE interactions ADD COLUMN total_ms REAL;
        ALTER TABLE interactions ADD COLUMN prompt_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE interactions ADD COLUMN completion_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE interactions ADD COLUMN confidence REAL;
        UPDATE interactions SET
            variant = coalesce(json_extract(body, '$.variant'), ''),
            replay_of = json_extract(body, '$.replay_of'),
            attempts = coalesce(json_array_length(body, '$.attempts'), 0),
            total_ms = json_extract(body, '$.timings_ms.total'),
            prompt_tokens = coalesce(json_extract(body, '$.prompt_tokens'), 0),
            completion_tokens = coalesce(json_extract(body, '$.completion_tokens'), 0),
            confidence = json_extract(body, '$.confidence');
        """,
    ),
    (
        # Open WebUI's chat and message ids (``request.openwebui``, forwarded as X-OpenWebUI-* headers), as
        # indexed columns: feedback sync looks interactions up by chat id instead of scanning the journal
        "0009_interaction_chat_ids",
        """
        ALTER TABLE interactions ADD COLUMN chat_id TEXT;
        ALTER TABLE interactions ADD COLUMN message_id TEXT;
        UPDATE interactions SET
            chat_id = CASE WHEN json_type(body, '$.request.openwebui.chat_id') = 'text'
                           THEN nullif(json_extract(body, '$.request.openwebui.chat_id'), '') END,
            message_id = CASE WHEN json_type(body, '$.request.openwebui.message_id') = 'text'
                              THEN nullif(json_extract(body, '$.request.openwebui.message_id'), '') END
        WHERE json_type(body, '$.request.openwebui') = 'object';
        CREATE INDEX interactions_chat ON interactions (chat_id, message_id) WHERE chat_id IS NOT NULL;
        """,
    ),
]

_init_lock = threading.Lock()


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the database in WAL mode and apply pending migrations."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataDirError(f"data dir {path.parent} cannot be created: {exc.strerror or exc}") from None
    try:
        conn = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        with _init_lock:
            _migrate(conn)
    except sqlite3.Error as exc:  # OperationalError, and DatabaseError for a file that is not a database
        msg = " ".join(str(exc).split()) or type(exc).__name__
        if "readonly" in msg or "unable to open" in msg or "disk I/O" in msg:
            raise DataDirError(f"data dir {path.parent} is not writable ({msg})") from None
        raise StoreError(f"cannot open database {path}: {msg}") from None
    return conn


@contextlib.contextmanager
def sqlite_errors(what: str) -> Iterator[None]:
    """sqlite3's errors raised inside as :class:`StoreError` saying what failed, on one line. Also a decorator."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{what} failed: {' '.join(str(exc).split()) or type(exc).__name__}") from None


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone() is None:
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
                    (name,),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _statements(sql: str) -> list[str]:
    """Split a migration into statements; a CREATE TRIGGER ... END; block stays whole."""
    out: list[str] = []
    current = ""
    for piece in sql.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                out.append(current.strip())
            current = ""
    return out
