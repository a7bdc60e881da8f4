"""Rich renderings shared by the commands that show an assembly or a result (ask --explain, prompts render)."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from ..analytics.report_items import left_out
from ..domains.anchors import describe
from ..domains.glosses import glossed
from ..records import Attempt, SelectedExample
from ..request.calibration import calibrated
from .context import console

__all__ = ["show_attempts", "show_decisions", "show_grammar", "show_messages", "show_schema", "show_selection",
           "show_timings"]


def _clip(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def show_selection(selected: list[SelectedExample], negatives: list[SelectedExample]) -> None:
    table = Table(title=f"Selected examples ({len(selected)})", title_justify="left")
    for col in ("#", "id", "source", "status", "similarity", "tokens", "question"):
        table.add_column(col, overflow="fold")
    for ex in selected:
        table.add_row(str(ex.mmr_rank + 1), ex.id, ex.source, ex.status, f"{ex.similarity:.3f}", str(ex.tokens),
                      escape(_clip(ex.question)))
    console.print(table)
    if negatives:
        neg = Table(title=f"Negative examples ({len(negatives)})", title_justify="left")
        for col in ("id", "similarity", "why it is wrong"):
            neg.add_column(col, overflow="fold")
        for n in negatives:
            neg.add_row(n.id, f"{n.similarity:.3f}", escape(_clip(n.reason, 100)))
        console.print(neg)


def show_messages(messages: list[dict[str, Any]], prompt: str | None = None) -> None:
    for m in messages:
        title = f"{m['role']}" + (f" · {m['kind']}" if m.get("kind") else "")
        console.print(Panel(m["content"], title=title, title_align="left", expand=True), markup=False)
    if prompt is not None:
        console.print(Panel(prompt, title="flat prompt sent to the base model", title_align="left"), markup=False)


def show_attempts(attempts: list[Attempt]) -> None:
    table = Table(title="Attempts", title_justify="left")
    for col in ("#", "result", "ms", "tokens in/out", "output", "errors"):
        table.add_column(col, overflow="fold")
    for a in attempts:
        result = "[green]valid[/green]" if not a.errors else f"[red]{a.error_kind or 'invalid'}[/red]"
        table.add_row(str(a.number), result, f"{a.duration_ms:.0f}", f"{a.prompt_tokens}/{a.completion_tokens}",
                      _clip(a.raw_output, 120), "\n".join(a.errors))
    console.print(table)


def show_decisions(attempt: Attempt) -> None:
    """Why the grammar admitted what it did: label votes (with their voters), grounding, derived fields; and
    what the core and the domain changed in the answer."""
    show_grammar(attempt.votes, attempt.grammar_notes)
    if attempt.calibration:
        console.print("[bold]calibration[/bold] (the model's lean, divided out)\n  "
                      + "\n  ".join(calibrated(c) for c in attempt.calibration), highlight=False)
    if attempt.repairs:
        console.print("[bold]repairs[/bold]\n  " + "\n  ".join(attempt.repairs), highlight=False)


def show_grammar(votes: list[dict[str, Any]], notes: list[str]) -> None:
    """The label votes (with their voters) and the grammar notes (grounding, derived fields, narrowing)."""
    if votes:
        table = Table(title="Label votes", title_justify="left")
        for col in ("field", "admitted", "scores", "voters (similarity, weight)"):
            table.add_column(col, overflow="fold")
        for v in votes:
            voters = ", ".join(f"{x['id']}={x['value']} ({x['similarity']:.2f}, {x['weight']:.2f}"
                               f"{', reviewed' if x.get('reviewed') else ''})" for x in v.get("voters", [])[:5])
            admitted = (describe(v) if v.get("items") is not None
                        else f"sure items {v['leftover']} ({v.get('reason', '')})" if v.get("leftover")
                        else ", ".join(map(str, v.get("allowed") or [])) or f"(open: {v.get('reason', '')})")
            gloss = (f" ({glossed(v['gloss'], bool(v.get('tiebreak')), bool(v.get('leads')))})"
                     if v.get("gloss") is not None else "")
            admitted += (" (named)" if v.get("mention") else f" (implied by {v['implied']})" if v.get("implied")
                         else " (clear winner)" if v.get("decided") else gloss)
            admitted += f"; left out: {lacks}" if (lacks := left_out(v)) else ""
            scores = ", ".join(f"{k} {s:.2f}" for k, s in v.get("scores", {}).items())
            table.add_row(escape(v["path"]), escape(admitted), escape(scores), escape(voters))
        console.print(table)
    if notes:
        console.print("[bold]grammar[/bold]\n  " + "\n  ".join(escape(_clip(n, 160)) for n in notes), highlight=False)


def show_schema(schema: dict[str, Any] | None) -> None:
    """The JSON schema sent to the backend as the grammar of the answer, as plain JSON (it can be copied)."""
    if schema is None:
        console.print("[bold]grammar schema[/bold]: none (the answer is free text)", highlight=False)
        return
    console.print("[bold]grammar schema[/bold] (the JSON schema sent with the request)", highlight=False)
    console.print(dumps(schema), markup=False, soft_wrap=True)


def show_timings(timings: dict[str, float]) -> None:
    console.print("timings (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def assembly_view(assembly: Any) -> dict[str, Any]:
    """What an assembled request (``Middleware.render``) sends, as JSON fields: the prompt, its budget and
    timings. ``prompts render --json`` and ``ask --dry-run --json`` start from it."""
    return {"domain": assembly.domain, "messages": assembly.messages, "prompt": assembly.prompt,
            "options": assembly.options, "template_version": assembly.template_version,
            "prompt_tokens": assembly.prompt_tokens, "budget": assembly.budget, "timings_ms": assembly.timings_ms}
