"""Everything before the model is called, as four stages with one job each:

1. ``Retriever`` (retriever.py): embed the request and its undecided clauses once; curated and memory candidates;
2. ``Selector`` (selector.py): boosts, kNN + dedup + MMR ranking, negatives, the voting neighbours;
3. ``PromptBuilder`` (prompt_builder.py): templates rendered within the token budget;
4. ``GrammarBuilder`` (grammar_builder.py): the request's grammar (step labels, votes, declarative mechanisms).

``Assembler.prepare`` runs them in order for one routed request; ``prompts render`` and the pipeline both go
through it.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..config import SelectionSettings, Settings
from ..domains import Domain, DomainRegistry
from ..domains.clauses import StepGuide
from ..llm.tokens import TokenCounter
from ..memory.embedding import CachedEmbedder
from ..memory.stores.base import MemoryStore
from ..records import SelectedExample
from ..templating.engine import TemplateSet
from .ask import AskRequest, Request
from .grammar_builder import GrammarBuilder
from .prompt_builder import PromptBuilder, selected
from .retriever import Retriever
from .selection import Candidate
from .selector import Selector, voters

__all__ = ["Assembler", "Assembly"]

DEFAULT_OPTIONS = {"temperature": 0.0, "seed": 42}
FLAT_STOP = ("\nRequest:", "\nReview:")  # the turn markers completion.j2 writes


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
    taught: int = 0  # reviewed answers the tenant's copy of the domain learnt from (request/taught.py)


class Assembler:
    def __init__(self, *, settings: Settings, domains: DomainRegistry, templates: TemplateSet,
                 embedder: CachedEmbedder, store: MemoryStore, flat_prompt: bool,
                 token_counter: TokenCounter, retriever: Retriever | None = None,
                 grammar: GrammarBuilder | None = None) -> None:
        self.settings = settings
        self.domains = domains
        self.templates = templates
        self.tokens = token_counter
        self.flat_prompt = flat_prompt
        # a variant's assembler shares the retriever and grammar caches; only the templates differ
        self.retriever = retriever or Retriever(settings=settings, embedder=embedder, store=store)
        self.selector = Selector()
        self.prompts = PromptBuilder(templates=templates, tokens=token_counter, flat_prompt=flat_prompt)
        self.grammar = grammar or GrammarBuilder(embedder=embedder)

    def with_templates(self, templates: TemplateSet) -> Assembler:
        """The same stages rendering with another template set (an A/B variant's)."""
        return Assembler(settings=self.settings, domains=self.domains, templates=templates,
                         embedder=self.retriever.embedder, store=self.retriever.store, flat_prompt=self.flat_prompt,
                         token_counter=self.tokens, retriever=self.retriever, grammar=self.grammar)

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

    def curated(self, domain: Domain) -> tuple[list[Candidate], list[Candidate]]:
        return self.retriever.curated(domain)

    def vote_reliability(self, domain: Domain) -> dict[str, Any]:
        return self.retriever.vote_reliability(domain)

    def guide(self, domain: Domain, *, hooks: bool = True) -> StepGuide | None:
        return self.grammar.guide(domain, hooks=hooks)

    # -- the stages ----------------------------------------------------------------------------------

    def prepare(self, domain: Domain, request: Request, ask: AskRequest, *, extra_examples: int = 0,
                drop_examples: int = 0) -> Assembly:
        """One routed request (``ask.tenant`` resolved) through retrieve, select, prompt and grammar."""
        switches, params = ask.switches, self.selection_params(domain)
        opts = self.options(domain)
        opts.update(ask.options or {})
        version = self.templates.version

        guide = self.grammar.guide(domain, hooks=switches.hooks) if switches.guide else None
        found = self.retriever.retrieve(domain, ask, request.question, params=params,
                                        clauses=guide.pending(request.question) if guide is not None else [])
        timings = dict(found.timings_ms)

        t0 = time.perf_counter()
        chosen = self.selector.select(found, params=params, switches=switches, exclude_ids=ask.exclude_ids)
        timings["select"] = (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        prompt = self.prompts.build(
            domain, request, ranked=chosen.ranked, negatives=chosen.negatives, params=params,
            num_ctx=int(opts["num_ctx"]), reserve=int(opts["num_predict"]),
            k=max(0, params.k + extra_examples - drop_examples),
            cot=domain.spec.cot.enabled if switches.cot is None else switches.cot, hide_derived=switches.derive)
        timings["render"] = (time.perf_counter() - t0) * 1000

        t0 = time.perf_counter()
        grammar = self.grammar.build(domain, request.question, switches=switches, guide=guide,
                                     clause_vectors=found.clause_vectors, voters=voters(chosen.pool, params),
                                     reliability=self.retriever.vote_reliability(domain), query=found.query,
                                     prototypes=self.retriever.vote_prototypes(domain))
        timings["guide"] = (time.perf_counter() - t0) * 1000

        return Assembly(
            domain=domain.name, tenant=ask.tenant or self.settings.default_tenant, question=request.question,
            query_vector=found.query, messages=prompt.messages, prompt=prompt.prompt, json_schema=grammar.schema,
            options=opts, selected=[selected(c, rank, tokens) for rank, (c, tokens) in enumerate(prompt.chosen)],
            negatives=[selected(c, rank, 0) for rank, c in enumerate(prompt.negatives)], template_version=version,
            timings_ms=timings, prompt_tokens=prompt.tokens, budget=prompt.budget,
            memory_available=found.memory_available, cot=prompt.cot, steps=grammar.steps, votes=grammar.votes,
            grammar_notes=grammar.notes, taught=len(domain.learnt),
        )

    # -- rendering for the attempt loop and the server ------------------------------------------------

    def flatten(self, domain: Domain, messages: list[dict[str, Any]]) -> str:
        return self.prompts.flatten(domain, messages)

    def flatten_plain(self, messages: list[dict[str, Any]]) -> str:
        return self.prompts.flatten_plain(messages)

    def repair_turn(self, domain: Domain, **kwargs: Any) -> str:
        return self.prompts.repair_turn(domain, **kwargs)
