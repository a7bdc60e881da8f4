"""Retrieval, selection and prompt assembly: everything before the model is called.

``Assembler.prepare`` embeds the request once, gathers candidates from the curated examples and the memory
store, selects examples and negatives, and renders the messages (and, for base models, the flat prompt)
within the token budget. ``prompts render`` and the pipeline both go through it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..memory.stores.base import MemoryStore
from ..config import SelectionSettings, Settings
from ..domains import Domain, DomainRegistry
from ..memory.embedding import CachedEmbedder
from ..domains.grounding import request_body
from ..domains.votes import REVIEWED_STATUSES, Neighbour, field_votes, gate, parse_answer, reliability
from ..domains.clauses import StepGuide
from ..errors import RequestError, StoreError
from ..records import POSITIVE_STATUSES, MemoryFilter, SelectedExample
from .selection import Candidate, fill_budget, rank_candidates, select_negatives
from ..templating.engine import TemplateSet
from ..llm.tokens import TokenCounter

__all__ = ["Assembler", "Assembly", "Request", "Switches", "parse_request"]

log = logging.getLogger("rag_middleware.request.assembly")
MESSAGE_OVERHEAD = 6  # tokens a chat turn costs beyond its text (role markers, separators)
DEFAULT_OPTIONS = {"temperature": 0.0, "seed": 42}
FLAT_STOP = ("\nRequest:", "\nReview:")  # the turn markers completion.j2 writes


@dataclass(frozen=True)
class Switches:
    """Turn parts of the assembly off (ablations, replay flags). None = the domain's own setting."""

    memory: bool = True
    examples: bool = True
    negatives: bool = True
    cot: bool | None = None
    repair: bool = True  # the domain's deterministic repair before validation
    guide: bool = True  # the domain's step guidance (labelled clauses steer the grammar)
    ground: bool = True  # grounded fields admit only values from the request
    derive: bool = True  # derived fields are filled by their map, never asked of the model
    vote: bool = True  # neighbours vote on voted fields; a confident vote narrows the grammar
    harden: bool = True  # near misses snapped, repeats dropped, lists bounded
    hooks: bool = True  # the domain's Python hooks (grammar, repair, clause split/rule); off: data only


class Request(BaseModel):
    """What is being answered: the last user turn, with earlier turns as context."""

    question: str
    history: list[dict[str, Any]] = Field(default_factory=list)
    system: str = ""


