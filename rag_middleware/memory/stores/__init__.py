"""Memory store backends, chosen by name through :data:`STORE_BACKENDS`.

``sqlite`` is the local default. ``weaviate`` is Weaviate behind a local SQLite outbox: writes are committed
locally first and forwarded, so an outage loses nothing (see ``outbox.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import MemoryStore, UpsertResult

if TYPE_CHECKING:
    from ...config import Settings

__all__ = ["STORE_BACKENDS", "MemoryStore", "UpsertResult", "open_store"]


def _sqlite(settings: Settings) -> MemoryStore:
    from .sqlite import SQLiteStore

    return SQLiteStore(settings.db_path)


def _weaviate(settings: Settings) -> MemoryStore:
    from .outbox import OutboxStore
    from .weaviate import WeaviateStore

    cfg = settings.store.weaviate
    return OutboxStore(WeaviateStore(cfg, data_dir=settings.data_dir), settings.db_path, cfg.outbox)


STORE_BACKENDS = {"sqlite": _sqlite, "weaviate": _weaviate}


def open_store(settings: Settings) -> MemoryStore:
    return STORE_BACKENDS[settings.store.backend](settings)
