"""Stage 1, retrieve: embed the request (and its undecided clauses) in one pass, and gather candidates from
the domain's curated examples (embedded once per content) and from this tenant's memory."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from ..config import SelectionSettings, Settings
from ..domains import Domain
from ..domains.grounding import request_body
from ..domains.prototypes import Prototypes
from ..domains.judgement import reliability
from ..domains.votes import REVIEWED_STATUSES, labels_at
from ..errors import StoreError
from ..memory.embedding import CachedEmbedder
from ..memory.stores.base import MemoryStore
from ..records import POSITIVE_STATUSES, MemoryFilter
from .ask import AskRequest
from .selection import Candidate

__all__ = ["Retrieved", "Retriever"]

log = logging.getLogger("rag_middleware.request.retriever")


def prototypes_of(domain: Domain, vectors: np.ndarray) -> Prototypes:
    """Per voted field (not per clause), each label's prototype from the examples carrying it (the curated ones
    and the reviewed answers the domain was taught, in ``vectors``' order)."""
    if domain.declarative is None:
        return Prototypes()
    specs = {p: v for p, v in domain.declarative.spec.vote.items() if not v.per_clause}
    labelled = {}
    for path, spec in specs.items():
        found = [labels_at(e.answer, path, spec.presence) for e in domain.teaching]
        labelled[path] = [f[0] if len(f) == 1 else None for f in found]
    return Prototypes.build(labelled, vectors)


@dataclass
class Retrieved:
    """The request's vector and every candidate the selector may choose from."""

    query: np.ndarray
    clause_vectors: dict[str, np.ndarray]
    curated_examples: list[Candidate]
    curated_negatives: list[Candidate]
    memory_examples: list[Candidate] = field(default_factory=list)
    memory_negatives: list[Candidate] = field(default_factory=list)
    memory_available: bool = True
    timings_ms: dict[str, float] = field(default_factory=dict)


