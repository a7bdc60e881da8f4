"""Export reviewed interactions as a fine-tuning set.

Only interactions whose newest feedback approves or edits them are exported (an edit exports the corrected
answer); ``min_confidence`` also leaves out those the model answered with less confidence (or none recorded:
free text), counted among the report's skipped reasons. Every string is PII-masked before anything is written
(:mod:`rag_middleware.learning.pii`); exact duplicates
(normalised prompt and completion) and near duplicates (embedding cosine of question and completion above a
threshold) are removed; a holdout split, stratified by domain, is written beside the training set:

    DIR/train.jsonl  DIR/holdout.jsonl  DIR/export_report.json

``chat`` lines are ``{"messages": [...]}`` (system, the request, the answer; ``with_examples`` keeps the
few-shot turns the model saw); ``prompt-completion`` lines are ``{"prompt", "completion", "metadata"}`` with
the prompt flattened by the ``completion`` template. The report has counts, PII hits by type, duplicates
removed, the schema validity of every completion, token estimates and a 0-100 quality score with the reason
for each deduction.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from ..errors import RequestError
from ..llm.tokens import ApproxTokenCounter
from ..memory.access import MemoryAccess
from ..memory.embedding import Embedder
from ..memory.interaction_log import InteractionLog
from ..records import iso, utcnow
from .feedback import FeedbackLog
from .pii import PII_TYPES, PiiMasker

if TYPE_CHECKING:
    from rich.progress import Progress

    from ..domains import DomainRegistry
    from ..templating.engine import TemplateSet

__all__ = ["ExportOptions", "MemoryAccess", "export_finetune"]

PROMPT_KINDS = ("system", "history", "request")
SPLIT_SEED = "rag-middleware-holdout"


class ExportOptions(BaseModel):
    out: Path
    format: Literal["chat", "prompt-completion"] = "chat"
    domain: str | None = None
    tenant: str | None = None
    min_score: int | None = Field(None, ge=1, le=5)
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    holdout: float = Field(0.1, ge=0.0, lt=1.0)
    with_examples: bool = False
    near_dup_threshold: float = Field(0.95, gt=0.0, le=1.0)


class _Item(BaseModel):
    id: str
    domain: str
    question: str
    messages: list[dict[str, Any]]  # the prompt turns, with their kinds
    completion: str
    metadata: dict[str, Any]
    rank: tuple[int, int, str]  # better first: edits, then score, then newest


def _clean(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _prompt_turns(interaction: Any, with_examples: bool) -> list[dict[str, Any]]:
    first = interaction.attempts[0].messages if interaction.attempts else []
    keep = (*PROMPT_KINDS, "example") if with_examples else PROMPT_KINDS
    turns = [dict(m) for m in first if m.get("kind") in keep]
    if not any(m.get("kind") == "request" for m in turns):
        turns.append({"role": "user", "content": interaction.question, "kind": "request"})
    return turns


def _collect(journal: InteractionLog, opts: ExportOptions, log: FeedbackLog) -> tuple[list[_Item], Counter[str]]:
    skipped: Counter[str] = Counter()
    items: list[_Item] = []
    for iid, fb in log.effective().items():
        if fb.action not in ("approve", "edit"):
            skipped["not approved (rejected)"] += 1
            continue
        if opts.min_score is not None and (fb.score is None or fb.score < opts.min_score):
            skipped[f"score below {opts.min_score} or missing"] += 1
            continue
        interaction = journal.get(iid)
        if interaction is None:
            skipped["interaction missing from the log"] += 1
            continue
        if (opts.domain and interaction.domain != opts.domain) or (opts.tenant and interaction.tenant != opts.tenant):
            continue
        if opts.min_confidence is not None:
            if interaction.confidence is None:
                skipped["no confidence recorded (free text or older records)"] += 1
                continue
            if interaction.confidence < opts.min_confidence:
                skipped[f"confidence below {opts.min_confidence:g}"] += 1
                continue
        value = fb.edited_output if fb.action == "edit" else interaction.output
        completion = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        items.append(_Item(
            id=iid, domain=interaction.domain, question=interaction.question,
            messages=_prompt_turns(interaction, opts.with_examples), completion=completion,
            metadata={"interaction_id": iid, "domain": interaction.domain, "action": fb.action, "score": fb.score,
                      "template_version": interaction.template_version, "model": interaction.model,
                      "variant": interaction.variant, "created_at": iso(interaction.created_at)},
            rank=(0 if fb.action == "edit" else 1, -(fb.score or 0), iso(interaction.created_at)),
        ))
    items.sort(key=lambda it: (it.rank[0], it.rank[1], _neg(it.rank[2])))
    return items, skipped


def _neg(stamp: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in stamp)  # newest first within equal action and score


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _dedup(embedder: Embedder, items: list[_Item], threshold: float,
           progress: Progress | None) -> tuple[list[_Item], int, int]:
    exact: set[str] = set()
    unique: list[_Item] = []
    for it in items:
        key = hashlib.sha256(("\0".join(_norm(m["content"]) for m in it.messages if m["kind"] == "request")
                              + "\0" + _norm(it.completion)).encode()).hexdigest()
        if key not in exact:
            exact.add(key)
            unique.append(it)
    exact_removed = len(items) - len(unique)
    if not unique:
        return unique, exact_removed, 0
    task = progress.add_task("near duplicates", total=len(unique)) if progress else None
    vectors = embedder.encode([f"{it.question}\n{it.completion}" for it in unique])
    kept: list[_Item] = []
    kept_vectors: list[np.ndarray] = []
    for it, vec in zip(unique, vectors, strict=True):
        if not kept_vectors or float(np.max(np.stack(kept_vectors) @ vec)) < threshold:
            kept.append(it)
            kept_vectors.append(vec)
        if progress is not None:
            progress.advance(task)
    return kept, exact_removed, len(unique) - len(kept)


def _split(items: list[_Item], fraction: float) -> tuple[list[_Item], list[_Item]]:
    """Per domain, a deterministic shuffle (hash of the id) and the first round(n * fraction) held out."""
    train: list[_Item] = []
    holdout: list[_Item] = []
    by_domain: dict[str, list[_Item]] = {}
    for it in items:
        by_domain.setdefault(it.domain, []).append(it)
    for members in by_domain.values():
        order = sorted(members, key=lambda it: hashlib.sha256(f"{SPLIT_SEED}\0{it.id}".encode()).hexdigest())
        n_hold = int(len(order) * fraction + 0.5) if fraction else 0
        if fraction and n_hold == 0 and len(order) >= 2:
            n_hold = 1
        n_hold = min(n_hold, len(order) - 1) if len(order) > 1 else 0
        held = {it.id for it in order[:n_hold]}
        holdout += [it for it in members if it.id in held]
        train += [it for it in members if it.id not in held]
    return train, holdout


def _line(domains: DomainRegistry, templates: TemplateSet, it: _Item, fmt: str) -> dict[str, Any]:
    if fmt == "chat":
        return {"messages": _clean(it.messages) + [{"role": "assistant", "content": it.completion}]}
    domain = domains.get(it.domain)
    prompt = templates.render("completion", for_domain=domain.name, messages=it.messages,
                                 free_text=domain.free_text,
                                 domain={"name": domain.name, "description": domain.spec.description.strip()})
    return {"prompt": prompt, "completion": " " + it.completion, "metadata": it.metadata}


def _write_jsonl(path: Path, lines: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _quality(*, total: int, kept: int, invalid: int, dupes: int, pii_items: int, holdout: int,
             domains: Counter[str], over_budget: int) -> tuple[int, list[dict[str, Any]]]:
    deductions: list[dict[str, Any]] = []

    def deduct(points: float, reason: str) -> None:
        if points > 0:
            deductions.append({"points": round(points), "reason": reason})

    if kept < 50:
        deduct(30 if kept < 10 else 15, f"only {kept} training examples; fine-tuning wants at least 50 (better 500+)")
    elif kept < 500:
        deduct(5, f"{kept} training examples; 500 or more give steadier results")
    if total and invalid:
        deduct(min(30, 100 * invalid / total), f"{invalid} of {total} completions fail the domain's schema "
                                               "(they were left out)")
    if total and dupes / total > 0.2:
        deduct(min(15, 50 * dupes / total), f"{dupes} of {total} were duplicates: the reviewed data is repetitive")
    if total and pii_items / total > 0.1:
        deduct(min(10, 20 * pii_items / total), f"{pii_items} examples contained personal data (masked); masked "
                                                "placeholders teach the model nothing about those fields")
    if holdout < 10:
        deduct(10, f"holdout has {holdout} examples; at least 10 are needed to measure anything")
    if len(domains) > 1:
        share = max(domains.values()) / sum(domains.values())
        if share > 0.8:
            deduct(10, f"one domain holds {share:.0%} of the examples; the others are underrepresented")
    if over_budget:
        deduct(min(10, 100 * over_budget / max(1, kept)),
               f"{over_budget} examples are longer than the model's context window")
    score = max(0, 100 - sum(d["points"] for d in deductions))
    return score, deductions


def export_finetune(memory: MemoryAccess, opts: ExportOptions, *, domains: DomainRegistry, templates: TemplateSet,
                    num_ctx: int, progress: Progress | None = None) -> dict[str, Any]:
    """Write train.jsonl, holdout.jsonl and export_report.json under ``opts.out``; return the report.

    ``domains`` validate the completions, ``templates`` flatten prompt-completion prompts, ``num_ctx`` is the
    context window the token estimates are held against."""
    if opts.domain:
        domains.get(opts.domain)  # an unknown domain is an error, not an empty export
    try:
        opts.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RequestError(f"cannot create output directory {opts.out}: {exc.strerror or exc}") from None
    log = FeedbackLog(memory.db_path)
    try:
        items, skipped = _collect(memory.journal, opts, log)
    finally:
        log.close()
    masker = PiiMasker()
    checked = _mask_and_validate(items, domains, masker, progress)
    kept, exact_removed, near_removed = _dedup(memory.embedder, checked.valid, opts.near_dup_threshold, progress)
    train, holdout = _split(kept, opts.holdout)
    tokens = _write_sets(opts, {"train": train, "holdout": holdout},
                         lambda it: _line(domains, templates, it, opts.format), num_ctx=num_ctx, progress=progress)
    invalid = sum(1 for v in checked.validity if not v["valid"])
    score, deductions = _quality(total=len(items), kept=len(train), invalid=invalid,
                                 dupes=exact_removed + near_removed, pii_items=checked.pii_items,
                                 holdout=len(holdout), domains=Counter(it.domain for it in kept),
                                 over_budget=tokens.over_budget)
    report = {
        "created_at": iso(utcnow()),
        "options": {**opts.model_dump(mode="json"), "out": str(opts.out)},
        "counts": {"candidates": len(items), "invalid": invalid, "exported": len(kept), "train": len(train),
                   "holdout": len(holdout), "by_domain": dict(Counter(it.domain for it in kept)),
                   "holdout_by_domain": dict(Counter(it.domain for it in holdout)), "skipped": dict(skipped)},
        "pii": {"hits_by_type": {kind: masker.hits.get(kind, 0) for kind in PII_TYPES},
                "examples_with_pii": checked.pii_items},
        "duplicates_removed": {"exact": exact_removed, "near": near_removed,
                               "near_threshold": opts.near_dup_threshold},
        "schema_validity": {"valid": len(items) - invalid, "invalid": invalid, "items": checked.validity},
        "tokens": tokens.report(num_ctx),
        "quality": {"score": score, "deductions": deductions},
        "files": {"train": str(opts.out / "train.jsonl"), "holdout": str(opts.out / "holdout.jsonl")},
    }
    tmp = opts.out / "export_report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, opts.out / "export_report.json")
    return report


@dataclass
class _Checked:
    """The candidates after PII masking and validation against their domain's output model."""

    valid: list[_Item] = field(default_factory=list)
    validity: list[dict[str, Any]] = field(default_factory=list)  # one entry per candidate, for the report
    pii_items: int = 0  # candidates in which something was masked


