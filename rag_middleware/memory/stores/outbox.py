"""A local SQLite outbox in front of a remote store (Weaviate): writes are durable before they are sent.

Every upsert, update and delete is first committed to the ``outbox`` table (one pending operation per record id,
the newest wins), then flushed to the remote store: at once when it is reachable, otherwise by a background
thread that retries with exponential backoff (tenacity) until the remote store is back. The remote store writes
by ``uuid5(record id)``, so a write sent twice lands once: an outage loses nothing and duplicates nothing.
Reads go to the remote store; :meth:`OutboxStore.get` also sees writes still waiting in the outbox.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tenacity import RetryError, Retrying, retry_if_exception_type, wait_exponential

from ..db import connect
from ...errors import StoreError, StoreUnavailableError
from ...records import MemoryFilter, MemoryRecord, SearchHit, iso, utcnow
from .base import UpsertResult

if TYPE_CHECKING:
    from ...config import OutboxSettings
    from .weaviate import WeaviateStore

__all__ = ["OutboxStore"]

log = logging.getLogger(__name__)
_TENANT = "__tenant__"  # in a queued update's payload: the tenant it is scoped to


class OutboxStore:
    """MemoryStore that queues writes in SQLite and forwards them to ``inner``."""

    def __init__(self, inner: WeaviateStore, db_path: Path, settings: OutboxSettings, *,
                 background: bool = True) -> None:
        self.inner = inner
        self.name = f"{inner.name}+outbox"
        self.settings = settings
        self._conn = connect(Path(db_path))
        self._db_lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._outage_logged = False
        self._log_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="rag-mw-outbox", daemon=True)
            self._thread.start()

    # -- the queue -----------------------------------------------------------------------------------

    def _enqueue(self, rows: list[tuple[str, str, str, bytes | None]]) -> None:
        """rows: (record_id, op, payload JSON, vector blob). One pending operation per id; the newest wins."""
        now = iso(utcnow())
        with self._db_lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                seq = int(self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0])
                for offset, (rid, op, payload, blob) in enumerate(rows, start=1):
                    self._conn.execute(
                        "INSERT INTO outbox (record_id, seq, op, payload, vector, enqueued_at) "
                        "VALUES (?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT(record_id) DO UPDATE SET seq = excluded.seq, op = excluded.op, "
                        "payload = excluded.payload, vector = excluded.vector, enqueued_at = excluded.enqueued_at, "
                        "attempts = 0, last_error = ''",
                        (rid, seq + offset, op, payload, blob, now),
                    )
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._conn.execute("ROLLBACK")
                raise StoreError(f"outbox write failed: {exc}") from None

    def _pending(self, ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any], bytes | None]]:
        out: dict[str, tuple[str, dict[str, Any], bytes | None]] = {}
        with self._db_lock:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for rid, op, payload, blob in self._conn.execute(
                        f"SELECT record_id, op, payload, vector FROM outbox WHERE record_id IN ({marks})", chunk):
                    out[rid] = (op, json.loads(payload), blob)
        return out

    def depth(self) -> int:
        """Writes waiting to reach the remote store."""
        with self._db_lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def ping(self) -> str:
        """One cheap round trip to the remote store, for /rag/health (raises StoreError when it is down)."""
        return self.inner.ping()

    def status(self) -> dict[str, Any]:
        """Depth, oldest waiting write and the last error, for /rag/health."""
        with self._db_lock:
            depth, oldest = self._conn.execute("SELECT COUNT(*), MIN(enqueued_at) FROM outbox").fetchone()
            row = self._conn.execute(
                "SELECT last_error FROM outbox WHERE last_error != '' ORDER BY seq DESC LIMIT 1").fetchone()
        return {"depth": int(depth), "oldest": oldest, "last_error": row[0] if row else ""}

    def flush(self) -> UpsertResult:
        """Send every queued write, oldest first, in batches. An outage stops the flush at once (StoreUnavailableError);
        a write the remote store refuses stays queued with its error, the others go on, and a StoreError naming the
        refused ones is raised at the end. Counts are of what this call delivered."""
        total = UpsertResult(inserted=0, updated=0, unchanged=0, deleted=0)
        refused: dict[str, str] = {}
        with self._flush_lock:
            after = 0
            while True:
                with self._db_lock:
                    rows = self._conn.execute(
                        "SELECT record_id, seq, op, payload, vector FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                        (after, self.settings.batch_size),
                    ).fetchall()
                if not rows:
                    break
                after = rows[-1][1]
                try:
                    self._send(rows, total)
                    sent = rows
                except StoreUnavailableError:
                    raise
                except StoreError:  # one by one, so a refused write does not hold back the rest
                    sent = []
                    for row in rows:
                        try:
                            self._send([row], total)
                            sent.append(row)
                        except StoreUnavailableError:
                            raise
                        except StoreError as exc:
                            refused[row[0]] = exc.one_line()[:500]
                            with self._db_lock:
                                self._conn.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ? "
                                                   "WHERE record_id = ? AND seq = ?", (refused[row[0]], row[0], row[1]))
                with self._db_lock:  # a row written again meanwhile has a new seq and stays
                    self._conn.executemany("DELETE FROM outbox WHERE record_id = ? AND seq = ?",
                                           [(r[0], r[1]) for r in sent])
        if refused:
            rid, error = next(iter(refused.items()))
            raise StoreError(f"{len(refused)} queued write(s) refused and kept in the outbox; first {rid}: {error}")
        return total

    def _send(self, rows: list[tuple], total: UpsertResult) -> None:
        upserts = [r for r in rows if r[2] == "upsert"]
        if upserts:
            records = [MemoryRecord.model_validate_json(r[3]) for r in upserts]
            vectors = np.stack([np.frombuffer(r[4], dtype=np.float32) for r in upserts])
            for key, value in self.inner.upsert(records, vectors).items():
                total[key] = total.get(key, 0) + value
        for rid, _, _, payload, _ in (r for r in rows if r[2] == "update"):
            values = json.loads(payload)
            self.inner.update(rid, tenant=values.pop(_TENANT, None), **values)
        deletes = [r[0] for r in rows if r[2] == "delete"]
        if deletes:
            total["deleted"] += self.inner.delete(deletes)

    def _try_flush(self) -> UpsertResult | None:
        """Flush now; None when the remote store is unreachable (the writes stay queued)."""
        try:
            result = self.flush()
        except StoreUnavailableError as exc:
            with self._log_lock:  # once per outage, whichever thread sees it first
                first, self._outage_logged = not self._outage_logged, True
            if first:
                log.warning("memory store unreachable, %d write(s) kept in the outbox until it is back: %s",
                            self.depth(), exc.one_line())
            return None
        with self._log_lock:
            back, self._outage_logged = self._outage_logged, False
        if back:
            log.info("memory store reachable again; the outbox is drained")
        return result

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.flush_interval)
            self._wake.clear()
            if self._stop.is_set() or not self.depth():
                continue
            retrying = Retrying(
                retry=retry_if_exception_type(StoreError),
                wait=wait_exponential(multiplier=self.settings.backoff_initial, max=self.settings.backoff_max),
                stop=lambda _state: self._stop.is_set(), sleep=self._stop.wait, reraise=False,
            )
            try:
                for attempt in retrying:
                    with attempt:
                        if self._try_flush() is None:
                            raise StoreUnavailableError("remote store unreachable")
            except RetryError:
                pass  # closing
            except Exception:  # noqa: BLE001 - the flusher must survive anything; the rows stay queued
                log.exception("outbox flusher failed")

    # -- Protocol ------------------------------------------------------------------------------------

    def upsert(self, records: Sequence[MemoryRecord], vectors: np.ndarray) -> UpsertResult:
        vectors = self.inner.check(records, vectors)
        if not len(records):
            return UpsertResult(inserted=0, updated=0, unchanged=0)
        self._enqueue([(r.id, "upsert", r.model_dump_json(), v.tobytes())
                       for r, v in zip(records, vectors, strict=True)])
        result = self._try_flush()
        if result is None:
            return UpsertResult(inserted=0, updated=0, unchanged=0, queued=len(records))
        result.pop("deleted", None)
        return result

    def search(self, vector: np.ndarray, *, filters: MemoryFilter, limit: int,
               text: str | None = None) -> list[SearchHit]:
        return self.inner.search(vector, filters=filters, limit=limit, text=text)

    def get(self, ids: Sequence[str], *, tenant: str | None = None) -> list[MemoryRecord]:
        pending = self._pending(ids)
        try:
            found = {r.id: r for r in self.inner.get(ids, tenant=tenant)}
        except StoreUnavailableError:
            if not ids or any(pending.get(i, ("",))[0] != "upsert" for i in ids):
                raise
            found = {}
        for rid, (op, payload, _) in pending.items():
            if op == "upsert":
                if tenant is not None and payload.get("tenant") != tenant:
                    continue
                found[rid] = MemoryRecord.model_validate(payload)
            elif op == "delete":
                found.pop(rid, None)
            elif rid in found:
                found[rid] = found[rid].model_copy(update={k: v for k, v in payload.items() if k != _TENANT})
        return [found[i] for i in ids if i in found]

    def update(self, record_id: str, *, tenant: str | None = None, **fields: Any) -> bool:
        values = self.inner.update_values(fields)
        if not values:
            return False
        op, payload, blob = self._pending([record_id]).get(record_id, ("", {}, None))
        if op == "delete":
            return False
        if op == "upsert":
            if tenant is not None and payload.get("tenant") != tenant:
                return False
            merged = MemoryRecord.model_validate({**payload, **values, "updated_at": utcnow()})
            self._enqueue([(record_id, "upsert", merged.model_dump_json(), blob)])
        elif op == "update":
            self._enqueue([(record_id, "update", json.dumps({**payload, **values}), None)])
        else:
            try:
                return self.inner.update(record_id, tenant=tenant, **values)
            except StoreUnavailableError:
                scoped = {**values, _TENANT: tenant} if tenant is not None else values
                self._enqueue([(record_id, "update", json.dumps(scoped), None)])
                return True  # queued: applied when the remote store is back (a no-op if the id is unknown)
        self._try_flush()
        return True

    def delete(self, ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return 0
        only_queued = sum(1 for op, _, _ in self._pending(ids).values() if op == "upsert")
        self._enqueue([(rid, "delete", "{}", None) for rid in ids])
        result = self._try_flush()
        return only_queued if result is None else max(result["deleted"], only_queued)

    def count(self, filters: MemoryFilter | None = None) -> int:
        return self.inner.count(filters)

    def list(self, filters: MemoryFilter | None = None, *, limit: int = 50, offset: int = 0) -> list[MemoryRecord]:
        return self.inner.list(filters, limit=limit, offset=offset)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.inner.available and self.depth():
            self._try_flush()  # last chance to deliver; whatever is left waits for the next start
        self.inner.close()
        with self._db_lock:
            self._conn.close()
