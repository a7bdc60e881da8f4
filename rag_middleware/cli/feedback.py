"""``rag-middleware feedback ID``: approve, edit or reject one recorded interaction;
``rag-middleware feedback sync --from-openwebui URL --token T``: the ratings and edits made in Open WebUI."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from typer.core import TyperGroup

from ..errors import RequestError
from ..learning.feedback import Feedback, MemoryAccess, apply_feedback
from .context import CliState, console, err_console

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
    reject: str | None = typer.Option(None, "--reject", metavar="REASON", help="the answer is wrong, and why"),
    edit: Path | None = typer.Option(None, "--edit", metavar="FILE", help="a file with the corrected answer"),
    score: int | None = typer.Option(None, "--score", min=1, max=5, help="1 (bad) to 5 (excellent)"),
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
        result = apply_feedback(MemoryAccess.of(mw), mw.domains, fb)
    show_result(result, as_json=as_json)


class _FeedbackGroup(TyperGroup):
    """``feedback ID --approve`` stays as it was: anything that is not a subcommand goes to ``give``."""

    def parse_args(self, ctx, args):  # noqa: ANN001, ANN201 (click's signature)
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["give", *args]
        return super().parse_args(ctx, args)


group = typer.Typer(cls=_FeedbackGroup, no_args_is_help=True,
                    help="Give feedback on an interaction (feedback ID --approve | --reject REASON | --edit FILE), "
                         "or sync the ratings given in Open WebUI (feedback sync).")
group.command("give")(feedback)

_STYLE = {"applied": "green", "replaced": "green", "would apply": "cyan", "already synced": "dim",
          "unmatched": "red", "skipped": "yellow", "refused": "red"}


def _short(text: str, width: int = 48) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"


@group.command("sync")
def sync(
    ctx: typer.Context,
    url: str = typer.Option(..., "--from-openwebui", metavar="URL",
                            help="Open WebUI's address, e.g. http://localhost:8080"),
    token: str = typer.Option(..., "--token", envvar="OPENWEBUI_TOKEN",
                              help="an Open WebUI API key or JWT (an admin's reads every user's ratings)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be applied, change nothing"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per message instead of tables"),
) -> None:
    """Apply Open WebUI's thumbs up/down, comments and edited answers to the interactions they rate."""
    from ..learning.feedback_sync import sync_judgements
    from ..learning.openwebui import OpenWebUIClient, collect_judgements

    with OpenWebUIClient(url, token=token) as client:
        judgements = collect_judgements(client)
    state: CliState = ctx.obj
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn())
    with state.middleware() as mw, Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("syncing", total=len(judgements))
        rows = sync_judgements(mw, judgements, dry_run=dry_run, on_item=lambda _row: progress.advance(task))
    if as_json:
        for row in rows:
            console.print(row.model_dump_json(), markup=False, soft_wrap=True)
        return
    matched = [r for r in rows if r.outcome != "unmatched"]
    unmatched = [r for r in rows if r.outcome == "unmatched"]
    thumbs = {1: "up", -1: "down"}
    if matched:
        table = Table(title=f"Matched ({len(matched)})", title_justify="left")
        table.add_column("question", overflow="ellipsis", min_width=12, max_width=28)
        table.add_column("action", no_wrap=True)
        table.add_column("interaction", overflow="fold")
        table.add_column("matched by", overflow="fold")
        table.add_column("outcome", min_width=7, overflow="fold")
        for r in matched:
            style = _STYLE[r.outcome]
            table.add_row(_short(r.question), r.action or "-", r.interaction_id or "-",
                          r.matched_by, f"[{style}]{r.outcome}[/{style}]"
                          + (f": {r.detail}" if r.detail and r.outcome in ("skipped", "refused") else ""))
        console.print(table)
    if unmatched:
        table = Table(title=f"Not matched ({len(unmatched)})", title_justify="left")
        table.add_column("chat/message", no_wrap=True)
        table.add_column("model", overflow="fold")
        table.add_column("question", overflow="ellipsis", max_width=28)
        table.add_column("rating")
        table.add_column("why", overflow="fold")
        for r in unmatched:
            chat_id, message_id = r.key.split("/", 1)
            table.add_row(f"{chat_id[:8]}/{message_id[:8]}", r.model, _short(r.question),
                          thumbs.get(r.rating or 0, "-"), r.detail)
        console.print(table)
    counts = {o: sum(1 for r in rows if r.outcome == o) for o in _STYLE}
    by = {m: sum(1 for r in rows if r.matched_by == m) for m in ("id", "chat+message", "question+answer")}
    console.print(f"{len(rows)} Open WebUI messages: " + ", ".join(f"{n} {o}" for o, n in counts.items() if n)
                  + ("; matched by " + ", ".join(f"{m} {n}" for m, n in by.items() if n) if any(by.values()) else "")
                  if rows else "no rated or edited messages in Open WebUI")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="feedback")
