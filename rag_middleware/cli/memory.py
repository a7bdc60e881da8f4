"""``rag-middleware memory``: bulk import, count and list memory records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import ImportFileError, UnknownDomainError
from ..records import MemoryFilter, MemoryRecord
from .context import CliState, console

__all__ = ["app", "read_import_file"]

app = typer.Typer(help="Memory: past Q&A, examples and negatives.", no_args_is_help=True)


def read_import_file(path: Path, *, known_domains: list[str], validators: dict[str, Any],
                     default_tenant: str) -> list[MemoryRecord]:
    """Parse and check the whole file before anything is written; the first bad line is named."""
    if not path.is_file():
        raise ImportFileError("file not found", path=str(path), line=0)
    records: list[MemoryRecord] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ImportFileError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=str(path), line=lineno) from None
            if not isinstance(data, dict):
                raise ImportFileError("each line must be a JSON object", path=str(path), line=lineno)
            data.setdefault("tenant", default_tenant)
            data.setdefault("source", "import")
            domain = data.get("domain")
            if domain not in known_domains:
                raise ImportFileError(str(UnknownDomainError(str(domain), known_domains)), path=str(path), line=lineno)
            answer = data.get("answer")
            validator = validators.get(domain)
            if validator is not None and data.get("kind", "interaction") != "negative":
                outcome = validator.validate_value(answer, str(data.get("question", "")))
                if not outcome.ok:
                    raise ImportFileError(f"answer fails the {domain} output model: {outcome.errors[0]}",
                                          path=str(path), line=lineno)
                answer = outcome.value
            if not isinstance(answer, str):
                data["answer"] = json.dumps(answer, ensure_ascii=False, separators=(", ", ": "))
            try:
                records.append(MemoryRecord.model_validate(data))
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                loc = ".".join(str(p) for p in err["loc"])
                raise ImportFileError(f"{loc}: {err['msg']}", path=str(path), line=lineno) from None
    return records


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="JSONL: {id, question, answer, domain, tenant?, status?, kind?}"),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
) -> None:
    """Bulk-load Q&A records, embedding them in batches. Idempotent: importing again changes nothing."""
    state: CliState = ctx.obj
    with state.middleware() as mw:
        names = mw.domains.names()
        validators = {n: mw.domains.get(n).validator for n in names}
        records = read_import_file(file, known_domains=names, validators=validators,
                                   default_tenant=mw.settings.default_tenant)
        totals = {"inserted": 0, "updated": 0, "unchanged": 0}
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("embedding and storing", total=len(records))
            for start in range(0, len(records), batch_size):
                batch = records[start : start + batch_size]
                vectors = mw.embedder.encode([r.question for r in batch])
                result = mw.store.upsert(batch, vectors)
                for key in totals:
                    totals[key] += result.get(key, 0)
                progress.advance(task, len(batch))
    console.print(f"{file}: {len(records)} records · inserted {totals['inserted']} · updated {totals['updated']} "
                  f"· unchanged {totals['unchanged']}")


def _filters(domain: str | None, tenant: str | None, kind: str | None, status: str | None) -> MemoryFilter:
    return MemoryFilter(domain=domain, tenant=tenant, kinds=(kind,) if kind else None,
                        statuses=(status,) if status else None)


@app.command("count")
def count(
    ctx: typer.Context,
    domain: Optional[str] = typer.Option(None, "--domain", "-d"),
    tenant: Optional[str] = typer.Option(None, "--tenant", "-t"),
    kind: Optional[str] = typer.Option(None, "--kind", help="example | negative | interaction"),
    status: Optional[str] = typer.Option(None, "--status"),
) -> None:
    """How many records match."""
    state: CliState = ctx.obj
    with state.middleware() as mw:
        console.print(mw.store.count(_filters(domain, tenant, kind, status)))


@app.command("list")
def list_(
    ctx: typer.Context,
    domain: Optional[str] = typer.Option(None, "--domain", "-d"),
    tenant: Optional[str] = typer.Option(None, "--tenant", "-t"),
    kind: Optional[str] = typer.Option(None, "--kind"),
    status: Optional[str] = typer.Option(None, "--status"),
    limit: int = typer.Option(20, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line"),
) -> None:
    """The newest records that match."""
    state: CliState = ctx.obj
    with state.middleware() as mw:
        records = mw.store.list(_filters(domain, tenant, kind, status), limit=limit)
    if as_json:
        for r in records:
            console.print(r.model_dump_json(), markup=False, soft_wrap=True)
        return
    table = Table(title=f"{len(records)} record(s)", title_justify="left")
    for col in ("id", "tenant", "domain", "kind", "status", "created", "question"):
        table.add_column(col, overflow="fold")
    for r in records:
        table.add_row(r.id, r.tenant, r.domain, r.kind, r.status, r.created_at.strftime("%Y-%m-%d %H:%M"),
                      " ".join(r.question.split())[:70])
    console.print(table)
