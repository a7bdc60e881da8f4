"""The default memory store: SQLite (WAL) with float32 vector blobs and exact cosine search in numpy.

Vectors of a (tenant, domain) partition are held in RAM after the first search and kept in step with this
process's writes; a commit by another process (seen through ``PRAGMA data_version``) drops the cache. The
records that searches return are kept parsed too (a few thousand, most recent first): a write to a record
drops it, another process's write drops them all.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..db import connect, sqlite_errors
from ...errors import StoreError
from ...records import MemoryFilter, MemoryRecord, SearchHit, iso, utcnow
from .base import UpsertResult

__all__ = ["SQLiteStore"]

_COLUMNS = (
    "id", "tenant", "domain", "kind", "status", "source", "question", "answer", "reason", "wrong",
    "score", "template_version", "created_at", "updated_at", "meta",
)
_CONTENT = tuple(c for c in _COLUMNS if c not in ("id", "created_at", "updated_at"))
_UPDATABLE = {"status", "source", "answer", "reason", "wrong", "score", "template_version", "meta", "kind", "question"}
HIT_RECORDS = 4096  # parsed records of recent search hits kept (neighbourhoods repeat from request to request)


class _Codes:
    """Small integer codes for the values of one filter column (kind, status), so masks are integer compares."""

    def __init__(self) -> None:
        self.code: dict[str, int] = {}

    def of(self, value: str) -> int:
        code = self.code.get(value)
        if code is None:
            code = self.code[value] = len(self.code)
        return code

    def mask(self, column: np.ndarray, values: Sequence[str]) -> np.ndarray:
        wanted = [self.code[v] for v in values if v in self.code]
        if not wanted:
            return np.zeros(column.shape[0], dtype=bool)
        if len(wanted) == 1:
            return column == wanted[0]
        return np.isin(column, wanted)


class _Partition:
    """The vectors and filter columns of one (tenant, domain) as numpy arrays, with room to grow.

    Kind and status are int16 codes, created_at is epoch microseconds, so a filter is a few vectorised
    compares. The scores of the last query are kept, since one request searches examples and negatives with
    the same vector.
    """

    def __init__(self, dim: int, capacity: int = 64) -> None:
        capacity = max(capacity, 64)
        self.vectors = np.zeros((capacity, dim), dtype=np.float32)
        self.kinds = np.zeros(capacity, dtype=np.int16)
        self.statuses = np.zeros(capacity, dtype=np.int16)
        self.created = np.zeros(capacity, dtype=np.int64)
        self.alive = np.zeros(capacity, dtype=bool)
        self.n = 0
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.kind_codes = _Codes()
        self.status_codes = _Codes()
        self.version = 0  # moves when a vector changes; keys the score cache
        self._scores: tuple[bytes, int, np.ndarray] | None = None

    def _grow(self) -> None:
        capacity = self.vectors.shape[0] * 2
        for name in ("vectors", "kinds", "statuses", "created", "alive"):
            old = getattr(self, name)
            grown = np.zeros((capacity, *old.shape[1:]), dtype=old.dtype)
            grown[: self.n] = old[: self.n]
            setattr(self, name, grown)

    def put(self, rid: str, kind: str, status: str, created: str, vector: np.ndarray) -> None:
        if self.n == 0 and self.vectors.shape[1] != vector.shape[0]:
            self.vectors = np.zeros((self.vectors.shape[0], vector.shape[0]), dtype=np.float32)
        row = self.index.get(rid)
        if row is None:
            if self.n == self.vectors.shape[0]:
                self._grow()
            row = self.n
            self.n += 1
            self.index[rid] = row
            self.ids.append(rid)
        self.kinds[row] = self.kind_codes.of(kind)
        self.statuses[row] = self.status_codes.of(status)
        self.created[row] = _micros(created)
        self.alive[row] = True
        self.vectors[row] = vector
        self.version += 1

    def scores(self, query: np.ndarray) -> np.ndarray:
        key = query.tobytes()
        cached = self._scores
        if cached is not None and cached[0] == key and cached[1] == self.version:
            return cached[2]
        scores = self.vectors[: self.n] @ query  # one matmul over the partition, no row copies
        self._scores = (key, self.version, scores)
        return scores


def _micros(stamp: str) -> int:
    """Our fixed-width UTC ISO stamps as epoch microseconds (order-preserving)."""
    ts = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp()) * 1_000_000 + ts.microsecond


class SQLiteStore:
    name = "sqlite"

    def __init__(self, path: Path, *, dim: int | None = None) -> None:
        self.path = Path(path)
        self._conn = connect(self.path)
        self._lock = threading.RLock()
        self._parts: dict[tuple[str, str], _Partition] = {}
        self._hits: OrderedDict[str, MemoryRecord] = OrderedDict()  # id -> record, see _hit_records
        with sqlite_errors(f"opening memory in {self.path}"):
            self._data_version = self._read_data_version()
            self._generation = self._read_generation()
            row = self._conn.execute("SELECT dim FROM memory LIMIT 1").fetchone()
        self.dim = int(row[0]) if row else dim
        if dim is not None and self.dim != dim:
            raise StoreError(f"{self.path} holds {self.dim}-dimensional vectors, not {dim}")

    # -- helpers -------------------------------------------------------------------------------------

    def _read_data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _read_generation(self) -> int:
        return int(self._conn.execute("SELECT generation FROM memory_generation WHERE id = 1").fetchone()[0])

    def _check_foreign_writes(self) -> None:
        """Another connection committed (PRAGMA data_version moved): drop the cached partitions only if it
        changed memory (the trigger-kept generation moved), not for embedding-cache or journal writes."""
        version = self._read_data_version()
        if version != self._data_version:
            self._data_version = version
            generation = self._read_generation()
            if generation != self._generation:
                self._parts.clear()
                self._hits.clear()
                self._generation = generation

    @staticmethod
    def _row_to_record(row: sqlite3.Row | tuple) -> MemoryRecord:
        data = dict(zip(_COLUMNS, row, strict=True))
        data["meta"] = json.loads(data["meta"] or "{}")
        return MemoryRecord.model_validate(data)

    @staticmethod
    def _record_values(rec: MemoryRecord) -> dict[str, Any]:
        return {
            "id": rec.id, "tenant": rec.tenant, "domain": rec.domain, "kind": rec.kind, "status": rec.status,
            "source": rec.source, "question": rec.question, "answer": rec.answer, "reason": rec.reason,
            "wrong": rec.wrong, "score": rec.score, "template_version": rec.template_version,
            "created_at": iso(rec.created_at), "updated_at": iso(rec.updated_at),
            "meta": json.dumps(rec.meta, sort_keys=True),
        }

    def _where(self, f: MemoryFilter | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if f is not None:
            for col, value in (("tenant", f.tenant), ("domain", f.domain)):
                if value is not None:
                    clauses.append(f"{col} = ?")
                    params.append(value)
            for col, values in (("kind", f.kinds), ("status", f.statuses)):
                if values is not None:
                    clauses.append(f"{col} IN ({','.join('?' * len(values))})")
                    params.extend(values)
            if f.created_before is not None:
                clauses.append("created_at < ?")
                params.append(iso(f.created_before))
            if f.exclude_ids:
                clauses.append(f"id NOT IN ({','.join('?' * len(f.exclude_ids))})")
                params.extend(sorted(f.exclude_ids))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    # -- Protocol ------------------------------------------------------------------------------------

    def upsert(self, records: Sequence[MemoryRecord], vectors: np.ndarray) -> UpsertResult:
        vectors = self._checked_vectors(records, vectors)
        result = UpsertResult(inserted=0, updated=0, unchanged=0)
        if not records:
            return result
        with self._lock, sqlite_errors("memory upsert"):
            self._check_foreign_writes()
            existing = self._existing([r.id for r in records])
            to_write = self._changes(records, vectors, existing, result)
            self._write(to_write)
            self._generation = self._read_generation()
            self._cache_written(to_write, existing)
        return result

    def _checked_vectors(self, records: Sequence[MemoryRecord], vectors: np.ndarray) -> np.ndarray:
        """The vectors as float32, refused when they do not match the records or the store's dimension."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(records) != len(vectors):
            raise StoreError(f"upsert got {len(records)} records but {len(vectors)} vectors")
        if not len(records):
            return vectors
        if vectors.ndim != 2:
            raise StoreError("upsert vectors must be a 2-D array")
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        elif vectors.shape[1] != self.dim:
            raise StoreError(f"vector dimension {vectors.shape[1]} does not match the store's {self.dim}")
        return vectors

    def _existing(self, ids: list[str]) -> dict[str, tuple]:
        """The stored content, id and vector of those of ``ids`` that exist."""
        existing: dict[str, tuple] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._conn.execute(
                f"SELECT {', '.join(_CONTENT)}, id, vector FROM memory WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            for row in rows:
                existing[row[-2]] = row
        return existing

    def _changes(self, records: Sequence[MemoryRecord], vectors: np.ndarray, existing: dict[str, tuple],
                 result: UpsertResult) -> list[tuple[dict[str, Any], bytes]]:
        """The rows to write (new or changed), counted in ``result``; identical ones are left alone."""
        to_write = []
        for rec, vec in zip(records, vectors, strict=True):
            values = self._record_values(rec)
            blob = vec.tobytes()
            old = existing.get(rec.id)
            if old is None:
                result["inserted"] += 1
            elif tuple(values[c] for c in _CONTENT) == tuple(old[: len(_CONTENT)]) and old[-1] == blob:
                result["unchanged"] += 1
                continue
            else:
                result["updated"] += 1  # created_at keeps its original value (not in the UPDATE SET)
            to_write.append((values, blob))
        return to_write

    def _write(self, rows: list[tuple[dict[str, Any], bytes]]) -> None:
        """Insert or update ``rows`` in one transaction (rolled back whole on failure)."""
        sql = (f"INSERT INTO memory ({', '.join(_COLUMNS)}, dim, vector) "
               f"VALUES ({', '.join('?' * len(_COLUMNS))}, ?, ?) ON CONFLICT(id) DO UPDATE SET "
               + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c not in ("id", "created_at"))
               + ", dim = excluded.dim, vector = excluded.vector")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for values, blob in rows:
                self._conn.execute(sql, (*[values[c] for c in _COLUMNS], self.dim, blob))
            self._conn.execute("COMMIT")
        except sqlite3.Error:
            if self._conn.in_transaction:  # BEGIN itself may have failed (locked): nothing to roll back
                self._conn.execute("ROLLBACK")
            raise

    def _cache_written(self, rows: list[tuple[dict[str, Any], bytes]], existing: dict[str, tuple]) -> None:
        """Bring the cached partitions in step with rows just written."""
        for values, blob in rows:
            self._hits.pop(values["id"], None)
            part = self._parts.get((values["tenant"], values["domain"]))
            if part is not None:
                created = self._created_of(values["id"]) if values["id"] in existing else values["created_at"]
                part.put(values["id"], values["kind"], values["status"], created,
                         np.frombuffer(blob, dtype=np.float32))
            for key, other in self._parts.items():  # a record that moved tenant/domain
                if key != (values["tenant"], values["domain"]) and values["id"] in other.index:
                    other.alive[other.index[values["id"]]] = False

    def _created_of(self, rid: str) -> str:
        row = self._conn.execute("SELECT created_at FROM memory WHERE id = ?", (rid,)).fetchone()
        return row[0] if row else iso(utcnow())

    def _partition(self, tenant: str, domain: str) -> _Partition:
        key = (tenant, domain)
        part = self._parts.get(key)
        if part is None:
            rows = self._conn.execute(
                "SELECT id, kind, status, created_at, vector FROM memory WHERE tenant = ? AND domain = ?",
                key,
            ).fetchall()
            dim = self.dim or (len(rows[0][4]) // 4 if rows else 1)
            part = _Partition(dim, capacity=len(rows))
            if rows:
                n = len(rows)
                part.vectors[:n] = np.frombuffer(b"".join(r[4] for r in rows), dtype=np.float32).reshape(n, -1)
                part.n = n
                part.ids = [r[0] for r in rows]
                part.index = {rid: i for i, rid in enumerate(part.ids)}
                part.kinds[:n] = [part.kind_codes.of(r[1]) for r in rows]
                part.statuses[:n] = [part.status_codes.of(r[2]) for r in rows]
                part.created[:n] = [_micros(r[3]) for r in rows]
                part.alive[:n] = True
            self._parts[key] = part
        return part

    @sqlite_errors("memory search")
    def search(self, vector: np.ndarray, *, filters: MemoryFilter, limit: int,
               text: str | None = None) -> list[SearchHit]:
        """Exact cosine over the partition; ``text`` is ignored (no keyword index here)."""
        if filters.tenant is None or filters.domain is None:
            raise StoreError("search needs a tenant and a domain")
        if limit <= 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        with self._lock:
            self._check_foreign_writes()
            part = self._partition(filters.tenant, filters.domain)
            n = part.n
            if n == 0:
                return []
            if part.vectors.shape[1] != query.shape[0]:
                raise StoreError(f"query dimension {query.shape[0]} does not match the store's {part.vectors.shape[1]}")
            mask = part.alive[:n].copy()
            if filters.kinds is not None:
                mask &= part.kind_codes.mask(part.kinds[:n], filters.kinds)
            if filters.statuses is not None:
                mask &= part.status_codes.mask(part.statuses[:n], filters.statuses)
            if filters.created_before is not None:
                mask &= part.created[:n] < _micros(iso(filters.created_before))
            for rid in filters.exclude_ids:
                row = part.index.get(rid)
                if row is not None:
                    mask[row] = False
            rows = np.flatnonzero(mask)
            if rows.size == 0:
                return []
            scores = part.scores(query)[rows]
            take = min(limit, rows.size)
            top = np.argpartition(-scores, take - 1)[:take]
            top = top[np.argsort(-scores[top], kind="stable")]
            chosen_rows = rows[top]
            ids = [part.ids[r] for r in chosen_rows]
            records = self._hit_records(ids)
            return [
                SearchHit(record=records[part.ids[r]], similarity=float(scores[t]), vector=part.vectors[r].copy())
                for r, t in zip(chosen_rows, top, strict=True)
                if part.ids[r] in records
            ]

    def _hit_records(self, ids: list[str]) -> dict[str, MemoryRecord]:
        """The records of a search's hits by id (under the lock): the kept ones, the others read and kept.
        Each is a copy, so a caller that changes one changes nothing kept."""
        found: dict[str, MemoryRecord] = {}
        missing = []
        for rid in ids:
            rec = self._hits.get(rid)
            if rec is None:
                missing.append(rid)
            else:
                self._hits.move_to_end(rid)
                found[rid] = rec
        for rec in self.get(missing) if missing else []:
            found[rec.id] = self._hits[rec.id] = rec
        while len(self._hits) > HIT_RECORDS:
            self._hits.popitem(last=False)
        return {rid: rec.model_copy(update={"meta": copy.deepcopy(rec.meta)}) if rec.meta else rec.model_copy()
                for rid, rec in found.items()}

    @sqlite_errors("memory get")
    def get(self, ids: Sequence[str], *, tenant: str | None = None) -> list[MemoryRecord]:
        out: dict[str, MemoryRecord] = {}
        scope, scope_params = (" AND tenant = ?", [tenant]) if tenant is not None else ("", [])
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                rows = self._conn.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM memory WHERE id IN ({','.join('?' * len(chunk))}){scope}",
                    [*chunk, *scope_params],
                ).fetchall()
                for row in rows:
                    out[row[0]] = self._row_to_record(row)
        return [out[i] for i in ids if i in out]

    @sqlite_errors("memory update")
    def update(self, record_id: str, *, tenant: str | None = None, **fields: Any) -> bool:
        bad = set(fields) - _UPDATABLE
        if bad:
            raise StoreError(f"cannot update field(s) {', '.join(sorted(bad))}")
        if not fields:
            return False
        values = {k: (json.dumps(v, sort_keys=True) if k == "meta" else v) for k, v in fields.items()}
        values["updated_at"] = iso(utcnow())
        with self._lock:
            self._check_foreign_writes()
            scope, scope_params = (" AND tenant = ?", [tenant]) if tenant is not None else ("", [])
            cur = self._conn.execute(
                f"UPDATE memory SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?{scope}",
                [*values.values(), record_id, *scope_params],
            )
            self._generation = self._read_generation()
            self._hits.pop(record_id, None)
            if cur.rowcount and ("status" in fields or "kind" in fields):
                for part in self._parts.values():
                    row = part.index.get(record_id)
                    if row is not None:
                        if "status" in fields:
                            part.statuses[row] = part.status_codes.of(fields["status"])
                        if "kind" in fields:
                            part.kinds[row] = part.kind_codes.of(fields["kind"])
            return bool(cur.rowcount)

    @sqlite_errors("memory delete")
    def delete(self, ids: Sequence[str]) -> int:
        removed = 0
        with self._lock:
            self._check_foreign_writes()
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                cur = self._conn.execute(f"DELETE FROM memory WHERE id IN ({','.join('?' * len(chunk))})", chunk)
                removed += cur.rowcount
            self._generation = self._read_generation()
            for rid in ids:
                self._hits.pop(rid, None)
            for part in self._parts.values():
                for rid in ids:
                    row = part.index.get(rid)
                    if row is not None:
                        part.alive[row] = False
        return removed

    @sqlite_errors("memory count")
    def count(self, filters: MemoryFilter | None = None) -> int:
        where, params = self._where(filters)
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM memory{where}", params).fetchone()[0])

    @sqlite_errors("memory list")
    def list(self, filters: MemoryFilter | None = None, *, limit: int = 50, offset: int = 0) -> list[MemoryRecord]:
        where, params = self._where(filters)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM memory{where} ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return [self._row_to_record(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @sqlite_errors("memory created_at")
    def created_at(self, record_id: str) -> datetime | None:
        row = self._conn.execute("SELECT created_at FROM memory WHERE id = ?", (record_id,)).fetchone()
        return datetime.fromisoformat(row[0].replace("Z", "+00:00")) if row else None
