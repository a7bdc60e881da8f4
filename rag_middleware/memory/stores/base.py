"""The memory store Protocol. Each backend lives in its own module and implements it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ...records import MemoryFilter, MemoryRecord, SearchHit

__all__ = ["MemoryStore", "UpsertResult"]


class UpsertResult(dict):
    """Counts of what an upsert did: inserted, updated, unchanged."""

    @property
    def inserted(self) -> int:
        return self.get("inserted", 0)

    @property
    def updated(self) -> int:
        return self.get("updated", 0)

    @property
    def unchanged(self) -> int:
        return self.get("unchanged", 0)


@runtime_checkable
class MemoryStore(Protocol):
    def upsert(self, records: Sequence[MemoryRecord], vectors: np.ndarray) -> UpsertResult:
        """Insert or replace by id. Re-upserting identical content changes nothing."""
        ...

    def search(self, vector: np.ndarray, *, filters: MemoryFilter, limit: int,
               text: str | None = None) -> list[SearchHit]:
        """Nearest records by cosine similarity, best first, with their vectors. ``text`` is the query's text,
        for backends that can mix in keyword search (Weaviate's hybrid); others ignore it."""
        ...

    def get(self, ids: Sequence[str], *, tenant: str | None = None) -> list[MemoryRecord]:
        """The records with these ids (in that order, missing ones left out); only ``tenant``'s when given,
        which spares a multi-tenant backend a look into every tenant."""
        ...

    def update(self, record_id: str, *, tenant: str | None = None, **fields: Any) -> bool:
        """Change some fields of one record; False when there is none (in ``tenant``, when given)."""
        ...

    def delete(self, ids: Sequence[str]) -> int: ...

    def count(self, filters: MemoryFilter | None = None) -> int: ...

    def list(self, filters: MemoryFilter | None = None, *, limit: int = 50, offset: int = 0) -> list[MemoryRecord]: ...

    def close(self) -> None: ...
