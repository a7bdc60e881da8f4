"""Reviewed answers teach the domain: a tenant's approved and edited answers are learnt from like curated
examples.

A reviewed answer votes as a neighbour of the requests close to it (selector.voters). That alone helps a
request only when a reviewed question is near it. What a domain *learns* from its examples when it is loaded
(cue words, label prototypes, anchored lists, slots, floors, the per-clause bank, the leave-one-out judgement of
each voted field) is what generalises to questions unlike any reviewed one, so the tenant's reviewed answers
join it: each tenant's requests run on a copy of the domain loaded from its curated examples plus its reviewed
answers (``DomainRegistry.taught``). The copy is rebuilt in the background when the reviewed answers change
(looked at every ``selection.teach_refresh`` seconds) and never sees unreviewed answers (no self-poisoning).

A reviewed answer that no longer validates against the domain's schema, or that disagrees with a derived
field or a vote rule of domain.yaml, teaches nothing. A request that holds some of the reviewed answers out
(``exclude_ids``: a replay or a cross-validation fold) or looks at an earlier state of the memory (``as_of``)
runs on the curated domain, so an answer never helps score itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from ..config import Settings
from ..domains import Domain, DomainRegistry
from ..domains.loader import SETTLED, CuratedExample
from ..domains.votes import REVIEWED_STATUSES, parse_answer
from ..errors import RagMiddlewareError, StoreError
from ..memory.stores.base import MemoryStore
from ..records import MemoryFilter, MemoryRecord
from .ask import AskRequest

__all__ = ["TaughtDomains", "teachable"]

log = logging.getLogger("rag_middleware.request.taught")


def teachable(domain: Domain, records: list[MemoryRecord]) -> list[CuratedExample]:
    """The reviewed answers that may teach ``domain``: valid against its schema (normalised by it) and in
    agreement with its derived fields and vote rules; oldest first, so a domain's learning is stable."""
    out = []
    for record in sorted(records, key=lambda r: (r.created_at, r.id)):
        value = parse_answer(record.answer)
        if value is None or not record.question:
            continue
        outcome = domain.validator.validate_value(value, record.question)
        if not outcome.ok:
            continue
        _, changes = domain.declarative.post(outcome.value, record.question, flags=SETTLED)
        if not changes:
            out.append(CuratedExample(id=record.id, question=record.question, answer=outcome.value))
    return out


def fingerprint(examples: list[CuratedExample]) -> str:
    text = json.dumps([[e.id, e.question, e.answer] for e in examples], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class _Entry:
    base: Domain  # the curated domain it was built over (a reloaded domain is a new object)
    domain: Domain  # the taught copy, or ``base`` when nothing teaches it
    key: str = ""
    checked: float = float("-inf")
    ids: frozenset[str] = field(default_factory=frozenset)
    building: threading.Thread | None = None
    raw: str = ""  # a hash of the reviewed records last read


class TaughtDomains:
    """Per tenant and domain, the domain taught by the tenant's reviewed answers. A copy is built in the
    background (learning from a few hundred answers takes seconds); a request waits for it at most
    ``selection.teach_wait`` seconds, then runs on the copy it had (or the curated domain)."""

    MAX_ENTRIES = 64  # tenant x domain copies kept (least recently used dropped)

    def __init__(self, *, settings: Settings, domains: DomainRegistry, store: MemoryStore) -> None:
        self.settings = settings
        self.domains = domains
        self.store = store
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._down_logged = False

    def domain(self, base: Domain, ask: AskRequest) -> Domain:
        """The domain ``ask`` (tenant resolved) runs on."""
        params = self.settings.selection.model_copy(update=base.spec.selection)
        if (base.free_text or params.teach_max <= 0 or not params.use_memory or not ask.switches.memory
                or ask.as_of is not None or ask.tenant is None):
            return base
        key = (ask.tenant, base.name)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.base is not base:
                entry = self._entries[key] = _Entry(base, base)
            self._entries.move_to_end(key)
            while len(self._entries) > self.MAX_ENTRIES:
                self._entries.popitem(last=False)
            building = entry.building
            idle = building is None or not building.is_alive()
            if idle and time.monotonic() - entry.checked >= params.teach_refresh:
                entry.checked = time.monotonic()  # one look at a time
                building = entry.building = threading.Thread(
                    target=self._refresh, args=(entry, ask.tenant, params.teach_max), daemon=True,
                    name=f"teach-{ask.tenant}-{base.name}")
                building.start()
        if building is not None and params.teach_wait > 0:
            building.join(params.teach_wait)
        if entry.ids and ask.exclude_ids and entry.ids & ask.exclude_ids:
            return base  # a held-out answer never teaches the request that scores it
        return entry.domain

    def _refresh(self, entry: _Entry, tenant: str, limit: int) -> None:
        base = entry.base
        try:
            records = self.store.list(MemoryFilter(tenant=tenant, domain=base.name, kinds=("example", "interaction"),
                                                   statuses=REVIEWED_STATUSES), limit=limit)
            self._down_logged = False
        except StoreError as exc:
            if not self._down_logged:
                log.warning("memory unavailable, the domain learns from its curated examples only: %s", exc)
            self._down_logged = True
            return
        raw = hashlib.sha256(json.dumps([[r.id, r.question, r.answer] for r in records]).encode()).hexdigest()
        if raw == entry.raw:
            return  # the same reviewed answers as last time: nothing to check again
        entry.raw = raw
        learnt = teachable(base, records)
        key = fingerprint(learnt) if learnt else ""
        if key == entry.key:
            return
        try:
            domain = self.domains.taught(base, learnt, key) if learnt else base
        except RagMiddlewareError as exc:  # the curated domain loads; a taught copy that fails is not used
            log.warning("domain %s did not learn from %d reviewed answers: %s", base.name, len(learnt),
                        exc.one_line())
            domain, learnt = base, []
        except Exception:  # noqa: BLE001 - a background build must never take a request down with it
            log.exception("domain %s: learning from reviewed answers failed", base.name)
            return
        entry.domain, entry.key, entry.ids = domain, key, frozenset(e.id for e in learnt)
