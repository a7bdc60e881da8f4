"""The orchestrator: route -> retrieve/select/assemble -> generate -> validate -> retry -> record -> learn."""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel, Field

from .ask import AskRequest, parse_request
from .assembly import Assembler, Assembly
from .route import Router
from .taught import TaughtDomains
from .attempts import AttemptLoop, Call, InvalidAnswer
from ..llm import LLMBackend, StreamChunk, make_backend
from ..memory.stores import MemoryStore, open_store
from ..config import Settings, load_settings
from ..memory.db import connect
from ..domains import DomainRegistry
from ..memory.embedding import CachedEmbedder, Embedder
from ..memory.onnx_embedding import make_embedder
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
from ..memory.interaction_log import InteractionLog
from ..records import Attempt, Interaction, MemoryRecord, SelectedExample
from ..templating.versions import TemplateStore
from ..templating.engine import TemplateSet, one_version_per_call
from ..llm.tokens import BackendTokenCounter, TokenCounter

__all__ = ["AskResult", "Middleware"]

log = logging.getLogger("rag_middleware.request.pipeline")


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
    taught: int = 0  # reviewed answers the domain had learnt from (request/taught.py)
    confidence_parts: dict[str, float] = Field(default_factory=dict)  # what the confidence was made of

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
        embedding = self.settings.embedding
        inner = embedder or make_embedder(embedding.model, runtime=embedding.runtime, batch_size=embedding.batch_size,
                                          device=embedding.device, quantize=embedding.quantize)
        self.embedder = CachedEmbedder(inner, connect(self.settings.db_path))
        self.store = store or open_store(self.settings)
        self.journal = InteractionLog(self.settings.db_path)
        self._token_counter = token_counter
        self._assembler: Assembler | None = None
        self.router = Router(settings=self.settings, domains=self.domains, assembler=lambda: self.assembler,
                             taught=TaughtDomains(settings=self.settings, domains=self.domains, store=self.store))

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
            counter = self._token_counter or BackendTokenCounter(self.backend)
            self._assembler = Assembler(settings=self.settings, domains=self.domains, templates=self.templates,
                                        embedder=self.embedder, store=self.store,
                                        flat_prompt=self.backend.flat_prompt, token_counter=counter)
        return self._assembler

    # -- public API ----------------------------------------------------------------------------------

    @_one_template_version
    def render(self, request: AskRequest | str | list[dict[str, Any]], /, **fields: Any) -> Assembly:
        """Retrieval, selection and assembly without calling the model, with the template set ``ask`` would
        use: the A/B variant ``user`` is assigned to, or the one ``variant`` names. Keywords: AskRequest's."""
        route = self.router.route(AskRequest.of(request, **fields))
        return route.assembler.prepare(route.domain, parse_request(route.ask.input), route.ask)

    @_one_template_version
    def ask(self, request: AskRequest | str | list[dict[str, Any]], /, **fields: Any) -> AskResult:
        """Answer one request (a question, chat messages, or an AskRequest; keywords are AskRequest's fields:
        domain, tenant, user, variant, as_of, exclude_ids, switches, options, model, learn, max_attempts,
        raise_on_invalid, interaction_id, replay_of). Raises AttemptsExhaustedError (carrying every attempt)
        when no attempt is valid, unless ``raise_on_invalid`` is False: then the invalid result is returned."""
        call = self._start(AskRequest.of(request, **fields))
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
            self._raise_failed(call, result)
        return result

    def _raise_failed(self, call: Call, result: AskResult) -> None:
        ledger, error = call.ledger, call.interaction.error
        if time.perf_counter() >= call.deadline:
            raise GenerationTimeoutError(
                f"no valid answer within the total timeout of {self.settings.retry.total_timeout:g}s "
                f"after {len(ledger)} attempt(s); last errors: {error}")
        if call.route.ask.raise_on_invalid:
            raise AttemptsExhaustedError(f"no valid answer after {len(ledger)} attempt(s); last errors: {error}",
                                         attempts=ledger, result=result)

    def stream(self, request: AskRequest | str | list[dict[str, Any]], /, **fields: Any) -> Iterator[StreamChunk]:
        """Stream a free-text domain's answer live from the model, with the retrieved context injected. The
        interaction is recorded when the stream ends, is closed early (client gone) or fails."""
        ask = AskRequest.of(request, **fields).model_copy(update={"max_attempts": 1})
        with one_version_per_call():  # the assembly and the flat prompt from one template version
            call = self._start(ask)
            if not call.domain.free_text:
                raise RequestError(f"domain {ask.domain!r} validates its answers; use ask() "
                                   "(answers are checked first)")
            generate, attempt = self._attempts.build_request(call, call.assembly, 1)
        chunks = self._attempts.stream(call, generate, attempt)
        interaction = call.interaction
        try:
            yield from chunks
            interaction.status = "answered"
        except GeneratorExit:
            interaction.status, interaction.error = "error", "the client went away before the answer was complete"
            raise
        except RagMiddlewareError as exc:
            interaction.status, interaction.error = "error", exc.one_line()
            raise
        finally:  # the attempt is in the ledger by now: its stream ended, failed or was closed with ours
            interaction.output = interaction.output_text = call.ledger[-1].raw_output if call.ledger else ""
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

    def _start(self, ask: AskRequest) -> Call:
        started = time.perf_counter()
        request = parse_request(ask.input)
        route = self.router.route(ask)
        dom, tenant = route.domain, route.tenant
        assembly = route.assembler.prepare(dom, request, route.ask)
        upstream_model = ask.model or dom.spec.model or getattr(self.backend, "model", "")
        interaction = Interaction(
            tenant=tenant, domain=dom.name, status="error", question=request.question,
            request={"input": ask.input, "domain": dom.name, "tenant": tenant},
            selected=assembly.selected, negatives=assembly.negatives, template_version=assembly.template_version,
            model=upstream_model, backend=self.backend.name, options=assembly.options,
            memory_available=assembly.memory_available, replay_of=ask.replay_of,
        )
        if ask.interaction_id:
            interaction.id = ask.interaction_id
        if route.variant is not None:
            interaction.variant = route.variant.name
        return Call(route=route, request=request, assembly=assembly, interaction=interaction, model=upstream_model,
                    learn=self.settings.learn != "off" if ask.learn is None else ask.learn,
                    max_attempts=ask.max_attempts or self.settings.retry.max_attempts, started=started,
                    deadline=started + self.settings.retry.total_timeout)

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
        interaction.reviewed_sources = _reviewed_sources(assembly, votes)
        interaction.taught = assembly.taught
        if not call.domain.free_text:
            conf = confidence(valid=interaction.status == "validated", output=interaction.output,
                              attempts=len(ledger), votes=votes, similarities=[s.similarity for s in assembly.selected],
                              logprobs=ledger[-1].logprobs if ledger else None)
            interaction.confidence, interaction.confidence_parts = conf["score"], conf
        if learn and interaction.succeeded and assembly.query_vector is not None:
            self._remember(interaction, assembly.query_vector)
        self.journal.write(interaction)

    def _remember(self, interaction: Interaction, vector: Any) -> None:
        """A valid answer enters memory (unreviewed: kept, but it teaches nothing until reviewed or learn = "all")."""
        record = MemoryRecord(
            id=interaction.id, tenant=interaction.tenant, domain=interaction.domain, kind="interaction",
            status="validated" if interaction.status == "validated" else "pending", source="interaction",
            question=interaction.question, answer=interaction.output_text,
            template_version=interaction.template_version, created_at=interaction.created_at,
        )
        try:
            self.store.upsert([record], vector.reshape(1, -1))
        except StoreError as exc:
            interaction.memory_available = False
            log.warning("answer not added to memory: %s", exc)

    @staticmethod
    def _result(interaction: Interaction, assembly: Assembly) -> AskResult:
        last = interaction.attempts[-1] if interaction.attempts else None
        return AskResult(
            interaction_id=interaction.id, domain=interaction.domain, tenant=interaction.tenant,
            status=interaction.status, valid=interaction.succeeded,
            output=interaction.output, text=last.raw_output if last else "", attempts=interaction.attempts,
            selected=interaction.selected, negatives=interaction.negatives,
            template_version=interaction.template_version, model=interaction.model, backend=interaction.backend,
            messages=last.messages if last else assembly.messages, timings_ms=interaction.timings_ms,
            prompt_tokens=interaction.prompt_tokens, completion_tokens=interaction.completion_tokens,
            memory_available=interaction.memory_available, variant=interaction.variant,
            confidence=interaction.confidence, reviewed_sources=interaction.reviewed_sources,
            taught=interaction.taught, confidence_parts=interaction.confidence_parts,
        )


def _reviewed_sources(assembly: Assembly, votes: list[dict[str, Any]]) -> list[str]:
    """The reviewed answers that shaped this one: shown as examples, or voting on a field."""
    shown = [s.id for s in assembly.selected if s.status in REVIEWED_STATUSES]
    voted = [v["id"] for vote in votes for v in vote.get("voters", []) if v.get("reviewed")]
    return list(dict.fromkeys(shown + voted))


def _single_threaded_blas() -> None:
    """NumPy's BLAS threads keep spinning after each matrix-vector product and then fight torch's threads
    for the cores during the next MiniLM pass (measured: 95 ms instead of 10 on 2 cores). One BLAS thread
    is plenty for the vector sizes here. Process-wide, set once."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - declared dependency
        return
    threadpool_limits(1, user_api="blas")
