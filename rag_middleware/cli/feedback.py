"""``rag-middleware feedback ID``: approve, edit or reject one recorded interaction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError

from ..errors import RequestError
from ..feedback import Feedback, apply_feedback
from .context import CliState, console

__all__ = ["register", "show_result"]


def show_result(result, *, as_json: bool = False) -> None:
    mem = result.memory
    if as_json:
        console.print(json.dumps({"interaction_id": result.feedback.interaction_id, "action": result.feedback.action,
                                  "reviewer": result.feedback.reviewer, "replaced": result.replaced,
                                  "effective": result.effective, "memory": {"kind": mem.kind, "status": mem.status,
                                                                            "source": mem.source}}),
                      markup=False, soft_wrap=True)
        return
    verb = {"approve": "approved", "edit": "edited", "reject": "rejected"}[result.feedback.action]
    again = " (replaced this reviewer's earlier feedback)" if result.replaced else ""
    console.print(f"{result.feedback.interaction_id}: {verb} by {result.feedback.reviewer}{again}; memory entry is "
                  f"now {mem.kind}/{mem.status}" + (f" ({mem.source})" if mem.source else ""), markup=False)


def feedback(
    ctx: typer.Context,
    interaction_id: str = typer.Argument(..., help="the interaction id (X-RAG-Interaction-Id, ask --json)"),
    approve: bool = typer.Option(False, "--approve", help="the answer is right"),
    reject: Optional[str] = typer.Option(None, "--reject", metavar="REASON", help="the answer is wrong, and why"),
    edit: Optional[Path] = typer.Option(None, "--edit", metavar="FILE", help="a file with the corrected answer"),
    score: Optional[int] = typer.Option(None, "--score", min=1, max=5, help="1 (bad) to 5 (excellent)"),
    notes: str = typer.Option("", "--notes"),
    reviewer: str = typer.Option("cli", "--reviewer", help="who reviews (one feedback per reviewer)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Give feedback on an interaction; its memory entry changes at once (the next request sees it)."""
    given = [name for name, on in (("--approve", approve), ("--reject", reject is not None), ("--edit", edit))
             if on]
    if len(given) != 1:
        raise RequestError("give exactly one of --approve, --reject REASON or --edit FILE"
                           + (f" (got {', '.join(given)})" if given else ""))
    edited = None
    if edit is not None:
        try:
            edited = edit.read_text(encoding="utf-8")
        except OSError as exc:
            raise RequestError(f"cannot read --edit file {edit}: {exc.strerror or exc}") from None
    action = "approve" if approve else ("reject" if reject is not None else "edit")
    try:
        fb = Feedback(interaction_id=interaction_id, action=action, score=score, notes=notes, reviewer=reviewer,
                      edited_output=edited, reason=reject or "")
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        raise RequestError(err["msg"].removeprefix("Value error, ")) from None
    state: CliState = ctx.obj
    with state.middleware() as mw:
        result = apply_feedback(mw, fb)
    show_result(result, as_json=as_json)


def register(app: typer.Typer) -> None:
    app.command("feedback")(feedback)
