"""The interaction log: one durable SQLite row per call (validated, failed or errored), with every attempt."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from .db import connect, sqlite_errors
from ..errors import StoreError
from ..records import Interaction, iso

__all__ = ["InteractionLog", "interactions_where"]


def interactions_where(*, domain: str | None = None, tenant: str | None = None, since: datetime | None = None,
                       until: datetime | None = None, status: str | None = None, replays: bool = False,
                       alias: str = "") -> tuple[str, list[Any]]:
    """A ``WHERE`` clause (or "") and its parameters over the interactions table (``alias`` e.g. "i.")."""
    clauses: list[str] = [] if replays else [f"{alias}replay_of IS NULL"]
    params: list[Any] = []
    for col, value in (("domain", domain), ("tenant", tenant), ("status", status)):
        if value is not None:
            clauses.append(f"{alias}{col} = ?")
            params.append(value)
    if since is not None:
        clauses.append(f"{alias}created_at >= ?")
        params.append(iso(since))
    if until is not None:
        clauses.append(f"{alias}created_at < ?")
        params.append(iso(until))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


#: columns that keep their first value when an interaction is written again (the rest follow the new body)
_KEPT_ON_REWRITE = ("id", "created_at", "tenant", "domain", "question", "template_version", "model")


def _chat_id(interaction: Interaction, key: str) -> str | None:
    """One of Open WebUI's ids recorded on the interaction (``request["openwebui"][key]``), a non-empty string,
    else None; the same rule as the backfill of migration ``0009_interaction_chat_ids``."""
    ids = interaction.request.get("openwebui") if isinstance(interaction.request, dict) else None
    value = ids.get(key) if isinstance(ids, dict) else None
    return value if isinstance(value, str) and value else None


def _columns(interaction: Interaction) -> dict[str, Any]:
    """The row of one interaction: its body, and the fields stats, A/B, the filters and feedback sync read, as
    columns (migrations ``0008_interaction_columns``, ``0009_interaction_chat_ids``), so they never depend on a
    path into the JSON."""
    return {
        "id": interaction.id, "created_at": iso(interaction.created_at), "tenant": interaction.tenant,
        "domain": interaction.domain, "status": interaction.status, "question": interaction.question,
        "template_version": interaction.template_version, "model": interaction.model,
        "variant": interaction.variant, "replay_of": interaction.replay_of, "attempts": len(interaction.attempts),
        "total_ms": interaction.timings_ms.get("total"), "prompt_tokens": interaction.prompt_tokens,
        "completion_tokens": interaction.completion_tokens, "confidence": interaction.confidence,
        "chat_id": _chat_id(interaction, "chat_id"), "message_id": _chat_id(interaction, "message_id"),
        "body": interaction.model_dump_json(),
    }


class InteractionLog:
    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        self._lock = threading.Lock()

    def write(self, interaction: Interaction) -> None:
        """Idempotent by id: writing the same interaction again replaces it."""
        values = _columns(interaction)
        names = ", ".join(values)
        updated = ", ".join(f"{name} = excluded.{name}" for name in values if name not in _KEPT_ON_REWRITE)
        with self._lock:
            try:
                self._conn.execute(
                    f"INSERT INTO interactions ({names}) VALUES ({', '.join('?' * len(values))})"
                    f" ON CONFLICT(id) DO UPDATE SET {updated}",
                    tuple(values.values()),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot record interaction {interaction.id}: {' '.join(str(exc).split())}") from None

    def get(self, interaction_id: str) -> Interaction | None:
        with self._lock, sqlite_errors(f"reading interaction {interaction_id}"):
            row = self._conn.execute("SELECT body FROM interactions WHERE id = ?", (interaction_id,)).fetchone()
        return Interaction.model_validate_json(row[0]) if row else None

    def list(self, *, domain: str | None = None, tenant: str | None = None, since: datetime | None = None,
             until: datetime | None = None, status: str | None = None, limit: int = 100,
             replays: bool = False) -> list[Interaction]:
        """Newest first. Replays are left out unless ``replays``: they are not traffic."""
        where, params = interactions_where(domain=domain, tenant=tenant, since=since, until=until, status=status,
                                           replays=replays)
        with self._lock, sqlite_errors("listing interactions"):
            rows = self._conn.execute(
                f"SELECT body FROM interactions{where} ORDER BY created_at DESC LIMIT ?", [*params, limit]
            ).fetchall()
        return [Interaction.model_validate_json(r[0]) for r in rows]

    def in_chat(self, chat_id: str, *, message_id: str | None = None, since: datetime | None = None,
                limit: int = 100, replays: bool = False) -> list[Interaction]:
        """The interactions recorded with this Open WebUI chat id (and message id, if given), newest first;
        an indexed lookup (``interactions_chat``), not a scan of the journal."""
        if not chat_id:
            return []
        where, params = interactions_where(since=since, replays=replays)
        clauses = [where.removeprefix(" WHERE ")] if where else []
        clauses.append("chat_id = ?")
        params.append(chat_id)
        if message_id is not None:
            clauses.append("message_id = ?")
            params.append(message_id)
        with self._lock, sqlite_errors(f"looking up the interactions of chat {chat_id}"):
            rows = self._conn.execute(
                f"SELECT body FROM interactions WHERE {' AND '.join(clauses)} ORDER BY created_at DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [Interaction.model_validate_json(r[0]) for r in rows]

    def count(self) -> int:
        with self._lock, sqlite_errors("counting interactions"):
            return int(self._conn.execute("SELECT COUNT(*) FROM interactions").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