class Retriever:
    MAX_DOMAINS = 96  # domains (and tenants' taught copies of them) whose examples are kept embedded and judged

    def __init__(self, *, settings: Settings, embedder: CachedEmbedder, store: MemoryStore) -> None:
        self.settings = settings
        self.embedder = embedder
        self.store = store
        self._curated: dict[str, tuple[tuple[int, int, int], list[Candidate], list[Candidate]]] = {}
        self._judged: dict[str, dict[str, Any]] = {}
        self._protos: dict[str, Prototypes] = {}
        self._lock = threading.Lock()
        self._memory_down_logged = False

    def retrieve(self, domain: Domain, ask: AskRequest, question: str, *, params: SelectionSettings,
                 clauses: list[str]) -> Retrieved:
        t0 = time.perf_counter()
        encoded = self.embedder.encode([question, *clauses])  # one model pass: request and its clauses
        examples, negatives = self.curated(domain)
        found = Retrieved(query=encoded[0], clause_vectors=dict(zip(clauses, encoded[1:], strict=True)),
                          curated_examples=examples, curated_negatives=negatives)
        found.timings_ms["embed"] = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        if ask.switches.memory and params.use_memory:
            self._search_memory(found, domain, ask, question, params)
        found.timings_ms["search"] = (time.perf_counter() - t0) * 1000
        return found

    # -- curated -------------------------------------------------------------------------------------

    def curated(self, domain: Domain) -> tuple[list[Candidate], list[Candidate]]:
        """Curated examples and negatives with their vectors, embedded once per content (cached by hash)."""
        # a reloaded domain is a new object; the lengths catch examples added to a loaded one in place
        key = (id(domain), len(domain.examples), len(domain.negatives), len(domain.learnt))
        with self._lock:
            cached = self._curated.get(domain.cache_key)
            if cached and cached[0] == key:
                return cached[1], cached[2]
        texts = ([e.question for e in domain.examples] + [n.question for n in domain.negatives]
                 + [e.question for e in domain.learnt])
        vectors = self.embedder.encode(texts) if texts else np.zeros((0, 1), dtype=np.float32)
        examples = [
            Candidate(id=e.id, source="curated", kind="example", status="curated", question=e.question,
                      answer=domain.answer_text(e.answer), vector=vectors[i],
                      extra={"value": e.answer, "full": domain.answer_text(e.answer, hide_derived=False)})
            for i, e in enumerate(domain.examples)
        ]
        off = len(domain.examples)
        negatives = [
            Candidate(id=n.id, source="curated", kind="negative", status="curated", question=n.question,
                      answer=domain.answer_text(n.right), wrong=domain.answer_text(n.wrong), reason=n.why,
                      vector=vectors[off + i])
            for i, n in enumerate(domain.negatives)
        ]
        teaching = (np.concatenate([vectors[: len(domain.examples)], vectors[off + len(domain.negatives):]])
                    if domain.learnt else vectors[: len(domain.examples)])
        judged = self._judge(domain, teaching) if examples else {}
        protos = prototypes_of(domain, teaching) if examples else Prototypes()
        with self._lock:
            for cache in (self._curated, self._judged, self._protos):
                cache.pop(domain.cache_key, None)  # re-inserted last: the oldest copies go first
                while len(cache) >= self.MAX_DOMAINS:
                    cache.pop(next(iter(cache)))
            self._curated[domain.cache_key] = (key, examples, negatives)
            self._judged[domain.cache_key] = judged
            self._protos[domain.cache_key] = protos
        return examples, negatives

    @staticmethod
    def _judge(domain: Domain, vectors: np.ndarray) -> dict[str, Any]:
        """Leave-one-out precision of each voted field on the examples it learns from (domains/judgement.py)."""
        if domain.declarative is None or not domain.declarative.spec.vote:
            return {}
        context = domain.declarative.spec.context
        return reliability([(e.id, e.question, e.answer) for e in domain.teaching], vectors,
                           domain.declarative.spec.vote, body=lambda q: request_body(q, context),
                           enums=domain.declarative.vote_labels(), glossed=domain.glossed, rules=domain.gloss_rules,
                           mentions=domain.declarative.mentions)

    def vote_prototypes(self, domain: Domain) -> Prototypes:
        """The voted fields' label prototypes from the curated examples (domains/prototypes.py)."""
        self.curated(domain)
        return self._protos.get(domain.cache_key) or Prototypes()

    def vote_reliability(self, domain: Domain) -> dict[str, Any]:
        self.curated(domain)
        return dict(self._judged.get(domain.cache_key, {}))

    # -- memory --------------------------------------------------------------------------------------

    def _search_memory(self, found: Retrieved, domain: Domain, ask: AskRequest, question: str,
                       params: SelectionSettings) -> None:
        try:
            if ask.switches.examples and params.use_examples:
                # unreviewed answers are kept, but teach nothing unless learn = "all" (no self-poisoning)
                statuses = POSITIVE_STATUSES if self.settings.learn == "all" else REVIEWED_STATUSES
                found.memory_examples = self._search(found.query, domain, ask, kinds=("example", "interaction"),
                                                     statuses=statuses, limit=params.fetch_k, text=question)
            if ask.switches.negatives and params.use_negatives:
                found.memory_negatives = self._search(found.query, domain, ask, kinds=("negative",), statuses=None,
                                                      limit=max(params.negatives_k * 4, 8), text=question)
            self._memory_down_logged = False
        except StoreError as exc:
            found.memory_available = False
            with self._lock:  # once per outage, also when several requests fail at the same moment
                first, self._memory_down_logged = not self._memory_down_logged, True
            if first:
                log.warning("memory unavailable, answering from curated examples only: %s", exc)

    def _search(self, query: np.ndarray, domain: Domain, ask: AskRequest, *, kinds: tuple[str, ...],
                statuses: tuple[str, ...] | None, limit: int, text: str) -> list[Candidate]:
        as_of: datetime | None = ask.as_of
        hits = self.store.search(query, filters=MemoryFilter(
            tenant=ask.tenant, domain=domain.name, kinds=kinds, statuses=statuses, created_before=as_of,
            exclude_ids=ask.exclude_ids), limit=limit, text=text)
        out = []
        for h in hits:
            value, shown, full = domain.stored_forms(h.record.answer)
            out.append(Candidate(id=h.record.id, source="memory", kind=h.record.kind, status=h.record.status,
                                 question=h.record.question, answer=shown, reason=h.record.reason,
                                 wrong=h.record.wrong, vector=np.asarray(h.vector, dtype=np.float32),
                                 similarity=h.similarity, extra={"value": value, "full": full}))
        return out
