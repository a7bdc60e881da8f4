"""``rag-middleware prompts``: render, lint, list, show, diff, promote and try prompt template sets.

A template set is named by a directory (``prompts``, ``drafts/repair-v2``), a stored version (a unique prefix
of its content hash) or a label (``production``, ``candidate``, ...); ``live`` is the configured prompts dir.
"""

from __future__ import annotations

import difflib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..config import Settings
from ..domains import DomainRegistry
from ..errors import ConfigError, DomainError, TemplateError
from ..memory.interaction_log import InteractionLog
from ..templating.lint import Problem, lint_snapshot, lint_variants
from ..templating.versions import TemplateStore, resolve_template_dir
from ..templating.engine import TemplateSnapshot
from .context import CliState, console, err_console
from .explain import assembly_view, show_messages, show_selection, show_timings

__all__ = ["app"]

app = typer.Typer(help="Prompt templates: render, lint, list, show, diff, promote, try a draft.",
                  no_args_is_help=True)


def _snapshot(settings: Settings, ref: str) -> TemplateSnapshot:
    """A directory, 'live', a label or a version (prefix) -> its snapshot."""
    if ref == "live":
        return TemplateSnapshot.load(settings.prompts_dir)
    path = Path(ref)
    if path.is_dir():
        return TemplateSnapshot.load(path)
    return TemplateStore.from_settings(settings).load(ref)


def _print_problems(problems: list[Problem]) -> tuple[int, int]:
    errors = sum(1 for p in problems if p.severity == "error")
    for p in problems:
        color = "red" if p.severity == "error" else "yellow"
        where = f"{p.path}:{p.line}" if p.line else p.path
        err_console.print(f"{escape(where)}: [{color}]{p.severity}[/{color}]: {escape(p.message)}", soft_wrap=True)
    return errors, len(problems) - errors


def _lint_or_exit(snapshot: TemplateSnapshot, settings: Settings, what: str) -> None:
    problems = lint_snapshot(snapshot, DomainRegistry(settings.knowledge_base))
    errors, _ = _print_problems(problems)
    if errors:
        err_console.print(f"[red]{what} has {errors} lint error(s); fix them first (or --force)[/red]")
        raise typer.Exit(1)


