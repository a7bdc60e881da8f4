"""Stage 3, build the prompt: the system turn (schema, rules, chain of thought, negatives), the chosen
examples and the request, rendered from the templates within the model's context window.

The budget: num_ctx minus the fixed turns minus the tokens reserved for the answer is what examples may use;
a context too small for the negatives gives them up first, and a flat layout (base models) that costs more
than estimated drops the least relevant example until it fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import SelectionSettings
from ..domains import Domain
from ..errors import RequestError
from ..llm.tokens import TokenCounter
from ..records import SelectedExample
from ..templating.engine import TemplateSet
from .ask import Request
from .selection import Candidate, fill_budget

__all__ = ["MESSAGE_OVERHEAD", "Prompt", "PromptBuilder", "selected"]

MESSAGE_OVERHEAD = 6  # tokens a chat turn costs beyond its text (role markers, separators)


@dataclass
class Prompt:
    messages: list[dict[str, Any]]
    prompt: str | None  # the flat prompt, for base models
    chosen: list[tuple[Candidate, int]]  # examples with their token cost, most relevant first
    negatives: list[Candidate]
    tokens: int
    budget: dict[str, int]
    cot: bool


class PromptBuilder:
    def __init__(self, *, templates: TemplateSet, tokens: TokenCounter, flat_prompt: bool) -> None:
        self.templates = templates
        self.tokens = tokens
        self.flat_prompt = flat_prompt

    def build(self, domain: Domain, request: Request, *, ranked: list[Candidate], negatives: list[Candidate],
              params: SelectionSettings, num_ctx: int, reserve: int, k: int, cot: bool,
              hide_derived: bool) -> Prompt:
        request_turn = self.turn(domain, request.question, is_request=True)
        while True:
            system = self.system(domain, request, negatives, cot, has_examples=bool(ranked), hide_derived=hide_derived)
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
            rendered[cand.id] = self.turn(domain, cand.question, is_request=False)
            return self.tokens.count(rendered[cand.id]) + self.tokens.count(cand.answer) + 2 * MESSAGE_OVERHEAD

        chosen, _ = fill_budget(ranked, k=k, available=available, cost=cost)
        while True:
            messages = self.messages(system, chosen, rendered, request, request_turn)
            prompt = self.flatten(domain, messages) if self.flat_prompt else None
            total = self.tokens.count(prompt) if prompt is not None else fixed + sum(t for _, t in chosen)
            if total + reserve <= num_ctx or not chosen:
                break
            chosen = chosen[:-1]  # the flat layout cost more than estimated: drop the least relevant
        budget = {"num_ctx": num_ctx, "fixed": fixed, "reserved_output": reserve, "available_for_examples": available,
                  "used_by_examples": sum(t for _, t in chosen)}
        return Prompt(messages=messages, prompt=prompt, chosen=chosen, negatives=negatives, tokens=total,
                      budget=budget, cot=cot)

    # -- pieces --------------------------------------------------------------------------------------

    @staticmethod
    def domain_ctx(domain: Domain) -> dict[str, Any]:
        return {"domain": {"name": domain.name, "description": domain.spec.description.strip()}}

    def turn(self, domain: Domain, question: str, *, is_request: bool) -> str:
        return self.templates.render("fewshot", for_domain=domain.name, question=question, is_request=is_request,
                                     **self.domain_ctx(domain))

    def system(self, domain: Domain, request: Request, negatives: list[Candidate], cot: bool,
               *, has_examples: bool, hide_derived: bool = True) -> str:
        ctx = self.domain_ctx(domain)
        cot_text = ""
        if cot:
            cot_text = self.templates.render("cot", for_domain=domain.name, steps=domain.spec.cot.steps, **ctx)
        neg = ""
        if negatives:
            neg = self.templates.render("negatives", for_domain=domain.name, negatives=[
                {"question": n.question, "wrong": n.wrong, "why": n.reason, "right": n.answer} for n in negatives
            ], **ctx)
        system = self.templates.render(
            "system", for_domain=domain.name, schema=domain.shown_schema(hide_derived=hide_derived),
            rules=domain.spec.rules, cot=cot_text, negatives=neg, has_examples=has_examples,
            free_text=domain.free_text, **ctx,
        )
        return f"{system}\n\n{request.system}".strip() if request.system else system

    @staticmethod
    def messages(system: str, chosen: list[tuple[Candidate, int]], rendered: dict[str, str], request: Request,
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
                                     free_text=domain.free_text, **self.domain_ctx(domain))

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
                                     truncated=truncated, **self.domain_ctx(domain))


def selected(c: Candidate, rank: int, tokens: int) -> SelectedExample:
    return SelectedExample(id=c.id, source=c.source, kind=c.kind, status=c.status,
                           similarity=round(c.similarity, 4), mmr_rank=rank, tokens=tokens,
                           question=c.question, answer=c.answer, reason=c.reason, wrong=c.wrong)