def _mask_and_validate(items: list[_Item], domains: DomainRegistry, masker: PiiMasker,
                       progress: Progress | None) -> _Checked:
    """Mask every string of every item (in place), then validate its completion."""
    checked = _Checked()
    task = progress.add_task("masking and validating", total=len(items)) if progress else None
    for it in items:
        before = sum(masker.hits.values())
        it.messages = [{**m, "content": masker.mask(m["content"])} for m in it.messages]
        it.question = masker.mask(it.question)
        it.completion = masker.mask(it.completion)
        # the metadata is ours (ids, names, a timestamp), never the user's text: masked, an id would lose its
        # meaning, and a hex id can hold a digit run that passes a checksum
        checked.pii_items += sum(masker.hits.values()) > before
        ok, errors = _validate(domains.get(it.domain), it)
        checked.validity.append({"interaction_id": it.id, "domain": it.domain, "valid": ok,
                                 "errors": [PiiMasker().mask(e) for e in errors]})  # messages may quote values
        if ok:
            checked.valid.append(it)
        if progress is not None:
            progress.advance(task)
    return checked


def _validate(domain: Any, it: _Item) -> tuple[bool, list[str]]:
    if domain.free_text:
        return (True, []) if it.completion.strip() else (False, ["(root): empty answer"])
    outcome = domain.validator.validate_text(it.completion, it.question, repair=False)
    return outcome.ok, outcome.errors


