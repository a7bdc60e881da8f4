"""What the learning loop needs of memory, and nothing else: the journal, the store, the embedder, the database.

Feedback and the fine-tuning export take a :class:`MemoryAccess` instead of the whole middleware.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .embedding import Embedder
from .interaction_log import InteractionLog
from .stores.base import MemoryStore

__all__ = ["MemoryAccess"]


@dataclass(frozen=True)
class MemoryAccess:
    db_path: Path  # the SQLite file: the feedback table lives beside the journal
    journal: InteractionLog
    store: MemoryStore
    embedder: Embedder

    @classmethod
    def of(cls, owner: Any) -> MemoryAccess:
        """The memory of anything that holds one like the middleware does (``settings.db_path``, ``journal``,
        ``store``, ``embedder``)."""
        return cls(db_path=owner.settings.db_path, journal=owner.journal, store=owner.store, embedder=owner.embedder)
