"""``rag-middleware review``: go through recorded interactions and approve, edit or reject them.

For each interaction it shows the request, the examples and negatives that were selected, and the output,
then reads one choice (``--order confidence`` goes through the least confident answers first; the default is
the newest first): ``a`` approve, ``e`` edit in $EDITOR (validated against the domain's model; an invalid
edit is shown with its errors and can be edited again), ``r`` reject with a reason, ``s`` skip, ``q`` quit.
"""

from __future__ import annotations

import json
from typing import Any

import click
import typer
from rich.panel import Panel
from rich.table import Table

from ..memory.db import connect
from ..errors import InvalidEditError, RequestError
from ..learning.feedback import Feedback, FeedbackLog, MemoryAccess, apply_feedback
from ..analytics.stats import load_rows
from .context import CliState, console
from .feedback import show_result

__all__ = ["register"]

CHOICES = click.Choice(["a", "e", "r", "s", "q"], case_sensitive=False)
ORDERS = ("newest", "confidence")


def _show(interaction: Any, position: int, total: int) -> None:
    head = (f"[{position}/{total}] {interaction.id}  domain {interaction.domain}  tenant {interaction.tenant}  "
            f"{interaction.status}  {interaction.created_at:%Y-%m-%d %H:%M}  attempts {len(interaction.attempts)}"
            + (f"  variant {interaction.variant}" if interaction.variant else "")
            + (f"  confidence {interaction.confidence:.2f}" if interaction.confidence is not None else ""))
    console.print(head, markup=False, style="bold")
    if interaction.confidence_parts:
        console.print("confidence parts: " + ", ".join(f"{k} {v:.2f}" for k, v in interaction.confidence_parts.items()
                                                     if k != "score"), markup=False)
    console.print(Panel(interaction.question, title="request", title_align="left"), markup=False)
    if interaction.selected or interaction.negatives:
        t = Table(title="selected examples and negatives", title_justify="left")
        for col in ("kind", "id", "status", "similarity", "question"):
            t.add_column(col, overflow="fold")
        for s in [*interaction.selected, *interaction.negatives]:
            t.add_row(s.kind, s.id, s.status, f"{s.similarity:.3f}", " ".join(s.question.split())[:80])
        console.print(t)
    output = interaction.output_text or (interaction.attempts[-1].raw_output if interaction.attempts else "")
    console.print(Panel(_pretty(output), title="output", title_align="left"), markup=False)
    if interaction.error:
        console.print(f"errors: {interaction.error}", markup=False)


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (json.JSONDecodeError, TypeError):
        return text


def _edit(mw: Any, interaction: Any, reviewer: str) -> bool:
    """Edit in $EDITOR until the answer validates, or the reviewer gives up. True when feedback was stored."""
    text = _pretty(interaction.output_text or (interaction.attempts[-1].raw_output if interaction.attempts else ""))
    while True:
        edited = click.edit(text, extension=".json" if not mw.domains.get(interaction.domain).free_text else ".txt",
                            require_save=False)
        if edited is None or not edited.strip():
            console.print("edit cancelled (nothing saved)", markup=False)
            return False
        try:
            result = apply_feedback(MemoryAccess.of(mw), mw.domains, Feedback(
                interaction_id=interaction.id, action="edit", edited_output=edited.strip(), reviewer=reviewer))
        except InvalidEditError as exc:
            console.print("the edit fails validation:", markup=False, style="red")
            for line in exc.errors:
                console.print(f"  {line}", markup=False)
            again = click.prompt("[e]dit again or [s]kip", type=click.Choice(["e", "s"]), show_choices=False)
            if again == "s":
                return False
            text = edited
            continue
        show_result(result)
        return True


def least_confident(mw: Any, *, domain: str | None, tenant: str | None, status: str | None, limit: int,
                    skip: Any) -> list[Any]:
    """Up to ``limit`` interactions, lowest confidence first (newest first among equals), over the whole log
    (not just the newest ``limit``); those without a confidence (free text) come last. ``skip(id)`` leaves
    an interaction out before the limit is applied."""
    conn = connect(mw.settings.db_path)
    try:
        rows = load_rows(conn, domain=domain, tenant=tenant)
    finally:
        conn.close()
    rows = [r for r in rows if (status is None or r.status == status) and not skip(r.id)]
    rows.sort(key=lambda r: r.created_at, reverse=True)
    rows.sort(key=lambda r: (r.confidence is None, r.confidence or 0.0))
    out = []
    for row in rows[:limit]:
        interaction = mw.journal.get(row.id)
        if interaction is not None:
            out.append(interaction)
    return out


def review(
    ctx: typer.Context,
    domain: str | None = typer.Option(None, "--domain", "-d"),
    status: str | None = typer.Option("validated", "--status", help="validated | answered | failed | error"),
    tenant: str | None = typer.Option(None, "--tenant", "-t"),
    reviewer: str = typer.Option("cli", "--reviewer"),
    limit: int = typer.Option(200, "--limit", min=1),
    include_reviewed: bool = typer.Option(False, "--include-reviewed", help="also what this reviewer already did"),
    order: str = typer.Option("newest", "--order", help="newest | confidence (the least confident first)"),
) -> None:
    """Interactive review, one interaction at a time: approve (a), edit in $EDITOR (e), reject with a reason (r),
    skip (s), quit (q)."""
    state: CliState = ctx.obj
    if order not in ORDERS:
        raise RequestError(f"--order must be one of {', '.join(ORDERS)}, not {order!r}")
    counts = {"approve": 0, "edit": 0, "reject": 0, "skip": 0}
    with state.middleware() as mw:
        log, memory = FeedbackLog(mw.settings.db_path), MemoryAccess.of(mw)
        try:
            def done(iid: str) -> bool:
                return not include_reviewed and any(f.reviewer == reviewer for f in log.of(iid))

            if order == "confidence":
                items = least_confident(mw, domain=domain, tenant=tenant, status=status, limit=limit, skip=done)
            else:
                items = [i for i in mw.journal.list(domain=domain, tenant=tenant, status=status, limit=limit)
                         if not done(i.id)]
            if not items:
                console.print("nothing to review", markup=False)
                return
            for n, interaction in enumerate(items, start=1):
                _show(interaction, n, len(items))
                choice = click.prompt("[a]pprove [e]dit [r]eject [s]kip [q]uit", type=CHOICES,
                                      show_choices=False).lower()
                if choice == "q":
                    break
                if choice == "s":
                    counts["skip"] += 1
                elif choice == "a":
                    show_result(apply_feedback(memory, mw.domains, Feedback(
                        interaction_id=interaction.id, action="approve", reviewer=reviewer), log=log))
                    counts["approve"] += 1
                elif choice == "r":
                    reason = click.prompt("reason", value_proc=lambda v: v.strip() or _empty())
                    show_result(apply_feedback(memory, mw.domains, Feedback(
                        interaction_id=interaction.id, action="reject", reason=reason, reviewer=reviewer), log=log))
                    counts["reject"] += 1
                elif _edit(mw, interaction, reviewer):
                    counts["edit"] += 1
                else:
                    counts["skip"] += 1
        finally:
            log.close()
    console.print(", ".join(f"{k} {v}" for k, v in counts.items()), markup=False)


def _empty() -> str:
    raise click.UsageError("a rejection needs a reason")


def register(app: typer.Typer) -> None:
    app.command("review")(review)
