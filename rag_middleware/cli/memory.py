"""``rag-middleware memory``: bulk import, count and list memory records; migrate SQLite memory to Weaviate."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..memory.db import connect
from ..errors import ConfigError, ImportFileError, UnknownDomainError
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
                raise ImportFileError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=str(path),
                                      line=lineno) from None
            if not isinstance(data, dict):
                raise ImportFileError("each line must be a JSON object", path=str(path), line=lineno)
            data.setdefault("tenant", default_tenant)
            data.setdefault("source", "import")
            data.setdefault("status", "approved")  # a deliberate import is reviewed data; say "validated" to opt out
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
    domain: str | None = typer.Option(None, "--domain", "-d"),
    tenant: str | None = typer.Option(None, "--tenant", "-t"),
    kind: str | None = typer.Option(None, "--kind", help="example | negative | interaction"),
    status: str | None = typer.Option(None, "--status"),
) -> None:
    """How many records match."""
    state: CliState = ctx.obj
    with state.middleware() as mw:
        console.print(mw.store.count(_filters(domain, tenant, kind, status)))


@app.command("list")
def list_(
    ctx: typer.Context,
    domain: str | None = typer.Option(None, "--domain", "-d"),
    tenant: str | None = typer.Option(None, "--tenant", "-t"),
    kind: str | None = typer.Option(None, "--kind"),
    status: str | None = typer.Option(None, "--status"),
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


# -- migrate -----------------------------------------------------------------------------------------

_SOURCE_COLUMNS = ("id", "tenant", "domain", "kind", "status", "source", "question", "answer", "reason", "wrong",
                   "score", "template_version", "created_at", "updated_at", "meta")


def _source_batch(conn: Any, after: str, limit: int) -> list[tuple[MemoryRecord, Any]]:
    """The next ``limit`` SQLite memory records (with their float32 vectors) by id, after ``after``."""
    import numpy as np

    rows = conn.execute(f"SELECT {', '.join(_SOURCE_COLUMNS)}, vector FROM memory WHERE id > ? ORDER BY id LIMIT ?",
                        (after, limit)).fetchall()
    out = []
    for row in rows:
        data = dict(zip(_SOURCE_COLUMNS, row[:-1], strict=True))
        data["meta"] = json.loads(data["meta"] or "{}")
        out.append((MemoryRecord.model_validate(data), np.frombuffer(row[-1], dtype=np.float32)))
    return out


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, path)


@app.command("migrate")
def migrate(
    ctx: typer.Context,
    to: str = typer.Option(..., "--to", help="target backend (weaviate)"),
    url: str | None = typer.Option(None, "--url", help="Weaviate URL (default: store.weaviate.url/host/port)"),
    grpc_port: int | None = typer.Option(None, "--grpc-port", help="Weaviate gRPC port"),
    batch_size: int = typer.Option(200, "--batch-size", min=1, max=10_000),
    restart: bool = typer.Option(False, "--restart", help="ignore the checkpoint and copy everything again"),
) -> None:
    """Copy the SQLite memory (vectors included) to Weaviate. Idempotent and resumable; checks that source and
    target hold the same counts per tenant and kind."""
    import numpy as np

    from ..memory.stores.weaviate import WeaviateStore

    if to != "weaviate":
        raise ConfigError(f"cannot migrate to {to!r}; the only target is 'weaviate'")
    state: CliState = ctx.obj
    settings = state.settings()
    target_cfg = settings.store.weaviate.model_copy(
        update={k: v for k, v in {"url": url, "grpc_port": grpc_port}.items() if v is not None})
    source = connect(settings.db_path)
    target = WeaviateStore(target_cfg, data_dir=settings.data_dir)
    checkpoint = settings.data_dir / f"migrate-weaviate-{target_cfg.collection}.json"
    try:
        where = {"target": target.rest_url(), "collection": target_cfg.collection, "source": str(settings.db_path)}
        saved = json.loads(checkpoint.read_text(encoding="utf-8")) if checkpoint.is_file() and not restart else {}
        resume = saved if {k: saved.get(k) for k in where} == where else {}
        after, done = resume.get("last_id", ""), int(resume.get("copied", 0))
        total = int(source.execute("SELECT COUNT(*) FROM memory").fetchone()[0])
        totals: Counter[str] = Counter()
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        if resume:
            console.print(f"resuming after {done} record(s) already copied ({checkpoint})")
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(f"copying to {target_cfg.collection}", total=total, completed=min(done, total))
            while batch := _source_batch(source, after, batch_size):
                result = target.upsert([r for r, _ in batch], np.stack([v for _, v in batch]))
                totals.update(result)
                after, done = batch[-1][0].id, done + len(batch)
                _save_checkpoint(checkpoint, {**where, "last_id": after, "copied": done})
                progress.advance(task, len(batch))
        checkpoint.unlink(missing_ok=True)
        console.print(f"{settings.db_path} -> {target.rest_url()} {target_cfg.collection}: inserted "
                      f"{totals['inserted']} · updated {totals['updated']} · unchanged {totals['unchanged']}")
        ok = _compare(source, target)
    finally:
        target.close()
        source.close()
    if not ok:
        console.print("[red]source and target do not match[/red]: records written or removed meanwhile, or by "
                      "another writer; run again with --restart to copy everything again")
        raise typer.Exit(code=1)
    console.print("source and target match")


def _compare(source: Any, target: Any) -> bool:
    """Print counts per tenant and kind on both sides; True when they are equal."""
    src = {(t, k): n for t, k, n in source.execute(
        "SELECT tenant, kind, COUNT(*) FROM memory GROUP BY tenant, kind ORDER BY tenant, kind")}
    tenants = sorted({t for t, _ in src} | set(target.tenants()))
    kinds = ("example", "negative", "interaction")
    table = Table(title="memory per tenant and kind", title_justify="left")
    for col in ("tenant", "kind", "sqlite", "weaviate", ""):
        table.add_column(col, justify="right" if col in ("sqlite", "weaviate") else "left")
    ok = True
    for tenant in tenants:
        for kind in kinds:
            have = src.get((tenant, kind), 0)
            got = target.count(MemoryFilter(tenant=tenant, kinds=(kind,)))
            if have == got == 0:
                continue
            ok &= have == got
            table.add_row(tenant, kind, str(have), str(got), "ok" if have == got else "[red]differs[/red]")
    console.print(table)
    return ok