@dataclass
class _Tokens:
    """Estimated tokens of what was written (3 characters per token)."""

    prompt: list[int] = field(default_factory=list)
    completion: list[int] = field(default_factory=list)
    over_budget: int = 0  # examples longer than the context window

    def report(self, num_ctx: int) -> dict[str, Any]:
        def mean(values: list[int]) -> float:
            return round(sum(values) / len(values), 1) if values else 0

        return {"estimator": "approx (3 characters per token)",
                "prompt_total": sum(self.prompt), "completion_total": sum(self.completion),
                "prompt_mean": mean(self.prompt), "completion_mean": mean(self.completion),
                "max_example": max((p + c for p, c in zip(self.prompt, self.completion, strict=True)), default=0),
                "over_context": self.over_budget, "num_ctx": num_ctx}


def _write_sets(opts: ExportOptions, parts: dict[str, list[_Item]], line: Callable[[_Item], dict[str, Any]], *,
                num_ctx: int, progress: Progress | None) -> _Tokens:
    """Write ``DIR/<part>.jsonl`` for each part, counting the tokens of what was written."""
    counter = ApproxTokenCounter()
    tokens = _Tokens()
    task = progress.add_task("writing", total=sum(len(p) for p in parts.values())) if progress else None
    for name, part in parts.items():
        lines = []
        for it in part:
            lines.append(line(it))
            p = sum(counter.count(m["content"]) for m in it.messages)
            c = counter.count(it.completion)
            tokens.prompt.append(p)
            tokens.completion.append(c)
            tokens.over_budget += p + c > num_ctx
            if progress is not None:
                progress.advance(task)
        _write_jsonl(opts.out / f"{name}.jsonl", lines)
    return tokens
