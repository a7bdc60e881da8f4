"""The orchestrator: route -> retrieve/select/assemble -> generate -> validate -> retry -> record -> learn."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .assembly import Assembler, Assembly, Switches, parse_request
from .attempts import AttemptLoop, Call, InvalidAnswer
from ..llm import LLMBackend, StreamChunk, make_backend
from ..memory.stores import MemoryStore, open_store
from ..config import Settings, load_settings
from ..memory.db import connect
from ..templating.variants import VariantSpec, assign
from ..domains import Domain, DomainRegistry
from ..memory.embedding import CachedEmbedder, Embedder, SentenceTransformerEmbedder
from ..errors import (
    AttemptsExhaustedError,
    DataDirError,
    GenerationTimeoutError,
    RagMiddlewareError,
    RequestError,
    StoreError,
)
from .confidence import confidence
from ..domains.votes import REVIEWED_STATUSES
from ..memory.journal import InteractionLog
from ..records import Attempt, Interaction, MemoryRecord, SelectedExample
from ..templating.versions import TemplateStore
from ..templating.engine import TemplateSet, one_version_per_call
from ..llm.tokens import TokenCounter, make_token_counter

__all__ = ["AskResult", "Middleware"]

log = logging.getLogger("rag_middleware.request.pipeline")
TENANT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class AskResult(BaseModel):
    interaction_id: str
    domain: str
    tenant: str
    status: str
    valid: bool
    output: Any = None
    text: str = ""
    attempts: list[Attempt] = Field(default_factory=list)
    selected: list[SelectedExample] = Field(default_factory=list)
    negatives: list[SelectedExample] = Field(default_factory=list)
    template_version: str = ""
    model: str = ""
    backend: str = ""
    messages: list[dict[str, Any]] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    memory_available: bool = True
    variant: str = ""  # the A/B template-set variant ("" when the domain has none)
    confidence: float | None = None  # confidence.py (None for free text)
    reviewed_sources: list[str] = Field(default_factory=list)  # reviewed answers that shaped this one

    @property
    def first_try_valid(self) -> bool:
        return self.valid and len(self.attempts) == 1


def _one_template_version(method: Callable[..., Any]) -> Callable[..., Any]:
    """Every render of one call (assembly, repair turns, flat prompts) uses one template snapshot, so a hot
    reload between two renders never splits a request across versions."""

    @functools.wraps(method)
    def pinned(self: Middleware, *args: Any, **kwargs: Any) -> Any:
        with one_version_per_call():
            return method(self, *args, **kwargs)

    return pinned


class Middleware:
    """The public entry point. Thread-safe; construct once and share."""

    def __init__(self, settings: Settings | None = None, *, backend: LLMBackend | None = None,
                 embedder: Embedder | None = None, store: MemoryStore | None = None,
                 token_counter: TokenCounter | None = None) -> None:
        self.settings = settings or load_settings()
        self._check_data_dir()
        _single_threaded_blas()
        self.domains = DomainRegistry(self.settings.knowledge_base, overrides=self.settings.data_dir / "overrides")
        # every version that goes live is stored, so each record's template_version names a stored snapshot
        self.templates = TemplateSet(self.settings.prompts_dir,
                                     on_version=TemplateStore.from_settings(self.settings).save)
        self.backend = backend or make_backend(self.settings)
        self._attempts = AttemptLoop(self.backend, self.settings)
        inner = embedder or SentenceTransformerEmbedder(self.settings.embedding.model,
                                                        batch_size=self.settings.embedding.batch_size,
                                                        device=self.settings.embedding.device)
        self.embedder = CachedEmbedder(inner, connect(self.settings.db_path))
        self.store = store or open_store(self.settings)
        self.journal = InteractionLog(self.settings.db_path)
        self._token_counter = token_counter
        self._assembler: Assembler | None = None
        self._variant_assemblers: dict[Path, Assembler] = {}
        self._variant_lock = threading.Lock()

    def _check_data_dir(self) -> None:
        data_dir = self.settings.data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataDirError(f"data dir {data_dir} cannot be created: {exc.strerror or exc}") from None
        if not os.access(data_dir, os.W_OK | os.X_OK):
            raise DataDirError(f"data dir {data_dir} is not writable")

    @property
    def assembler(self) -> Assembler:
        if self._assembler is None:
            counter = self._token_counter or make_token_counter(self.settings.llm.tokenizer,
                                                                gguf_path=self.backend.gguf_path)
            self._assembler = Assembler(settings=self.settings, domains=self.domains, templates=self.templates,
                                        embedder=self.embedder, store=self.store,
                                        flat_prompt=self.backend.flat_prompt, token_counter=counter)
        return self._assembler

    # -- public API ----------------------------------------------------------------------------------

    @_one_template_version
    def render(self, question_or_messages: str | list[dict[str, Any]], *, domain: str, tenant: str | None = None,
               switches: Switches = Switches(), as_of: datetime | None = None,
               exclude_ids: frozenset[str] = frozenset(), user: str | None = None,
               variant: str | None = None) -> Assembly:
        """Retrieval, selection and assembly without calling the model, with the template set ``ask`` would
        use: the A/B variant ``user`` is assigned to, or the one ``variant`` names."""
        tenant = self._tenant(tenant)
        dom = self.domains.get(domain)
        chosen = assign(dom.spec.variants, domain=dom.name, tenant=tenant, key=user, forced=variant)
        return self._assembler_for(dom, chosen).prepare(domain, question_or_messages, tenant=tenant, as_of=as_of,
                                                        exclude_ids=exclude_ids, switches=switches)

    @_one_template_version
    def ask(self, question_or_messages: str | list[dict[str, Any]], *, domain: str, tenant: str | None = None,
            as_of: datetime | None = None, exclude_ids: frozenset[str] = frozenset(), learn: bool | None = None,
            switches: Switches = Switches(), max_attempts: int | None = None,
            options: dict[str, Any] | None = None, raise_on_invalid: bool = True, model: str | None = None,
            interaction_id: str | None = None, user: str | None = None, variant: str | None = None,
            replay_of: str | None = None) -> AskResult:
        """Answer one request. Raises AttemptsExhaustedError (carrying every attempt) when no attempt is valid,
        unless ``raise_on_invalid`` is False, in which case the invalid result is returned.

        ``model`` overrides the upstream model (else the domain's, else the backend's); ``interaction_id``
        lets a caller (the server) know the record's id before the answer exists. ``user`` (or a session id)
        keeps an A/B-tested domain's variant sticky; ``variant`` forces one. ``replay_of`` marks the record as a
        replay of that interaction, so it never counts as traffic or comes back as a conversation to replay."""
        call = self._start(question_or_messages, domain=domain, tenant=tenant, as_of=as_of, exclude_ids=exclude_ids,
                           learn=learn, switches=switches, max_attempts=max_attempts, options=options, model=model,
                           interaction_id=interaction_id, user=user, variant=variant, replay_of=replay_of)
        interaction, ledger = call.interaction, call.ledger
        final = call.assembly
        try:
            if call.domain.free_text:
                completion, attempt = self._attempts.attempt(call, call.assembly, 1)
                ledger.append(attempt)
                interaction.status = "answered"
                interaction.output_text = interaction.output = completion.text
            else:
                final = self._attempts.run(call)
                interaction.status = "validated"
                interaction.output = ledger[-1].output
                interaction.output_text = json.dumps(interaction.output, ensure_ascii=False)
        except InvalidAnswer:
            interaction.status = "failed"
            interaction.error = "; ".join(ledger[-1].errors) if ledger else "no attempt was made"
        except RagMiddlewareError as exc:
            interaction.status = "error"
            interaction.error = exc.one_line()
            self._finish(call, final, learn=False)
            raise
        self._finish(call, final, learn=call.learn)
        result = self._result(interaction, final)
        if interaction.status == "failed":
            if time.perf_counter() >= call.deadline:
                raise GenerationTimeoutError(
                    f"no valid answer within the total timeout of {self.settings.retry.total_timeout:g}s "
                    f"after {len(ledger)} attempt(s); last errors: {interaction.error}")
            if raise_on_invalid:
                raise AttemptsExhaustedError(
                    f"no valid answer after {len(ledger)} attempt(s); last errors: {interaction.error}",
                    attempts=ledger, result=result)
        return result

    def stream(self, question_or_messages: str | list[dict[str, Any]], *, domain: str, tenant: str | None = None,
               learn: bool | None = None, options: dict[str, Any] | None = None, model: str | None = None,
               interaction_id: str | None = None, user: str | None = None) -> Iterator[StreamChunk]:
        """Stream a free-text domain's answer live from the model, with the retrieved context injected. The
        interaction is recorded when the stream ends, is closed early (client gone) or fails."""
        with one_version_per_call():  # the assembly and the flat prompt from one template version
            call = self._start(question_or_messages, domain=domain, tenant=tenant, as_of=None,
                               exclude_ids=frozenset(), learn=learn, switches=Switches(), max_attempts=1,
                               options=options, model=model, interaction_id=interaction_id, user=user)
            if not call.domain.free_text:
                raise RequestError(f"domain {domain!r} validates its answers; use ask() (answers are checked first)")
            request, attempt = self._attempts.build_request(call, call.assembly, 1)
        interaction = call.interaction
        pieces: list[str] = []
        started = time.perf_counter()
        try:
            for chunk in self.backend.stream(request):
                if chunk.done and chunk.completion is not None:
                    attempt.done_reason = chunk.completion.done_reason
                    attempt.prompt_tokens = chunk.completion.prompt_tokens
                    attempt.completion_tokens = chunk.completion.completion_tokens
                else:
                    pieces.append(chunk.text)
                yield chunk
            interaction.status = "answered"
        except GeneratorExit:
            interaction.status, interaction.error = "error", "the client went away before the answer was complete"
            raise
        except RagMiddlewareError as exc:
            interaction.status, interaction.error = "error", exc.one_line()
            attempt.error_kind, attempt.errors = "transport", [exc.one_line()]
            raise
        finally:
            attempt.raw_output = "".join(pieces)
            attempt.duration_ms = (time.perf_counter() - started) * 1000
            call.ledger.append(attempt)
            interaction.output = interaction.output_text = attempt.raw_output
            self._finish(call, call.assembly, learn=call.learn and interaction.status == "answered")

    def close(self) -> None:
        self.store.close()
        self.journal.close()
        self.backend.close()

    def __enter__(self) -> Middleware:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop ------------------------------------------------------------------------------------

    def _start(self, question_or_messages: str | list[dict[str, Any]], *, domain: str, tenant: str | None,
               as_of: datetime | None, exclude_ids: frozenset[str], learn: bool | None, switches: Switches,
               max_attempts: int | None, options: dict[str, Any] | None, model: str | None,
               interaction_id: str | None, user: str | None = None, variant: str | None = None,
               replay_of: str | None = None) -> Call:
        started = time.perf_counter()
        tenant = self._tenant(tenant)
        request = parse_request(question_or_messages)
        dom = self.domains.get(domain)
        chosen = assign(dom.spec.variants, domain=dom.name, tenant=tenant, key=user, forced=variant)
        assembler = self._assembler_for(dom, chosen)
        assembly = assembler.prepare(dom.name, request, tenant=tenant, as_of=as_of, exclude_ids=exclude_ids,
                                     switches=switches, options=options)
        upstream_model = model or dom.spec.model or getattr(self.backend, "model", "")
        interaction = Interaction(
            tenant=tenant, domain=dom.name, status="error", question=request.question,
            request={"input": question_or_messages, "domain": dom.name, "tenant": tenant},
            selected=assembly.selected, negatives=assembly.negatives, template_version=assembly.template_version,
            model=upstream_model, backend=self.backend.name, options=assembly.options,
            memory_available=assembly.memory_available, replay_of=replay_of,
        )
        if interaction_id:
            interaction.id = interaction_id
        if chosen is not None:
            interaction.variant = chosen.name
        return Call(domain=dom, request=request, assembly=assembly, interaction=interaction, switches=switches,
                     as_of=as_of, exclude_ids=exclude_ids, options=options, model=upstream_model,
                     learn=self.settings.learn != "off" if learn is None else learn,
                     max_attempts=max_attempts or self.settings.retry.max_attempts, started=started,
                     deadline=started + self.settings.retry.total_timeout, assembler=assembler)

    def _assembler_for(self, domain: Domain, variant: VariantSpec | None) -> Assembler:
        """The assembler that renders with the variant's template set (the default one without a variant)."""
        if variant is None or variant.prompts is None:
            return self.assembler
        root = (domain.path / variant.prompts).resolve()
        with self._variant_lock:
            found = self._variant_assemblers.get(root)
            if found is None:
                base = self.assembler
                found = Assembler(settings=self.settings, domains=self.domains, templates=self.templates.derive(root),
                                  embedder=self.embedder, store=self.store, flat_prompt=base.flat_prompt,
                                  token_counter=base.tokens)
                self._variant_assemblers[root] = found
            return found

    # -- recording -----------------------------------------------------------------------------------

    def _finish(self, call: Call, assembly: Assembly, *, learn: bool) -> None:
        interaction, ledger = call.interaction, call.ledger
        interaction.attempts = ledger
        interaction.selected = assembly.selected
        interaction.prompt_tokens = sum(a.prompt_tokens for a in ledger)
        interaction.completion_tokens = sum(a.completion_tokens for a in ledger)
        timings = dict(assembly.timings_ms)
        timings["generate"] = sum(a.duration_ms for a in ledger)
        timings["total"] = (time.perf_counter() - call.started) * 1000
        interaction.timings_ms = {k: round(v, 2) for k, v in timings.items()}
        votes = ledger[-1].votes if ledger else []
        interaction.reviewed_sources = list(dict.fromkeys(
            [s.id for s in assembly.selected if s.status in REVIEWED_STATUSES]
            + [v["id"] for vote in votes for v in vote.get("voters", []) if v.get("reviewed")]))
        if not call.domain.free_text:
            conf = confidence(valid=interaction.status == "validated", output=interaction.output,
                              attempts=len(ledger), votes=votes, similarities=[s.similarity for s in assembly.selected])
            interaction.confidence, interaction.confidence_parts = conf["score"], conf
        if learn and interaction.status in ("validated", "answered") and assembly.query_vector is not None:
            record = MemoryRecord(
                id=interaction.id, tenant=interaction.tenant, domain=interaction.domain, kind="interaction",
                status="validated" if interaction.status == "validated" else "pending", source="interaction",
                question=interaction.question, answer=interaction.output_text,
                template_version=interaction.template_version, created_at=interaction.created_at,
            )
            try:
                self.store.upsert([record], assembly.query_vector.reshape(1, -1))
            except StoreError as exc:
                interaction.memory_available = False
                log.warning("answer not added to memory: %s", exc)
        self.journal.write(interaction)

    @staticmethod
    def _result(interaction: Interaction, assembly: Assembly) -> AskResult:
        last = interaction.attempts[-1] if interaction.attempts else None
        return AskResult(
            interaction_id=interaction.id, domain=interaction.domain, tenant=interaction.tenant,
            status=interaction.status, valid=interaction.status in ("validated", "answered"),
            output=interaction.output, text=last.raw_output if last else "", attempts=interaction.attempts,
            selected=interaction.selected, negatives=interaction.negatives,
            template_version=interaction.template_version, model=interaction.model, backend=interaction.backend,
            messages=last.messages if last else assembly.messages, timings_ms=interaction.timings_ms,
            prompt_tokens=interaction.prompt_tokens, completion_tokens=interaction.completion_tokens,
            memory_available=interaction.memory_available, variant=interaction.variant,
            confidence=interaction.confidence, reviewed_sources=interaction.reviewed_sources,
        )

    def _tenant(self, tenant: str | None) -> str:
        tenant = tenant or self.settings.default_tenant
        if not TENANT_RE.match(tenant):
            raise RequestError(f"tenant {tenant!r} must match [A-Za-z0-9_-]{{1,64}}")
        return tenant


def _single_threaded_blas() -> None:
    """NumPy's BLAS threads keep spinning after each matrix-vector product and then fight torch's threads
    for the cores during the next MiniLM pass (measured: 95 ms instead of 10 on 2 cores). One BLAS thread
    is plenty for the vector sizes here. Process-wide, set once."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - declared dependency
        return
    threadpool_limits(1, user_api="blas")
