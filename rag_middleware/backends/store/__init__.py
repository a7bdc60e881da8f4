"""Memory store backends, chosen by name through :data:`STORE_BACKENDS`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import MemoryStore, UpsertResult

if TYPE_CHECKING:
    from ...config import Settings

__all__ = ["STORE_BACKENDS", "MemoryStore", "UpsertResult", "open_store"]


def _sqlite(settings: Settings) -> MemoryStore:
    from .sqlite import SQLiteStore

    return SQLiteStore(settings.db_path)


STORE_BACKENDS = {"sqlite": _sqlite}


def open_store(settings: Settings) -> MemoryStore:
    return STORE_BACKENDS[settings.store.backend](settings)