def parse_request(question_or_messages: str | list[dict[str, Any]]) -> Request:
    if isinstance(question_or_messages, str):
        text = question_or_messages.strip()
        if not text:
            raise RequestError("the question is empty")
        return Request(question=text)
    if not isinstance(question_or_messages, list) or not question_or_messages:
        raise RequestError("messages must be a non-empty list of {role, content}")
    messages = []
    for i, msg in enumerate(question_or_messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("system", "user", "assistant", "tool"):
            raise RequestError(f"messages[{i}] needs a role of system, user, assistant or tool")
        if not isinstance(msg.get("content", ""), str):
            raise RequestError(f"messages[{i}].content must be a string")
        messages.append({"role": msg["role"], "content": msg.get("content") or ""})
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None or not messages[last_user]["content"].strip():
        raise RequestError("the messages have no non-empty user turn to answer")
    system = "\n\n".join(m["content"] for m in messages[:last_user] if m["role"] == "system" and m["content"])
    history = [m for m in messages[:last_user] if m["role"] != "system"]
    return Request(question=messages[last_user]["content"].strip(), history=history, system=system)


class Assembly(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    domain: str
    tenant: str
    question: str
    query_vector: Any = Field(default=None, exclude=True)
    messages: list[dict[str, Any]]
    prompt: str | None = None
    json_schema: dict[str, Any] | None = None
    options: dict[str, Any]
    selected: list[SelectedExample]
    negatives: list[SelectedExample]
    template_version: str
    timings_ms: dict[str, float]
    prompt_tokens: int
    budget: dict[str, int]
    memory_available: bool = True
    cot: bool = False
    steps: list[list[str]] = Field(default_factory=list)  # step guidance given to the grammar
    votes: list[dict[str, Any]] = Field(default_factory=list)  # label votes (domains/votes.py)
    grammar_notes: list[str] = Field(default_factory=list)  # what the declarative mechanisms did to the grammar


class Assembler:
    def __init__(self, *, settings: Settings, domains: DomainRegistry, templates: TemplateSet,
                 embedder: CachedEmbedder, store: MemoryStore, flat_prompt: bool,
                 token_counter: TokenCounter) -> None:
        self.settings = settings
        self.domains = domains
        self.templates = templates
        self.embedder = embedder
        self.store = store
        self.flat_prompt = flat_prompt
        self.tokens = token_counter
        self._curated: dict[str, tuple[tuple[int, int, int], list[Candidate], list[Candidate]]] = {}
        self._guides: dict[str, tuple[int, StepGuide]] = {}
        self._judged: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._memory_down_logged = False

    # -- parameters ----------------------------------------------------------------------------------

    def selection_params(self, domain: Domain) -> SelectionSettings:
        return self.settings.selection.model_copy(update=domain.spec.selection)

    def options(self, domain: Domain) -> dict[str, Any]:
        opts = dict(DEFAULT_OPTIONS)
        opts.update(domain.spec.options)
        opts.setdefault("num_predict", self.selection_params(domain).reserve_output_tokens)
        if self.flat_prompt:  # a base model runs on past the answer into the next "Request:" of the layout
            opts.setdefault("stop", list(FLAT_STOP))
        opts["num_ctx"] = min(int(opts.get("num_ctx", self.settings.llm.num_ctx)), self.settings.llm.num_ctx)
        return opts

    # -- candidates ----------------------------------------------------------------------------------

    def curated(self, domain: Domain) -> tuple[list[Candidate], list[Candidate]]:
        """Curated examples and negatives with their vectors, embedded once per content (cached by hash)."""
        # a reloaded domain is a new object; the lengths catch examples added to a loaded one in place
        key = (id(domain), len(domain.examples), len(domain.negatives))
        with self._lock:
            cached = self._curated.get(domain.name)
            if cached and cached[0] == key:
                return cached[1], cached[2]
        texts = [e.question for e in domain.examples] + [n.question for n in domain.negatives]
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
        judged: dict[str, Any] = {}
        if domain.declarative is not None and domain.declarative.spec.vote and examples:
            context = domain.declarative.spec.context
            judged = reliability([(e.id, e.question, e.answer) for e in domain.examples],
                                 vectors[: len(domain.examples)], domain.declarative.spec.vote,
                                 body=lambda q: request_body(q, context))
        with self._lock:
            self._curated[domain.name] = (key, examples, negatives)
            self._judged[domain.name] = judged
        return examples, negatives

    def vote_reliability(self, domain: Domain) -> dict[str, Any]:
        """Leave-one-out precision of each voted field on the curated examples (domains/votes.py)."""
        self.curated(domain)
        return dict(self._judged.get(domain.name, {}))

    def guide(self, domain: Domain, *, hooks: bool = True) -> StepGuide | None:
        """The per-clause vote; ``hooks=False``: the core splitter and the YAML rules only."""
        if domain.split is None:
            return None
        if not hooks and domain.plain_steps is None:
            return None  # a legacy ``steps:`` section is all Python
        spec = domain.spec.steps or domain.declarative.spec.vote.get(domain.steps_path)
        key = domain.name if hooks else domain.name + "\0plain"
        with self._lock:
            cached = self._guides.get(key)
            if cached is None or cached[0] != id(domain):
                split, rule, bank = ((domain.split, domain.step_rule, domain.step_bank) if hooks
                                     else domain.plain_steps)
                cached = (id(domain), StepGuide(spec, bank, split, self.embedder, rule=rule))
                self._guides[key] = cached
            return cached[1]

    def _memory(self, query: np.ndarray, *, domain: Domain, tenant: str, kinds: tuple[str, ...],
                statuses: tuple[str, ...] | None, limit: int, as_of: datetime | None,
                exclude: frozenset[str], text: str) -> list[Candidate]:
        hits = self.store.search(query, filters=MemoryFilter(
            tenant=tenant, domain=domain.name, kinds=kinds, statuses=statuses, created_before=as_of, exclude_ids=exclude,
        ), limit=limit, text=text)
        return [
            Candidate(id=h.record.id, source="memory", kind=h.record.kind, status=h.record.status,
                      question=h.record.question, answer=domain.answer_text(h.record.answer), reason=h.record.reason,
                      wrong=h.record.wrong, vector=np.asarray(h.vector, dtype=np.float32), similarity=h.similarity,
                      extra={"value": parse_answer(h.record.answer),
                             "full": domain.answer_text(h.record.answer, hide_derived=False)})
            for h in hits
        ]

    # -- assembly ------------------------------------------------------------------------------------

    def prepare(self, domain_name: str, request: Request | str | list[dict[str, Any]], *, tenant: str,
                as_of: datetime | None = None, exclude_ids: frozenset[str] = frozenset(),
                switches: Switches = Switches(), extra_examples: int = 0, drop_examples: int = 0,
                options: dict[str, Any] | None = None) -> Assembly:
        timings: dict[str, float] = {}
        domain = self.domains.get(domain_name)
        if not isinstance(request, Request):
            request = parse_request(request)
        params = self.selection_params(domain)
        opts = self.options(domain)
        opts.update(options or {})
        version = self.templates.version

        t0 = time.perf_counter()
        guide = self.guide(domain, hooks=switches.hooks) if switches.guide else None
        pending = guide.pending(request.question) if guide is not None else []
        encoded = self.embedder.encode([request.question, *pending])  # one model pass: request and its clauses
        query, clause_vectors = encoded[0], dict(zip(pending, encoded[1:]))
        curated_examples, curated_negatives = self.curated(domain)
        timings["embed"] = (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        use_memory = switches.memory and params.use_memory
        memory_available = True
        memory_examples: list[Candidate] = []
        memory_negatives: list[Candidate] = []
        if use_memory:
            try:
                if switches.examples and params.use_examples:
                    # unreviewed answers are kept, but teach nothing unless learn = "all" (no self-poisoning)
                    statuses = POSITIVE_STATUSES if self.settings.learn == "all" else REVIEWED_STATUSES
                    memory_examples = self._memory(query, domain=domain, tenant=tenant,
                                                   kinds=("example", "interaction"), statuses=statuses,
                                                   limit=params.fetch_k, as_of=as_of, exclude=exclude_ids,
                                                   text=request.question)
                if switches.negatives and params.use_negatives:
                    memory_negatives = self._memory(query, domain=domain, tenant=tenant, kinds=("negative",),
                                                    statuses=None, limit=max(params.negatives_k * 4, 8),
                                                    as_of=as_of, exclude=exclude_ids, text=request.question)
                self._memory_down_logged = False
            except StoreError as exc:
                memory_available = False
                with self._lock:  # once per outage, also when several requests fail at the same moment
                    first, self._memory_down_logged = not self._memory_down_logged, True
                if first:
                    log.warning("memory unavailable, answering from curated examples only: %s", exc)
        timings["search"] = (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        examples: list[Candidate] = []
        if switches.examples and params.use_examples:
            for cand in curated_examples:
                if cand.id in exclude_ids:
                    continue  # cross-validation (tune) holds some curated examples out
                examples.append(Candidate(**{**cand.__dict__, "similarity": float(cand.vector @ query),
                                             "boost": params.curated_boost}))
            for cand in memory_examples:
                reviewed = cand.status in REVIEWED_STATUSES
                cand.boost = params.approved_boost if reviewed else 0.0
                if reviewed and cand.similarity >= params.near_identical:
                    cand.boost = 1.0  # a reviewed answer to the same question is the first example
                examples.append(cand)
        if not switches.derive:  # derived fields off: the model writes them, so it is shown them
            for cand in examples:
                if "full" in cand.extra:
                    cand.answer = cand.extra["full"]
        ranked = rank_candidates(query, examples, fetch_k=params.fetch_k, lam=params.mmr_lambda,
                                 near_threshold=params.near_dup_threshold, min_similarity=params.min_similarity)
        negatives: list[Candidate] = []
        if switches.negatives and params.use_negatives and params.negatives_k:
            pool = [Candidate(**{**c.__dict__, "similarity": float(c.vector @ query)}) for c in curated_negatives
                    if c.id not in exclude_ids]
            pool += memory_negatives
            negatives = select_negatives(pool, k=params.negatives_k, min_similarity=params.negatives_min_similarity)
        timings["select"] = (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        cot_on = domain.spec.cot.enabled if switches.cot is None else switches.cot
        request_turn = self.templates.render("fewshot", for_domain=domain.name, question=request.question,
                                             is_request=True, **self._domain_ctx(domain))
        num_ctx = int(opts["num_ctx"])
        reserve = int(opts["num_predict"])
        while True:
            system = self._system(domain, request, negatives, cot_on, has_examples=bool(ranked),
                                  hide_derived=switches.derive)
            fixed = (self.tokens.count(system) + self.tokens.count(request_turn) + 2 * MESSAGE_OVERHEAD
                     + sum(self.tokens.count(m["content"]) + MESSAGE_OVERHEAD for m in request.history))
            available = num_ctx - fixed - reserve
            if available >= 0 or not negatives:
                break
            negatives = negatives[:-1]  # a context too small for the negatives gives them up first
        if params.max_example_tokens:
            available = min(available, params.max_example_tokens)
        if available < 0:
            raise RequestError(f"the request needs {fixed + reserve} tokens but num_ctx is {num_ctx}")
        rendered: dict[str, str] = {}

        def cost(cand: Candidate) -> int:
            turn = self.templates.render("fewshot", for_domain=domain.name, question=cand.question, is_request=False,
                                         **self._domain_ctx(domain))
            rendered[cand.id] = turn
            return self.tokens.count(turn) + self.tokens.count(cand.answer) + 2 * MESSAGE_OVERHEAD

        k = max(0, params.k + extra_examples - drop_examples)
        chosen, _ = fill_budget(ranked, k=k, available=available, cost=cost)
        while True:
            messages = self._messages(system, chosen, rendered, request, request_turn)
            prompt = self.flatten(domain, messages) if self.flat_prompt else None
            total = self.tokens.count(prompt) if prompt is not None else fixed + sum(t for _, t in chosen)
            if total + reserve <= num_ctx or not chosen:
                break
            chosen = chosen[:-1]  # the flat layout cost more than estimated: drop the least relevant
        timings["render"] = (time.perf_counter() - t0) * 1000

        steps: list[list[str]] = []
        t0 = time.perf_counter()
        if guide is not None:
            steps = guide.steps(request.question, clause_vectors)
        votes: list[dict[str, Any]] = []
        if switches.vote and domain.declarative is not None and domain.declarative.spec.vote:
            body = request_body(request.question, domain.declarative.spec.context)
            votes = field_votes(self._voters(examples, params), domain.declarative.spec.vote, cues=domain.cues,
                                question=body, context=domain.declarative.context(request.question))
            votes = gate(votes, self._judged.get(domain.name, {}))
        notes: list[str] = []
        schema = domain.grammar_schema(request.question, steps=steps, flags=switches, votes=votes, notes=notes)
        timings["guide"] = (time.perf_counter() - t0) * 1000

        return Assembly(
            domain=domain.name, tenant=tenant, question=request.question, query_vector=query,
            messages=messages, prompt=prompt, json_schema=schema, options=opts,
            selected=[self._selected(c, rank, tokens) for rank, (c, tokens) in enumerate(chosen)],
            negatives=[self._selected(c, rank, 0) for rank, c in enumerate(negatives)],
            template_version=version, timings_ms=timings, prompt_tokens=total,
            budget={"num_ctx": num_ctx, "fixed": fixed, "reserved_output": reserve, "available_for_examples": available,
                    "used_by_examples": sum(t for _, t in chosen)},
            memory_available=memory_available, cot=cot_on, steps=steps, votes=votes, grammar_notes=notes,
        )

    @staticmethod
    def _voters(candidates: list[Candidate], params: SelectionSettings) -> list[Neighbour]:
        """Curated examples and reviewed answers vote; unreviewed answers never do."""
        out = []
        for cand in candidates:
            if cand.kind == "negative" or cand.extra.get("value") is None:
                continue
            if cand.source == "curated":
                out.append(Neighbour(cand.id, cand.similarity, cand.extra["value"], 1.0))
            elif cand.status in REVIEWED_STATUSES:
                trust = params.near_identical_weight if cand.similarity >= params.near_identical else params.reviewed_weight
                out.append(Neighbour(cand.id, cand.similarity, cand.extra["value"], trust, reviewed=True,
                                     near_identical=cand.similarity >= params.near_identical))
            else:  # unreviewed, only here when learn = "all"
                out.append(Neighbour(cand.id, cand.similarity, cand.extra["value"], 0.5))
        return out

    # -- rendering pieces ----------------------------------------------------------------------------

    @staticmethod
    def _domain_ctx(domain: Domain) -> dict[str, Any]:
        return {"domain": {"name": domain.name, "description": domain.spec.description.strip()}}

    def _system(self, domain: Domain, request: Request, negatives: list[Candidate], cot_on: bool,
                *, has_examples: bool, hide_derived: bool = True) -> str:
        ctx = self._domain_ctx(domain)
        cot = self.templates.render("cot", for_domain=domain.name, steps=domain.spec.cot.steps, **ctx) if cot_on else ""
        neg = ""
        if negatives:
            neg = self.templates.render("negatives", for_domain=domain.name, negatives=[
                {"question": n.question, "wrong": n.wrong, "why": n.reason, "right": n.answer} for n in negatives
            ], **ctx)
        system = self.templates.render(
            "system", for_domain=domain.name, schema=domain.shown_schema(hide_derived=hide_derived),
            rules=domain.spec.rules, cot=cot,
            negatives=neg, has_examples=has_examples, free_text=domain.free_text, **ctx,
        )
        return f"{system}\n\n{request.system}".strip() if request.system else system

    @staticmethod
    def _messages(system: str, chosen: list[tuple[Candidate, int]], rendered: dict[str, str], request: Request,
                  request_turn: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": system, "kind": "system"}]
        for cand, _ in reversed(chosen):  # the most relevant example sits next to the request
            messages.append({"role": "user", "content": rendered[cand.id], "kind": "example"})
            messages.append({"role": "assistant", "content": cand.answer, "kind": "example"})
        for turn in request.history:
            messages.append({**turn, "kind": "history"})
        messages.append({"role": "user", "content": request_turn, "kind": "request"})
        return messages

    def flatten(self, domain: Domain, messages: list[dict[str, Any]]) -> str:
        return self.templates.render("completion", for_domain=domain.name, messages=messages,
                                     free_text=domain.free_text, **self._domain_ctx(domain))

    def flatten_plain(self, messages: list[dict[str, Any]]) -> str:
        """A conversation that belongs to no domain, flattened for a base model (the embedded upstream)."""
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=len(messages) - 1)
        kinds = [{**m, "kind": "system" if m["role"] == "system" else ("request" if i == last_user else "history")}
                 for i, m in enumerate(messages)]
        return self.templates.render("completion", messages=kinds, free_text=True,
                                     domain={"name": "", "description": ""})

    def repair_turn(self, domain: Domain, *, errors: list[str], attempt: int, max_attempts: int,
                    previous_output: str, truncated: bool) -> str:
        return self.templates.render("repair", for_domain=domain.name, errors=errors, attempt=attempt,
                                     max_attempts=max_attempts, previous_output=previous_output,
                                     truncated=truncated, **self._domain_ctx(domain))

    @staticmethod
    def _selected(c: Candidate, rank: int, tokens: int) -> SelectedExample:
        return SelectedExample(id=c.id, source=c.source, kind=c.kind, status=c.status,
                               similarity=round(c.similarity, 4), mmr_rank=rank, tokens=tokens,
                               question=c.question, answer=c.answer, reason=c.reason, wrong=c.wrong)
