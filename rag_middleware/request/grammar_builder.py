"""Stage 4, build the grammar: the domain's JSON schema narrowed for this request by per-clause step labels,
label votes (gated by each field's measured reliability) and the declarative mechanisms (domains/)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..domains import Domain
from ..domains.clauses import StepGuide
from ..domains.grounding import numbers_in, request_body
from ..domains.ranges import unit_values
from ..domains.prototypes import Prototypes
from ..domains.implied_votes import implied_votes
from ..domains.leftover_numbers import leftover
from ..domains.judgement import gate, leading_names, necessary_of, quiet_names, scaled, trusted_names
from ..domains.votes import Neighbour, field_votes, labels_at
from ..memory.embedding import CachedEmbedder
from .ask import Switches

__all__ = ["Grammar", "GrammarBuilder"]


@dataclass
class Grammar:
    schema: dict[str, Any] | None
    steps: list[list[str]] = field(default_factory=list)  # step guidance given to the grammar
    votes: list[dict[str, Any]] = field(default_factory=list)  # label votes (domains/votes.py)
    notes: list[str] = field(default_factory=list)  # what the declarative mechanisms did to the grammar


def anchored(domain: Domain, question: str, reviewed: list[tuple[str, Any, float]],
             strong: bool) -> list[dict[str, Any]]:
    """Each anchored list's plan (domains/anchors.py), learnt from the examples and the reviewed neighbours'
    questions. A list whose plans proved wrong on the examples is left to the model, unless a reviewed answer
    to a near-identical question took part (``strong``)."""
    out = []
    for bank in domain.anchors:
        record = bank.vote(question, extra=reviewed)
        judged = bank.judged
        if record.get("items") is not None and judged and not judged.get("reliable") and not strong:
            record = {**record, "confident": False, "reason": f"plans were right {judged['right']} of "
                      f"{judged['narrowed']} times on the examples (leave-one-out): left to the model"}
            record.pop("items")
        out.append(record)
    return out


def slotted(domain: Domain, question: str, reviewed: list[tuple[str, Any, float]]) -> list[dict[str, Any]]:
    """The slot fields' sure picks (domains/slots.py), from the examples and the reviewed neighbours'
    questions; a field whose picks proved wrong on the examples is left to grounding alone."""
    judged = domain.slots.judged
    return [r for r in domain.slots.vote(question, extra=[(q, a) for q, a, _ in reviewed])
            if judged.get(r["path"], {}).get("reliable")]


def unfound(domain: Domain, body: str) -> list[dict[str, Any]]:
    """A field set whenever the request holds a candidate (infer.set_when_found) keeps null when no number of
    the request sits where the examples' values of it do ("Route 7", "she is 82" beside amounts)."""
    if domain.slots is None or domain.declarative is None:
        return []
    out = []
    for path in domain.declarative.spec.found:
        shares = domain.slots.shares(body, path)
        if shares and max(shares.values()) <= 0:
            out.append({"path": "/" + "/".join(path), "allowed": [], "scores": {}, "voters": [], "confident": False,
                        "unfound": True, "reason": "no number of the request stands where the examples' values "
                                                   "of this field do: null stays admitted"})
    return out


def range_values(domain: Domain, body: str) -> dict[Any, Any]:
    """Per numeric field some gloss rule's number ranges are about, the request's likeliest value of it (the
    slots' pick, else the request's one number); per unit word they are about, the numbers written with it."""
    out: dict[Any, Any] = {}
    for rule in domain.gloss_rules.values():
        for _, source, _ in rule.ranges:
            if source in out:
                continue
            if isinstance(source, str):
                out[source] = unit_values(body, source)
                continue
            value = domain.slots.likeliest(body, source) if domain.slots is not None else None
            if value is None and len(found := numbers_in(body)) == 1:
                value = found[0]
            out[source] = value
    return out


def prototype_shares(prototypes: Prototypes | None, reliability: dict[str, Any], specs: dict[Any, Any],
                     query: np.ndarray | None, voters: list[Neighbour], taught: frozenset[str] = frozenset()
                     ) -> dict[Any, tuple[float, dict[str, float]]]:
    """Per voted field whose judgement blends in the label prototypes: their share and the request's label
    shares, the reviewed neighbours joining their value's prototype with their trust (those the domain was
    ``taught`` are in the prototypes already)."""
    if prototypes is None or query is None:
        return {}
    out = {}
    for path, spec in specs.items():
        share = float((reliability.get("/" + "/".join(path)) or {}).get("blend", 0.0))
        if share <= 0 or spec.per_clause:
            continue
        extra = [(found[0], n.vector, n.trust) for n in voters if n.reviewed and n.vector is not None
                 and n.id not in taught and len(found := labels_at(n.answer, path, spec.presence)) == 1]
        out[path] = (share, prototypes.shares(path, query, extra=extra))
    return out


