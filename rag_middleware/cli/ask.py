"""``rag-middleware ask``: answer one request, print the validated JSON."""

from __future__ import annotations

import json

import typer

from ..errors import AttemptsExhaustedError, GenerationTimeoutError
from ..request.ask import parse_request
from ..templating.engine import one_version_per_call
from .context import CliState, console, err_console
from .explain import (
    assembly_view,
    dumps,
    show_attempts,
    show_decisions,
    show_grammar,
    show_messages,
    show_schema,
    show_selection,
    show_timings,
)

__all__ = ["register"]


def _summary(result) -> dict:
    return {
        "output": result.output,
        "valid": result.valid,
        "attempts": len(result.attempts),
        "attempt_errors": [a.errors for a in result.attempts],
        "votes": result.attempts[-1].votes if result.attempts else [],
        "repairs": result.attempts[-1].repairs if result.attempts else [],
        "selected": [{"id": s.id, "source": s.source, "similarity": s.similarity} for s in result.selected],
        "negatives": [n.id for n in result.negatives],
        "template_version": result.template_version,
        "confidence": result.confidence,
        "reviewed_sources": result.reviewed_sources,
        "taught": result.taught,
        "interaction_id": result.interaction_id,
        "timings_ms": result.timings_ms,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
    }


def _dry_run(mw, text: str, *, domain: str, tenant: str | None, as_json: bool) -> None:
    """What ``ask`` would send for this request (retrieval, selection, votes, grammar, prompt), without calling
    the model and without recording anything."""
    parse_request(text)  # a malformed request is refused before the domain is looked up, as ask() does
    with one_version_per_call():  # one template snapshot for the whole assembly, as ask() pins it
        assembly = mw.render(text, domain=domain, tenant=tenant)
    model = mw.domains.get(assembly.domain).spec.model or getattr(mw.backend, "model", "")
    if as_json:
        console.print_json(json.dumps({
            "dry_run": True,
            "recorded": False,
            **assembly_view(assembly),
            "tenant": assembly.tenant,
            "backend": mw.backend.name,
            "model": model,
            "question": assembly.question,
            "votes": assembly.votes,
            "grammar_notes": assembly.grammar_notes,
            "json_schema": assembly.json_schema,
            "selected": [{"id": s.id, "source": s.source, "status": s.status, "similarity": s.similarity,
                          "tokens": s.tokens} for s in assembly.selected],
            "negatives": [{"id": n.id, "similarity": n.similarity, "reason": n.reason} for n in assembly.negatives],
            "taught": assembly.taught,
            "memory_available": assembly.memory_available,
        }, default=str))
        return
    show_selection(assembly.selected, assembly.negatives)
    show_messages(assembly.messages, assembly.prompt)
    show_grammar(assembly.votes, assembly.grammar_notes)
    show_schema(assembly.json_schema)
    show_timings(assembly.timings_ms)
    learnt = f" · learnt from {assembly.taught} reviewed answers" if assembly.taught else ""
    memory = "" if assembly.memory_available else " · memory store unavailable (curated examples only)"
    console.print(f"template {assembly.template_version} · prompt tokens {assembly.prompt_tokens} · "
                  f"would call {mw.backend.name}{f' ({model})' if model else ''}{learnt}{memory}", markup=False)
    console.print("dry run: no model was called, nothing was recorded", markup=False)


def ask(
    ctx: typer.Context,
    text: str = typer.Argument(..., help="the request (for data_ops: 'Columns: a, b\\nwhat to do')"),
    domain: str = typer.Option(..., "--domain", "-d", help="knowledge_base/<domain>"),
    tenant: str | None = typer.Option(None, "--tenant", "-t"),
    backend: str | None = typer.Option(None, "--backend", help="embedded | ollama"),
    model: str | None = typer.Option(None, "--model", help="upstream model name (ollama)"),
    explain: bool = typer.Option(False, "--explain", help="show examples, negatives, messages and every attempt"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    no_learn: bool = typer.Option(False, "--no-learn", help="do not add the answer to memory"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be sent (examples, votes, grammar, "
                                 "prompt) without calling the model or recording anything"),
) -> None:
    """Answer one request with retrieved examples, validate it, record it (--dry-run: stop before the model)."""
    state: CliState = ctx.obj
    if backend is not None and backend not in ("embedded", "ollama"):
        raise typer.BadParameter("must be embedded or ollama", param_hint="--backend")
    text = text.replace("\\n", "\n")
    mw = state.middleware(**{"llm.backend": backend, "llm.model": model})
    with mw:
        if dry_run:
            _dry_run(mw, text, domain=domain, tenant=tenant, as_json=as_json)
            return
        try:
            result = mw.ask(text, domain=domain, tenant=tenant, learn=False if no_learn else None)
        except (AttemptsExhaustedError, GenerationTimeoutError) as exc:
            failed = getattr(exc, "result", None)
            if failed is not None and as_json:
                console.print_json(json.dumps(_summary(failed), default=str))
            elif failed is not None and explain:
                show_selection(failed.selected, failed.negatives)
                show_attempts(failed.attempts)
            raise
        if as_json:
            console.print_json(json.dumps(_summary(result), default=str))
            return
        if explain:
            show_selection(result.selected, result.negatives)
            first = result.attempts[0] if result.attempts else None
            if first is not None:
                show_messages(first.messages, first.prompt)
            show_attempts(result.attempts)
            if result.attempts:
                show_decisions(result.attempts[-1])
            show_timings(result.timings_ms)
            conf = "" if result.confidence is None else f" · confidence {result.confidence:.2f}"
            parts = {k: v for k, v in result.confidence_parts.items() if k != "score"}
            conf += f" ({', '.join(f'{k} {v:.2f}' for k, v in parts.items())})" if parts else ""
            used = result.reviewed_sources
            shaped = f" · reviewed answers used: {', '.join(used)}" if used else ""
            shaped += f" · learnt from {result.taught} reviewed answers" if result.taught else ""
            err_console.print(f"interaction {result.interaction_id} · template {result.template_version}{conf}{shaped}")
        if isinstance(result.output, str):
            console.print(result.output, markup=False)
        else:
            console.print(dumps(result.output), markup=False)


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
