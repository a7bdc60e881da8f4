"""The orchestrator: route -> retrieve/select/assemble -> generate -> validate -> retry -> record -> learn."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from .assembly import Assembler, Assembly, Request, Switches, parse_request
from .backends.llm import Completion, GenerateRequest, LLMBackend, make_backend
from .backends.store import MemoryStore, open_store
from .config import Settings, load_settings
from .db import connect
from .domains import Domain, DomainRegistry
from .embedding import CachedEmbedder, Embedder, SentenceTransformerEmbedder
from .errors import (
    AttemptsExhaustedError,
    DataDirError,
    GenerationTimeoutError,
    RagMiddlewareError,
    RequestError,
    StoreError,
    TransportError,
)
from .journal import InteractionLog
from .records import Attempt, Interaction, MemoryRecord, SelectedExample
from .templates import TemplateSet
from .tokens import TokenCounter, make_token_counter

__all__ = ["AskResult", "Middleware"]

log = logging.getLogger("rag_middleware.pipeline")
TENANT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_ECHO_CHARS = 2000  # how much of a bad answer is shown back to the model in a repair turn


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

    @property
    def first_try_valid(self) -> bool:
        return self.valid and len(self.attempts) == 1


class _InvalidAnswer(Exception):
    """One attempt's answer failed validation (internal: drives the tenacity loop)."""