class GrammarBuilder:
    MAX_GUIDES = 96  # per-clause guides kept (a domain's, and its taught copies')

    def __init__(self, *, embedder: CachedEmbedder) -> None:
        self.embedder = embedder
        self._guides: dict[str, tuple[int, StepGuide]] = {}
        self._lock = threading.Lock()

    def guide(self, domain: Domain, *, hooks: bool = True) -> StepGuide | None:
        """The per-clause vote; ``hooks=False``: the core splitter and the YAML rules only."""
        if domain.split is None:
            return None
        if not hooks and domain.plain_steps is None:
            return None  # a legacy ``steps:`` section is all Python
        spec = domain.spec.steps or domain.declarative.spec.vote.get(domain.steps_path)
        key = domain.cache_key if hooks else domain.cache_key + "\0plain"
        with self._lock:
            cached = self._guides.get(key)
            if cached is None or cached[0] != id(domain):
                split, rule, bank = ((domain.split, domain.step_rule, domain.step_bank) if hooks
                                     else domain.plain_steps)
                cached = (id(domain), StepGuide(spec, bank, split, self.embedder, rule=rule))
                self._guides.pop(key, None)
                while len(self._guides) >= self.MAX_GUIDES:  # tenants' taught copies come and go: oldest first
                    self._guides.pop(next(iter(self._guides)))
                self._guides[key] = cached
            return cached[1]

    def build(self, domain: Domain, question: str, *, switches: Switches, guide: StepGuide | None,
              clause_vectors: dict[str, np.ndarray], voters: list[Neighbour],
              reliability: dict[str, Any], query: np.ndarray | None = None,
              prototypes: Prototypes | None = None) -> Grammar:
        steps = guide.steps(question, clause_vectors) if guide is not None else []
        votes: list[dict[str, Any]] = []
        # reviewed answers the domain was taught are in its anchors, slots and prototypes once already: a far
        # one (trust 1) adds nothing more as a neighbour there, a close one adds its trust
        taught = frozenset(n.id for n in voters if n.trust <= 1.0 and n.id in domain.learnt_ids)
        body = request_body(question, domain.declarative.spec.context) if domain.declarative is not None else question
        if switches.vote and domain.declarative is not None and domain.declarative.spec.vote:
            spec = domain.declarative.spec
            votes = field_votes(voters, spec.vote, cues=scaled(domain.cues, reliability),
                                question=body,
                                context=domain.declarative.context(question),
                                named=trusted_names(reliability, domain.declarative.vote_labels())
                                if switches.decide else None, decide=switches.decide,
                                protos=prototype_shares(prototypes, reliability, spec.vote, query, voters, taught),
                                glossed=domain.gloss_rules if switches.decide else None,
                                numbers=range_values(domain, body) if switches.decide else None,
                                leading={path for path in domain.gloss_rules
                                         if (reliability.get("/" + "/".join(path)) or {}).get("gloss_leads")},
                                quiet=quiet_names(reliability) if switches.decide else frozenset(),
                                mentions=domain.declarative.mentions(body), named_lead=leading_names(reliability),
                                necessary=necessary_of(reliability))
            votes = implied_votes(gate(votes, reliability), reliability)
        if switches.vote and switches.ground and (domain.anchors or domain.slots is not None):
            # they choose among grounded values; reviewed neighbours' questions teach them too
            context = domain.declarative.spec.context
            reviewed = [(request_body(n.question, context), n.answer, n.trust) for n in voters
                        if n.reviewed and n.question and n.id not in taught]
            votes += anchored(domain, body, reviewed, any(n.reviewed and n.near_identical for n in voters))
            votes += slotted(domain, body, reviewed) if domain.slots is not None else []
            votes += unfound(domain, body)
        if switches.ground and domain.declarative is not None:  # after the slots: a number they took is theirs
            picks = {tuple(v["path"].strip("/").split("/")): v["allowed"][0] for v in votes if v.get("slot")}
            votes += leftover(domain.declarative.spec, body, domain.slots, picks)
        notes: list[str] = []
        schema = domain.grammar_schema(question, steps=steps, flags=switches, votes=votes, notes=notes)
        return Grammar(schema=schema, steps=steps, votes=votes, notes=notes)
