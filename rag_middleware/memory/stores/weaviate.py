"""The production memory store: Weaviate (weaviate-client v4), one collection, one Weaviate tenant per tenant.

Each record is one object with ``uuid = generate_uuid5(record_id)`` and a self-provided named vector
``embedding`` (cosine, HNSW). The client connects lazily and reconnects after an outage. Every call runs under
a wall-clock deadline: the client retries unreachable gRPC calls for about a minute on its own, so a call that
is slow gets a quick readiness probe and fails with :class:`StoreUnavailableError` when Weaviate is gone.
After a failure Weaviate is left alone for ``retry_interval`` seconds; calls in that window fail at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import numpy as np

from ...errors import StoreError, StoreUnavailableError
from ...records import MemoryFilter, MemoryRecord, SearchHit, iso, utcnow
from .base import UpsertResult
from .weaviate_connection import connect, grpc_address, rest_url
from .weaviate_schema import (
    RETURN_PROPERTIES,
    TENANT_NAME,
    UPDATABLE,
    VECTOR_NAME,
    collection_config,
    to_date,
    to_filter,
    to_properties,
    to_record,
    vector_of,
)

if TYPE_CHECKING:
    from ...config import WeaviateSettings

__all__ = ["VECTOR_NAME", "WeaviateStore", "object_uuid"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_CHUNK = 500
_UNREACHABLE = re.compile(r"UNAVAILABLE|DEADLINE_EXCEEDED|failed to connect|connection refused|connect error", re.I)


def object_uuid(record_id: str) -> str:
    """The Weaviate object id of a record: uuid5 of its id, so every write of it lands on the same object."""
    from weaviate.util import generate_uuid5

    return generate_uuid5(record_id)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b) / (na * nb) if a.shape == b.shape and na and nb else 0.0


def _same_direction(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to length: with cosine distance Weaviate may hand back the normalised vector."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return bool(a.shape == b.shape and na and nb and np.allclose(a / na, b / nb, rtol=0, atol=1e-6))


class WeaviateStore:
    """MemoryStore over Weaviate. Thread-safe; construct once per process (it holds one client)."""

    name = "weaviate"

    def __init__(self, settings: WeaviateSettings, *, data_dir: Path | None = None) -> None:
        self.settings = settings
        self.collection_name = settings.collection
        self._data_dir = data_dir
        self._lock = threading.RLock()
        self._client: Any = None
        self._ready = False  # collection checked/created on this client
        self._tenants: set[str] = set()  # tenants known to exist
        self._down_since: float | None = None  # when the current outage began
        self._next_try = 0.0  # monotonic time before which calls fail without trying
        self._down_error = ""
        self._closed = False

    # -- connection ----------------------------------------------------------------------------------

    def rest_url(self) -> str:
        return rest_url(self.settings)

    def _live_client(self) -> Any:
        with self._lock:
            if self._closed:
                raise StoreError("the Weaviate store is closed")
            if self._client is None:
                self._client = connect(self.settings, self._data_dir)
                self._ready = False
                self._tenants.clear()
            if not self._ready:
                if not self._client.collections.exists(self.collection_name):
                    try:
                        self._client.collections.create(**collection_config(
                            self.collection_name, replication_factor=self.settings.replication_factor))
                    except Exception:  # noqa: BLE001 - another replica may have created it meanwhile
                        if not self._client.collections.exists(self.collection_name):
                            raise
                self._ready = True
            return self._client

    def _probe(self) -> bool:
        """Is Weaviate there? REST readiness, and the gRPC port accepts connections (queries and writes use it)."""
        try:
            ready = httpx.get(f"{self.rest_url()}/v1/.well-known/ready", timeout=self.settings.timeout_init)
            if ready.status_code != 200:
                return False
            address = grpc_address(self.settings)
            if address is not None:
                socket.create_connection(address, timeout=self.settings.timeout_init).close()
            return True
        except (httpx.HTTPError, OSError):
            return False

    def _mark_down(self, error: str) -> None:
        with self._lock:
            now = time.monotonic()
            if self._down_since is None:
                self._down_since = now
            self._next_try = now + self.settings.retry_interval
            self._down_error = error
            client, self._client, self._ready = self._client, None, False
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken client must not mask the outage
                client.close()

    @property
    def available(self) -> bool:
        """False while an outage is known (until the next successful call)."""
        return self._down_since is None

    def _call(self, what: str, fn: Callable[[Any], T], *, timeout: float) -> T:
        """Run ``fn(client)`` under a deadline, translating weaviate/httpx/grpc failures into our errors."""
        with self._lock:
            waiting = self._down_since is not None and time.monotonic() < self._next_try
        if waiting:
            raise StoreUnavailableError(f"Weaviate at {self.rest_url()} is unreachable ({self._down_error})")
        box: dict[str, Any] = {}
        done = threading.Event()

        def target() -> None:
            try:
                box["value"] = fn(self._live_client())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = exc
            finally:
                done.set()

        started = time.monotonic()
        threading.Thread(target=target, name=f"weaviate-{what}", daemon=True).start()
        finished = done.wait(min(1.0, timeout))
        if not finished and not self._probe():
            self._mark_down("not ready")
            raise StoreUnavailableError(f"Weaviate at {self.rest_url()} is unreachable: {what} got no answer")
        left = timeout + self.settings.timeout_init - (time.monotonic() - started)
        if not finished and not done.wait(max(0.0, left)):
            self._mark_down("timeout")
            raise StoreUnavailableError(f"Weaviate at {self.rest_url()}: {what} timed out after {timeout:g}s")
        if "error" in box:
            raise self._translate(what, box["error"]) from None
        with self._lock:
            if self._down_since is not None:
                log.info("Weaviate at %s is reachable again", self.rest_url())
            self._down_since = None
        return box["value"]

    def _translate(self, what: str, exc: BaseException) -> StoreError:
        from weaviate import exceptions as wx

        if isinstance(exc, StoreError):
            if isinstance(exc, StoreUnavailableError):
                self._mark_down(exc.one_line())
            return exc
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        unavailable = (wx.WeaviateStartUpError, wx.WeaviateConnectionError, wx.WeaviateRetryError,
                       wx.WeaviateTimeoutError, wx.WeaviateGRPCUnavailableError, wx.WeaviateClosedClientError,
                       httpx.TransportError, ConnectionError, TimeoutError)
        if isinstance(exc, unavailable) or (isinstance(exc, wx.WeaviateQueryError) and _UNREACHABLE.search(text)):
            self._mark_down(text)
            return StoreUnavailableError(f"Weaviate at {self.rest_url()} is unreachable ({what}): {text}")
        if isinstance(exc, wx.WeaviateBaseError):
            return StoreError(f"Weaviate {what} failed: {text}")
        return StoreError(f"Weaviate {what} failed: {type(exc).__name__}: {text}")

    # -- tenants and objects ---------------------------------------------------------------------------

    @staticmethod
    def check_tenant(tenant: str) -> str:
        if not TENANT_NAME.match(tenant):
            raise StoreError(f"tenant {tenant!r} is not a valid Weaviate tenant name ([A-Za-z0-9_-], 1-64 chars)")
        return tenant

    def _tenant_exists(self, client: Any, tenant: str) -> bool:
        if tenant in self._tenants:
            return True
        if client.collections.use(self.collection_name).tenants.exists(tenant):
            self._tenants.add(tenant)
            return True
        return False

    def _all_tenants(self, client: Any) -> list[str]:
        names = sorted(client.collections.use(self.collection_name).tenants.get())
        self._tenants.update(names)
        return names

    def _scoped(self, client: Any, f: MemoryFilter | None) -> list[str]:
        """The tenants a filter covers that exist."""
        if f is not None and f.tenant is not None:
            return [f.tenant] if TENANT_NAME.match(f.tenant) and self._tenant_exists(client, f.tenant) else []
        return self._all_tenants(client)

    def _coll(self, client: Any, tenant: str) -> Any:
        return client.collections.use(self.collection_name).with_tenant(tenant)

    def _fetch(self, client: Any, tenant: str, ids: Sequence[str], *, vectors: bool) -> list[Any]:
        from weaviate.classes.query import Filter

        out: list[Any] = []
        coll = self._coll(client, tenant)
        for start in range(0, len(ids), _CHUNK):
            chunk = list(ids[start : start + _CHUNK])
            res = coll.query.fetch_objects(filters=Filter.by_property("record_id").contains_any(chunk),
                                           limit=len(chunk), return_properties=RETURN_PROPERTIES,
                                           include_vector=[VECTOR_NAME] if vectors else False)
            out.extend(res.objects)
        return out

    # -- Protocol ------------------------------------------------------------------------------------

    def check(self, records: Sequence[MemoryRecord], vectors: np.ndarray) -> np.ndarray:
        """Refuse what Weaviate could never take, before anything is queued or sent."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(records) != len(vectors):
            raise StoreError(f"upsert got {len(records)} records but {len(vectors)} vectors")
        if len(records) and vectors.ndim != 2:
            raise StoreError("upsert vectors must be a 2-D array")
        for rec in records:
            self.check_tenant(rec.tenant)
        return vectors

    def upsert(self, records: Sequence[MemoryRecord], vectors: np.ndarray) -> UpsertResult:
        vectors = self.check(records, vectors)
        result = UpsertResult(inserted=0, updated=0, unchanged=0)
        if not records:
            return result
        by_tenant: dict[str, list[int]] = {}
        for i, rec in enumerate(records):
            by_tenant.setdefault(rec.tenant, []).append(i)

        def run(client: Any) -> UpsertResult:
            for tenant, rows in by_tenant.items():
                self._upsert_tenant(client, tenant, [records[i] for i in rows], vectors[rows], result)
                self._tenants.add(tenant)
            return result

        return self._call("upsert", run, timeout=self.settings.timeout_insert)

    def _upsert_tenant(self, client: Any, tenant: str, records: list[MemoryRecord], vectors: np.ndarray,
                       result: UpsertResult) -> None:
        existing = {}
        if self._tenant_exists(client, tenant):
            existing = {o.properties["record_id"]: o for o in self._fetch(client, tenant, [r.id for r in records],
                                                                          vectors=True)}
        writes: list[tuple[str, dict[str, Any], list[float]]] = []
        latest: dict[str, int] = {}
        for rec, vec in zip(records, vectors, strict=True):  # check() made them as many
            props = to_properties(rec)
            old = existing.get(rec.id)
            if old is not None:
                props["created_at"] = to_date(old.properties["created_at"])  # created_at keeps its first value
                old_vec = vector_of(old)
                same = (old_vec is not None and _same_direction(old_vec, vec)
                        and to_record(tenant, old.properties) == to_record(tenant, props))
                if same:
                    result["unchanged"] += 1
                    continue
                result["updated"] += 1
            else:
                result["inserted"] += 1
            latest[rec.id] = len(writes)
            writes.append((object_uuid(rec.id), props, vec.tolist()))
        writes = [w for i, w in enumerate(writes) if latest[w[1]["record_id"]] == i]  # last write of an id wins
        if not writes:
            return
        coll = self._coll(client, tenant)
        with coll.batch.fixed_size(batch_size=min(len(writes), 200), concurrent_requests=1) as batch:
            for uuid, props, vec in writes:
                batch.add_object(properties=props, uuid=uuid, vector={VECTOR_NAME: vec})
        failed = coll.batch.failed_objects
        if failed:
            first = failed[0]
            rid = (first.object_.properties or {}).get("record_id", "?")
            message = (f"{len(failed)} of {len(writes)} object(s) of tenant {tenant} not written; "
                       f"first: {rid}: {first.message}")
            if _UNREACHABLE.search(str(first.message)):  # the batch lost its connection: worth retrying
                raise StoreUnavailableError(f"Weaviate at {self.rest_url()} is unreachable: {message}")
            raise StoreError(f"Weaviate rejected {message}")

    def search(self, vector: np.ndarray, *, filters: MemoryFilter, limit: int,
               text: str | None = None) -> list[SearchHit]:
        """Nearest records (cosine), best first. With ``hybrid`` on and ``text`` given, BM25 + vector."""
        if filters.tenant is None or filters.domain is None:
            raise StoreError("search needs a tenant and a domain")
        if limit <= 0 or not TENANT_NAME.match(filters.tenant):
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        tenant = filters.tenant

        def run(client: Any) -> list[SearchHit]:
            from weaviate.classes.query import HybridFusion, MetadataQuery

            if not self._tenant_exists(client, tenant):
                return []
            coll = self._coll(client, tenant)
            where = to_filter(filters)
            if self.settings.hybrid and text:
                res = coll.query.hybrid(query=text, vector=query.tolist(), target_vector=VECTOR_NAME,
                                        alpha=self.settings.alpha, fusion_type=HybridFusion.RELATIVE_SCORE,
                                        limit=limit, filters=where, include_vector=[VECTOR_NAME],
                                        return_properties=RETURN_PROPERTIES, return_metadata=MetadataQuery(score=True))
            else:
                res = coll.query.near_vector(near_vector=query.tolist(), target_vector=VECTOR_NAME, limit=limit,
                                             filters=where, include_vector=[VECTOR_NAME],
                                             return_properties=RETURN_PROPERTIES,
                                             return_metadata=MetadataQuery(distance=True))
            hits = []
            for obj in res.objects:
                vec = vector_of(obj)
                distance = obj.metadata.distance if obj.metadata is not None else None
                if distance is not None:
                    similarity = 1.0 - float(distance)
                else:  # hybrid scores are fused ranks: report the cosine, as every other search does
                    similarity = _cosine(vec, query) if vec is not None else 0.0
                hits.append(SearchHit(record=to_record(tenant, obj.properties), similarity=similarity, vector=vec))
            return hits

        return self._call("search", run, timeout=self.settings.timeout_query)

    def _tenants_for(self, client: Any, tenant: str | None) -> list[str]:
        """The one tenant asked for (if it exists), else every tenant."""
        if tenant is None:
            return self._all_tenants(client)
        return [tenant] if self._tenant_exists(client, self.check_tenant(tenant)) else []

    def get(self, ids: Sequence[str], *, tenant: str | None = None) -> list[MemoryRecord]:
        if not ids:
            return []

        def run(client: Any) -> list[MemoryRecord]:
            found: dict[str, MemoryRecord] = {}
            for name in self._tenants_for(client, tenant):
                for obj in self._fetch(client, name, ids, vectors=False):
                    rec = to_record(name, obj.properties)
                    found[rec.id] = rec
            return [found[i] for i in ids if i in found]

        return self._call("get", run, timeout=self.settings.timeout_query)

    @staticmethod
    def update_values(fields: dict[str, Any]) -> dict[str, Any]:
        """Check the fields of an update (names and types) and return them as plain values."""
        bad = set(fields) - UPDATABLE
        if bad:
            raise StoreError(f"cannot update field(s) {', '.join(sorted(bad))}")
        probe = MemoryRecord(id="x", tenant="t", domain="d", question="q", answer="a").model_dump()
        try:
            checked = MemoryRecord.model_validate({**probe, **fields})
        except ValueError as exc:
            raise StoreError(f"invalid update: {' '.join(str(exc).split())[:200]}") from None
        return {k: getattr(checked, k) for k in fields}

    def update(self, record_id: str, *, tenant: str | None = None, **fields: Any) -> bool:
        props = self.update_values(fields)
        if not props:
            return False
        if "meta" in props:
            props["meta"] = json.dumps(props["meta"], sort_keys=True)
        props["updated_at"] = to_date(utcnow())

        def run(client: Any) -> bool:
            for name in self._tenants_for(client, tenant):
                if self._fetch(client, name, [record_id], vectors=False):
                    self._coll(client, name).data.update(uuid=object_uuid(record_id), properties=props)
                    return True
            return False

        return self._call("update", run, timeout=self.settings.timeout_insert)

    def delete(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0

        def run(client: Any) -> int:
            from weaviate.classes.query import Filter

            removed = 0
            for tenant in self._all_tenants(client):
                coll = self._coll(client, tenant)
                for start in range(0, len(ids), _CHUNK):
                    chunk = list(ids[start : start + _CHUNK])
                    res = coll.data.delete_many(where=Filter.by_property("record_id").contains_any(chunk))
                    removed += int(res.successful)
                    if res.failed:
                        raise StoreError(f"Weaviate failed to delete {res.failed} object(s) of tenant {tenant}")
            return removed

        return self._call("delete", run, timeout=self.settings.timeout_insert)

    def count(self, filters: MemoryFilter | None = None) -> int:
        def run(client: Any) -> int:
            where = to_filter(filters)
            return sum(int(self._coll(client, t).aggregate.over_all(total_count=True, filters=where).total_count or 0)
                       for t in self._scoped(client, filters))

        return self._call("count", run, timeout=self.settings.timeout_query)

    def list(self, filters: MemoryFilter | None = None, *, limit: int = 50, offset: int = 0) -> list[MemoryRecord]:
        def run(client: Any) -> list[MemoryRecord]:
            from weaviate.classes.query import Sort

            where = to_filter(filters)
            order = Sort.by_property("created_at", ascending=False).by_property("record_id", ascending=True)
            out: list[MemoryRecord] = []
            for tenant in self._scoped(client, filters):
                res = self._coll(client, tenant).query.fetch_objects(filters=where, sort=order, limit=limit + offset,
                                                                       return_properties=RETURN_PROPERTIES)
                out.extend(to_record(tenant, o.properties) for o in res.objects)
            out.sort(key=lambda r: r.id)
            out.sort(key=lambda r: iso(r.created_at), reverse=True)
            return out[offset : offset + limit]

        return self._call("list", run, timeout=self.settings.timeout_query)

    def ping(self) -> str:
        """One round trip (the tenant list), whatever the number of tenants: what /rag/health asks."""
        return self._call("ping", lambda c: f"ready, {len(self._all_tenants(c))} tenant(s)",
                          timeout=self.settings.timeout_query)

    def tenants(self) -> list[str]:
        """Every tenant that holds memory."""
        return self._call("tenants", self._all_tenants, timeout=self.settings.timeout_query)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # noqa: BLE001 - closing never raises
                log.debug("closing the Weaviate client: %s", exc)