@app.command("render")
def render(
    ctx: typer.Context,
    domain: str = typer.Option(..., "--domain", "-d"),
    request: str = typer.Option(..., "--request", "-r", help="the request text"),
    tenant: str | None = typer.Option(None, "--tenant", "-t"),
    backend: str | None = typer.Option(None, "--backend", help="embedded (flat prompt) | ollama (chat messages)"),
    template_set: str | None = typer.Option(None, "--template-set", help="a prompts dir, a label or a version"),
    variant: str | None = typer.Option(None, "--variant", help="render with this A/B variant's template set"),
    user: str | None = typer.Option(None, "--user", help="render with the variant this user is assigned"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Retrieval, selection and assembly without calling the model; shows the time spent in each stage."""
    state: CliState = ctx.obj
    prompts_dir = resolve_template_dir(state.settings(), template_set) if template_set else None
    mw = state.middleware(**{"llm.backend": backend, "prompts_dir": prompts_dir})
    with mw:
        assembly = mw.render(request.replace("\\n", "\n"), domain=domain, tenant=tenant, user=user, variant=variant)
    if as_json:
        console.print_json(json.dumps({
            **assembly_view(assembly),
            "selected": [s.model_dump() for s in assembly.selected],
            "negatives": [n.model_dump() for n in assembly.negatives],
        }, default=str))
        return
    show_selection(assembly.selected, assembly.negatives)
    show_messages(assembly.messages, assembly.prompt)
    console.print(f"template version {assembly.template_version} · prompt tokens {assembly.prompt_tokens} · "
                  f"budget {assembly.budget}")
    show_timings(assembly.timings_ms)


@app.command("lint")
def lint(
    ctx: typer.Context,
    path: Path | None = typer.Argument(None, help="a prompts dir (default: the configured prompts_dir)"),
    strict: bool = typer.Option(False, "--strict", help="warnings fail too"),
) -> None:
    """Check every template: sandbox parse, the context contract, overrides, a render per domain.

    Parses every template in the sandbox, checks its variables against the context contract and each domain's
    overrides, renders every domain against one of its curated examples. Without PATH, the domains' A/B
    variant template sets are linted too. Exits 1 on any error."""
    settings = ctx.obj.settings()
    root = path or settings.prompts_dir
    try:
        snapshot = TemplateSnapshot.load(root)
    except TemplateError as exc:
        err_console.print(f"[red]error[/red]: {escape(exc.one_line())}", soft_wrap=True)
        raise typer.Exit(1) from None
    domains = DomainRegistry(settings.knowledge_base)
    problems = lint_snapshot(snapshot, domains)
    if path is None:  # the project's own prompts: the domains' A/B variant template sets too
        problems += lint_variants(domains)
    errors, warnings = _print_problems(problems)
    verdict = "[green]ok[/green]" if not errors and not (strict and warnings) else "[red]failed[/red]"
    console.print(f"{escape(str(root))}: version {snapshot.version}, {len(snapshot.files)} templates · "
                  f"{errors} error(s), {warnings} warning(s) · {verdict}")
    if errors or (strict and warnings):
        raise typer.Exit(1)


@app.command("list")
def list_sets(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """The template sets (the live one, the domains' A/B variants), the stored versions and the labels."""
    settings = ctx.obj.settings()
    store = TemplateStore.from_settings(settings)
    live = TemplateSnapshot.load(settings.prompts_dir)
    versions, labels = store.versions(), store.labels()
    overrides = {d: sorted(rel.split("/", 1)[1] for rel in live.files if rel.startswith(d + "/"))
                 for d in live.override_domains()}
    variants = _variant_sets(settings)
    if as_json:
        console.print_json(json.dumps({
            "live": {"path": str(settings.prompts_dir), "version": live.version, "files": sorted(live.files),
                     "overrides": overrides},
            "variants": variants,
            "labels": {k: {"version": v, "updated_at": at} for k, (v, at) in labels.items()},
            "versions": [v.model_dump() for v in versions],
        }))
        return
    over = "; ".join(f"{d}: {', '.join(files)}" for d, files in overrides.items()) or "none"
    console.print(f"[bold]live[/bold] {escape(str(settings.prompts_dir))} · version {live.version} · "
                  f"{len(live.files)} templates · domain overrides: {escape(over)}")
    for v in variants:
        console.print(f"[bold]variant[/bold] {v['domain']}/{v['variant']} {escape(v['path'])} · version {v['version']}")
    table = Table(title=f"Labels ({len(labels)})", title_justify="left")
    for col in ("label", "version", "since"):
        table.add_column(col)
    for label, (version, at) in labels.items():
        table.add_row(label, version, at)
    console.print(table)
    table = Table(title=f"Stored versions ({len(versions)})", title_justify="left")
    for col in ("version", "created", "files", "labels", "source"):
        table.add_column(col, overflow="fold", no_wrap=col == "version")
    for v in versions:
        mark = " (live)" if v.version == live.version else ""
        table.add_row(v.version + mark, v.created_at, str(v.files), ", ".join(v.labels), v.source)
    console.print(table)


def _variant_sets(settings: Settings) -> list[dict[str, str]]:
    out = []
    registry = DomainRegistry(settings.knowledge_base)
    for name in registry.names():
        try:
            domain = registry.get(name)
        except DomainError:
            continue
        for variant in domain.spec.variants:
            if variant.prompts is not None:
                root = (domain.path / variant.prompts).resolve()
                out.append({"domain": name, "variant": variant.name, "path": str(root),
                            "version": TemplateSnapshot.load(root).version})
    return out


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="a template: repair, repair.j2 or data_ops/system.j2"),
    version: str | None = typer.Option(None, "--version", help="a stored version (prefix)"),
    label: str | None = typer.Option(None, "--label", help="a label, e.g. production"),
    domain: str | None = typer.Option(None, "--domain", "-d", help="the file this domain renders"),
) -> None:
    """Print a template's source from the live set, a stored version or a label."""
    if version and label:
        raise ConfigError("give --version or --label, not both")
    settings = ctx.obj.settings()
    snapshot = _snapshot(settings, version or label or "live")
    rel = name if name.endswith(".j2") else snapshot.source_rel(name, domain)
    if rel not in snapshot.files:
        raise TemplateError(f"no template {rel} in version {snapshot.version} "
                            f"(templates: {', '.join(sorted(snapshot.files))})")
    err_console.print(f"[dim]{escape(snapshot.path_of(rel))} · version {snapshot.version}[/dim]")
    console.out(snapshot.files[rel], end="" if snapshot.files[rel].endswith("\n") else "\n", highlight=False)


def _print_diff(lines: list[str]) -> None:
    for line in lines:
        line = line.rstrip("\n")
        style = ("green" if line.startswith("+") and not line.startswith("+++") else
                 "red" if line.startswith("-") and not line.startswith("---") else
                 "cyan" if line.startswith("@@") else "bold" if line.startswith(("+++", "---")) else None)
        console.print(escape(line), style=style, soft_wrap=True)


def _messages_text(assembly: Any) -> list[str]:
    out = []
    for m in assembly.messages:
        out.append(f"### {m['role']}" + (f" · {m['kind']}" if m.get("kind") else "") + "\n")
        out += [line + "\n" for line in m["content"].splitlines()]
    if assembly.prompt is not None:
        out.append("### flat prompt\n")
        out += [line + "\n" for line in assembly.prompt.splitlines()]
    return out


@app.command("diff")
def diff(
    ctx: typer.Context,
    a: str = typer.Argument(..., help="a dir, 'live', a label or a version"),
    b: str = typer.Argument(..., help="a dir, 'live', a label or a version"),
    request: str | None = typer.Option(None, "--request", "-r", help="sample request (default: each domain's "
                                                                          "first curated example)"),
    domain: str | None = typer.Option(None, "--domain", "-d", help="render this domain only"),
    tenant: str | None = typer.Option(None, "--tenant", "-t"),
    no_render: bool = typer.Option(False, "--no-render", help="only the text diff of the templates"),
) -> None:
    """The text diff between two template sets, then the diff of the messages each renders for a request."""
    state: CliState = ctx.obj
    settings = state.settings()
    left, right = _snapshot(settings, a), _snapshot(settings, b)
    console.print(f"[bold]{escape(a)}[/bold] {left.version} → [bold]{escape(b)}[/bold] {right.version}")
    changed = 0
    for rel in sorted(set(left.files) | set(right.files)):
        lines = list(difflib.unified_diff(left.files.get(rel, "").splitlines(keepends=True),
                                          right.files.get(rel, "").splitlines(keepends=True),
                                          fromfile=f"{a}/{rel}" if rel in left.files else "/dev/null",
                                          tofile=f"{b}/{rel}" if rel in right.files else "/dev/null"))
        if lines:
            changed += 1
            _print_diff(lines)
    console.print(f"{changed} template file(s) differ")
    if no_render:
        return
    with state.middleware() as mw:
        names = [domain] if domain else mw.domains.names()
        for name in names:
            dom = mw.domains.get(name)
            text = (request.replace("\\n", "\n") if request else
                    dom.examples[0].question if dom.examples else None)
            if text is None:
                console.print(f"[yellow]{name}: no curated example to render; pass --request[/yellow]")
                continue
            rendered = []
            for snapshot in (left, right):
                with mw.templates.pinned(snapshot):
                    rendered.append(_messages_text(mw.render(text, domain=name, tenant=tenant)))
            lines = list(difflib.unified_diff(rendered[0], rendered[1], fromfile=f"{a} ({name})",
                                              tofile=f"{b} ({name})"))
            console.rule(f"rendered messages · {name} · {text.splitlines()[-1][:60]}")
            if lines:
                _print_diff(lines)
            else:
                console.print("identical")


@app.command("promote")
def promote(
    ctx: typer.Context,
    label: str = typer.Argument(..., help="e.g. production, candidate"),
    version: str = typer.Argument(..., help="a version (unique prefix), another label, or a dir to snapshot"),
    note: str = typer.Option("", "--note", help="why (kept in the label history)"),
    force: bool = typer.Option(False, "--force", help="promote even with lint errors"),
) -> None:
    """Point a label at a version. A directory is snapshotted first; the version is linted before it moves."""
    settings = ctx.obj.settings()
    store = TemplateStore.from_settings(settings)
    snapshot = _snapshot(settings, version)
    if not force:
        _lint_or_exit(snapshot, settings, f"version {snapshot.version}")
    store.save(snapshot)
    previous, now = store.promote(label, snapshot.version, note=note)
    console.print(f"{label}: {previous or '(new)'} → {now}")


@app.command("try")
def try_draft(
    ctx: typer.Context,
    draft_dir: Path = typer.Argument(..., help="the draft prompts dir"),
    against: str = typer.Option("store:", "--against", help="'store:' (recent conversations) or a JSONL file"),
    limit: int = typer.Option(50, "--limit", min=1),
    label: str = typer.Option("production", "--label", help="the version to compare with"),
    domain: str | None = typer.Option(None, "--domain"),
    tenant: str | None = typer.Option(None, "--tenant"),
    out: Path | None = typer.Option(None, "--out", help="output dir (default: <data_dir>/tries/<timestamp>)"),
    backend: str | None = typer.Option(None, "--backend", help="embedded | ollama"),
    model: str | None = typer.Option(None, "--model"),
    max_attempts: int | None = typer.Option(None, "--max-attempts", min=1, max=10),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression", help="exit 1 when anything regressed"),
) -> None:
    """Replay recent conversations with the draft and with the label's version; print the regressions."""
    from ..analytics.replay import ReplayOptions, load_items
    from ..analytics.template_trial import run_trial

    state: CliState = ctx.obj
    settings = state.settings()
    if not draft_dir.is_dir():
        raise ConfigError(f"draft {draft_dir} is not a directory of templates")
    draft = TemplateSnapshot.load(draft_dir)
    _lint_or_exit(draft, settings, f"draft {draft_dir}")
    store = TemplateStore.from_settings(settings)
    store.save(draft, source=str(draft_dir.resolve()))
    try:
        baseline = store.load(label)
    except TemplateError:
        if label != "production":
            raise
        baseline = store.save_dir(settings.prompts_dir)
        err_console.print(f"[yellow]no 'production' label yet: comparing with the live prompts dir "
                          f"({baseline.version}); `rag-middleware prompts promote production {baseline.version}` "
                          f"sets it[/yellow]")
    mw = state.middleware(**{"llm.backend": backend, "llm.model": model})
    with mw:
        items, skipped = load_items(against, mw, domain=domain, tenant=tenant, limit=limit)
        if not items:
            raise ConfigError(f"nothing to replay: {against} has no conversations"
                              + (f" for domain {domain}" if domain else ""))
        out = out or mw.settings.data_dir / "tries" / datetime.now().strftime("%Y%m%dT%H%M%S")
        out.mkdir(parents=True, exist_ok=True)
        # the trial's own records go to its output dir: they must not become the "recent conversations"
        mw.journal.close()
        mw.journal = InteractionLog(out / "interactions.db")
        console.print(f"{len(items)} conversations · {label} {baseline.version} vs draft {draft.version}")
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=err_console) as progress:
            tasks = {run: progress.add_task(f"{run} {snap.version}", total=len(items))
                     for run, snap in (("baseline", baseline), ("draft", draft))}
            result = run_trial(mw, items, draft=draft, baseline=baseline, out=out, skipped=skipped,
                               baseline_label=label, opts=ReplayOptions(domain=domain, tenant=tenant,
                                                                        max_attempts=max_attempts),
                               on_item=lambda run, row, resumed: progress.advance(tasks[run]))
    _print_trial(result, label)
    if fail_on_regression and result.regressions:
        raise typer.Exit(1)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _print_trial(result: Any, label: str) -> None:
    s, b = result.summary, result.baseline_summary
    table = Table(title="Draft against " + label, title_justify="left")
    for col in ("run", "version", "valid", "first-try valid", "match", "mean attempts"):
        table.add_column(col)
    for name, x in ((label, b), ("draft", s)):
        table.add_row(name, x["template_version"], _rate(x["valid_rate"]), _rate(x["first_try_valid_rate"]),
                      _rate(x["match_rate"]), str(x["mean_attempts"]))
    console.print(table)
    c = s["baseline"]["counts"]
    console.print(f"against {label}: {c['regressions']} regressions, {c['improvements']} improvements, "
                  f"{c['unchanged']} unchanged")
    for r in result.regressions[:20]:
        why = "; ".join(r["errors_now"])[:160] or "output differs"
        console.print(f"  [red]regressed[/red] {r['id']}: {escape(why)}", soft_wrap=True)
    console.print(f"report: {result.report}")