class Middleware:
    """The public entry point. Thread-safe; construct once and share."""

    def __init__(self, settings: Settings | None = None, *, backend: LLMBackend | None = None,
                 embedder: Embedder | None = None, store: MemoryStore | None = None,
                 token_counter: TokenCounter | None = None) -> None:
        self.settings = settings or load_settings()
        self._check_data_dir()
        self.domains = DomainRegistry(self.settings.knowledge_base)
        self.templates = TemplateSet(self.settings.prompts_dir)
        self.backend = backend or make_backend(self.settings)
        inner = embedder or SentenceTransformerEmbedder(self.settings.embedding.model,
                                                        batch_size=self.settings.embedding.batch_size,
                                                        device=self.settings.embedding.device)
        self.embedder = CachedEmbedder(inner, connect(self.settings.db_path))
        self.store = store or open_store(self.settings)
        self.journal = InteractionLog(self.settings.db_path)
        self._token_counter = token_counter
        self._assembler: Assembler | None = None

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

    def render(self, question_or_messages: str | list[dict[str, Any]], *, domain: str, tenant: str | None = None,
               switches: Switches = Switches(), as_of: datetime | None = None,
               exclude_ids: frozenset[str] = frozenset()) -> Assembly:
        """Retrieval, selection and assembly without calling the model."""
        return self.assembler.prepare(domain, question_or_messages, tenant=self._tenant(tenant), as_of=as_of,
                                      exclude_ids=exclude_ids, switches=switches)

    def ask(self, question_or_messages: str | list[dict[str, Any]], *, domain: str, tenant: str | None = None,
            as_of: datetime | None = None, exclude_ids: frozenset[str] = frozenset(), learn: bool | None = None,
            switches: Switches = Switches(), max_attempts: int | None = None,
            options: dict[str, Any] | None = None, raise_on_invalid: bool = True) -> AskResult:
        """Answer one request. Raises AttemptsExhaustedError (carrying every attempt) when no attempt is valid,
        unless ``raise_on_invalid`` is False, in which case the invalid result is returned."""
        started = time.perf_counter()
        tenant = self._tenant(tenant)
        request = parse_request(question_or_messages)
        dom = self.domains.get(domain)
        learn = self.settings.learn if learn is None else learn
        max_attempts = max_attempts or self.settings.retry.max_attempts
        assembly = self.assembler.prepare(dom.name, request, tenant=tenant, as_of=as_of, exclude_ids=exclude_ids,
                                          switches=switches, options=options)
        interaction = Interaction(
            tenant=tenant, domain=dom.name, status="error", question=request.question,
            request={"input": question_or_messages, "domain": dom.name, "tenant": tenant},
            selected=assembly.selected, negatives=assembly.negatives, template_version=assembly.template_version,
            model=getattr(self.backend, "model", ""), backend=self.backend.name, options=assembly.options,
            memory_available=assembly.memory_available,
        )
        ledger: list[Attempt] = []
        deadline = started + self.settings.retry.total_timeout
        final = assembly
        try:
            if dom.free_text:
                completion, attempt = self._attempt(dom, assembly, 1, max_attempts, ledger, deadline)
                ledger.append(attempt)
                interaction.status = "answered"
                interaction.output_text = interaction.output = completion.text
            else:
                final = self._validated(dom, assembly, request, max_attempts, ledger, deadline,
                                        switches=switches, as_of=as_of, exclude_ids=exclude_ids, options=options)
                interaction.status = "validated"
                interaction.output = ledger[-1].output
                interaction.output_text = json.dumps(interaction.output, ensure_ascii=False)
        except _InvalidAnswer:
            interaction.status = "failed"
            interaction.error = "; ".join(ledger[-1].errors) if ledger else "no attempt was made"
        except RagMiddlewareError as exc:
            interaction.status = "error"
            interaction.error = exc.one_line()
            self._finish(interaction, ledger, assembly, started, learn=False)
            raise
        self._finish(interaction, ledger, final, started, learn=learn)
        result = self._result(interaction, final)
        if interaction.status == "failed":
            if time.perf_counter() >= deadline:
                raise GenerationTimeoutError(
                    f"no valid answer within the total timeout of {self.settings.retry.total_timeout:g}s "
                    f"after {len(ledger)} attempt(s); last errors: {interaction.error}")
            if raise_on_invalid:
                raise AttemptsExhaustedError(
                    f"no valid answer after {len(ledger)} attempt(s); last errors: {interaction.error}",
                    attempts=ledger, result=result)
        return result

    def close(self) -> None:
        self.store.close()
        self.journal.close()
        self.backend.close()

    def __enter__(self) -> Middleware:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop ------------------------------------------------------------------------------------

    def _validated(self, dom: Domain, assembly: Assembly, request: Request, max_attempts: int,
                   ledger: list[Attempt], deadline: float, **prepare_kwargs: Any) -> Assembly:
        """Validation attempts in a tenacity loop. Each retry carries the errors and escalates."""
        current = assembly
        retrying = Retrying(stop=stop_after_attempt(max_attempts) | stop_after_delay(max(0.0, deadline - time.perf_counter())),
                            retry=retry_if_exception_type(_InvalidAnswer), reraise=True)
        for tenacity_attempt in retrying:
            with tenacity_attempt:
                number = tenacity_attempt.retry_state.attempt_number
                current = self._escalate(dom, current, request, number, ledger, **prepare_kwargs)
                completion, attempt = self._attempt(dom, current, number, max_attempts, ledger, deadline)
                if completion.done_reason == "length":
                    attempt.error_kind = "truncated"
                    attempt.errors = [f"(root): the answer was cut off after {completion.completion_tokens} tokens; "
                                      "answer with a shorter, complete JSON object"]
                else:
                    outcome = dom.validator.validate_text(completion.text, request.question,
                                                          repair=prepare_kwargs["switches"].repair)
                    attempt.repairs = outcome.repairs
                    if outcome.ok:
                        attempt.output = outcome.value
                    else:
                        attempt.error_kind = "validation"
                        attempt.errors = outcome.errors
                ledger.append(attempt)
                if attempt.errors:
                    raise _InvalidAnswer()
        return current

    def _escalate(self, dom: Domain, current: Assembly, request: Request, number: int, ledger: list[Attempt], *,
                  switches: Switches, as_of: datetime | None, exclude_ids: frozenset[str],
                  options: dict[str, Any] | None) -> Assembly:
        """Progressive prompting. 1: plain. 2+: the errors in a repair turn, temperature down. 3+: more
        examples. After a truncation: a larger num_predict and one example fewer."""
        if number == 1:
            return current
        previous = ledger[-1]
        truncated = previous.error_kind == "truncated"
        opts = dict(options or {})
        if truncated:
            opts["num_predict"] = min(int(current.options["num_predict"]) * 2,
                                      max(64, int(current.options["num_ctx"]) // 2))
        extra = 2 if number >= 3 and not truncated else 0
        drop = 1 if truncated else 0
        if truncated or extra:
            current = self.assembler.prepare(dom.name, request, tenant=current.tenant, as_of=as_of,
                                             exclude_ids=exclude_ids, switches=switches, extra_examples=extra,
                                             drop_examples=drop, options=opts)
        return current

    def _attempt(self, dom: Domain, assembly: Assembly, number: int, max_attempts: int, ledger: list[Attempt],
                 deadline: float) -> tuple[Completion, Attempt]:
        messages = [dict(m) for m in assembly.messages]  # never mutate the caller's or the assembly's messages
        options = dict(assembly.options)
        if number > 1 and ledger:
            previous = ledger[-1]
            repair = self.assembler.repair_turn(dom, errors=previous.errors, attempt=number,
                                                max_attempts=max_attempts,
                                                previous_output=previous.raw_output[:MAX_ECHO_CHARS],
                                                truncated=previous.error_kind == "truncated")
            # the repair turn replaces the previous one: the conversation never grows past one repair
            messages += [{"role": "assistant", "content": previous.raw_output[:MAX_ECHO_CHARS], "kind": "rejected"},
                         {"role": "user", "content": repair, "kind": "repair"}]
            options["temperature"] = 0.0 if number == 2 else min(0.3 * (number - 2), 0.9)
        prompt = self.assembler.flatten(dom, messages) if self.backend.flat_prompt else None
        sent = {_request_key(a.messages, a.prompt, a.options) for a in ledger}
        while _request_key(messages, prompt, options) in sent:  # never send an identical request twice
            options["seed"] = int(options.get("seed", 0)) + 1
            options["temperature"] = max(float(options.get("temperature", 0.0)), 0.3)
        request = GenerateRequest(model=dom.spec.model or getattr(self.backend, "model", ""), messages=messages,
                                  prompt=prompt, json_schema=assembly.json_schema, options=options,
                                  keep_alive=self.settings.llm.keep_alive)
        attempt = Attempt(number=number, messages=messages, prompt=prompt, options=options)
        started = time.perf_counter()
        try:
            completion = self._call(request, deadline, attempt)
        except RagMiddlewareError as exc:
            attempt.error_kind = "timeout" if isinstance(exc, GenerationTimeoutError) else "transport"
            attempt.errors = [exc.one_line()]
            attempt.duration_ms = (time.perf_counter() - started) * 1000
            ledger.append(attempt)
            raise
        attempt.raw_output = completion.text
        attempt.done_reason = completion.done_reason
        attempt.prompt_tokens = completion.prompt_tokens
        attempt.completion_tokens = completion.completion_tokens
        attempt.duration_ms = (time.perf_counter() - started) * 1000
        return completion, attempt

    def _call(self, request: GenerateRequest, deadline: float, attempt: Attempt) -> Completion:
        """One model call; connection errors, timeouts and 5xx are retried with jittered exponential backoff."""
        cfg = self.settings.retry
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise GenerationTimeoutError(f"total timeout of {cfg.total_timeout:g}s reached before the call")
        retrying = Retrying(
            retry=retry_if_exception_type(TransportError),
            wait=wait_random_exponential(multiplier=cfg.backoff_initial, max=cfg.backoff_max),
            stop=stop_after_attempt(cfg.transport_attempts) | stop_after_delay(remaining),
            reraise=True,
        )
        for transport_attempt in retrying:
            with transport_attempt:
                attempt.transport_retries = transport_attempt.retry_state.attempt_number - 1
                request.timeout = max(0.1, min(cfg.request_timeout, deadline - time.perf_counter()))
                return self.backend.generate(request)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- recording -----------------------------------------------------------------------------------

    def _finish(self, interaction: Interaction, ledger: list[Attempt], assembly: Assembly, started: float, *,
                learn: bool) -> None:
        interaction.attempts = ledger
        interaction.selected = assembly.selected
        interaction.prompt_tokens = sum(a.prompt_tokens for a in ledger)
        interaction.completion_tokens = sum(a.completion_tokens for a in ledger)
        timings = dict(assembly.timings_ms)
        timings["generate"] = sum(a.duration_ms for a in ledger)
        timings["total"] = (time.perf_counter() - started) * 1000
        interaction.timings_ms = {k: round(v, 2) for k, v in timings.items()}
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
            memory_available=interaction.memory_available,
        )

    def _tenant(self, tenant: str | None) -> str:
        tenant = tenant or self.settings.default_tenant
        if not TENANT_RE.match(tenant):
            raise RequestError(f"tenant {tenant!r} must match [A-Za-z0-9_-]{{1,64}}")
        return tenant


def _request_key(messages: list[dict[str, Any]], prompt: str | None, options: dict[str, Any]) -> str:
    blob = json.dumps([messages, prompt, options], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
