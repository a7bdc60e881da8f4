"""Answer quality of the real pipeline on held-out data_ops requests, one ablation mode at a time.

Every request of the dev set (``benchmarks/data/data_ops_dev.jsonl``: ``{id, domain, messages, expected}``) is
answered by ``Middleware.ask`` with the embedded defaults (Gemma 3 270M through llama.cpp, all-MiniLM-L6-v2),
on a fresh temporary data dir, with memory off and learn off so no item can influence another. The modes are
cumulative:

=============  ============================================================================================
baseline       schema grammar only: no examples, no negatives, no CoT, no deterministic repair, 1 attempt
+examples      curated few-shot examples on
+negatives     negative examples on
+cot           chain-of-thought scaffold on
+repair        the domain's deterministic repair before validation, still 1 attempt
full           the domain's defaults (CoT as domain.yaml says) with repair and retries (3 attempts)
=============  ============================================================================================

Scores per item (an invalid output is wrong on every field):

- task, chart_type: equal to the expected plan's;
- ops: the multiset of operation types (``collections.Counter`` equality);
- columns: the set of columns the operations reference (``Operation.columns()`` of the domain's model);
- field accuracy = mean of the four, exact = all four right.

Per mode: valid rate, field accuracy, exact match, first-try valid, mean attempts, p50/p95 latency of the
whole ``ask`` call. Results go to ``benchmarks/out/quality-<timestamp>.json`` (every item in every mode:
output, validity, fields right, attempts with their raw outputs/errors/repairs, latency) and, when matplotlib
is installed in the venv, a chart ``quality-<timestamp>.png``.

Usage::

    python benchmarks/quality.py                                   # every mode, the whole dev set
    python benchmarks/quality.py --modes baseline,full --limit 10
    python benchmarks/quality.py --dev other.jsonl --out /tmp/q

Targets for the full pipeline: valid >= 0.98, field accuracy >= 0.80, exact >= 0.50 and at least +0.35 field
accuracy over baseline (needs the baseline mode in the same run). ``--check`` makes the exit status 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rag_middleware import Middleware, RagMiddlewareError, Switches, load_settings  # noqa: E402
from rag_middleware.analytics.evaluation import Mode  # noqa: E402

DOMAIN = "data_ops"
FIELDS = ("task", "chart_type", "ops", "columns")
DEFAULT_DEV = ROOT / "benchmarks" / "data" / "data_ops_dev.jsonl"
DEFAULT_OUT = ROOT / "benchmarks" / "out"
TARGETS = {"valid_rate": 0.98, "field_accuracy": 0.80, "exact": 0.50}
TARGET_GAIN = 0.35  # field accuracy of full over baseline
WARMUP = "Columns: a, b\nSort by a."

console = Console(width=None if sys.stdout.isatty() else 150)  # wide enough for the table in a log file


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("baseline", Switches(memory=False, examples=False, negatives=False, cot=False, repair=False, guide=False), 1,
         "schema grammar only, 1 attempt"),
    Mode("+examples", Switches(memory=False, examples=True, negatives=False, cot=False, repair=False, guide=False), 1,
         "+ curated few-shot examples"),
    Mode("+negatives", Switches(memory=False, examples=True, negatives=True, cot=False, repair=False, guide=False), 1,
         "+ negative examples"),
    Mode("+cot", Switches(memory=False, examples=True, negatives=True, cot=True, repair=False, guide=False), 1,
         "+ chain-of-thought scaffold"),
    Mode("+repair", Switches(memory=False, examples=True, negatives=True, cot=True, repair=True, guide=False), 1,
         "+ deterministic repair, 1 attempt"),
    Mode("+guide", Switches(memory=False, examples=True, negatives=True, cot=True, repair=True, guide=True), 1,
         "+ step guidance (labelled clauses steer the grammar), 1 attempt"),
    Mode("full", Switches(memory=False, examples=True, negatives=True, cot=None, repair=True, guide=True), 3,
         "domain defaults, repair, step guidance, 3 attempts"),
    Mode("declarative", Switches(memory=False, hooks=False), 3,
         "full with the domain's Python hooks off: only what domain.yaml declares, 3 attempts"),
)}


# -- scoring -------------------------------------------------------------------------------------------

def load_dev(path: Path) -> list[dict[str, Any]]:
    items = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            item = json.loads(line)
            for key in ("id", "messages", "expected"):
                if key not in item:
                    raise SystemExit(f"{path}:{n}: missing {key!r}")
            items.append(item)
    return items


def question_of(item: dict[str, Any]) -> str:
    return [m for m in item["messages"] if m["role"] == "user"][-1]["content"]


def plan_fields(model: Any, plan: Any) -> dict[str, Any] | None:
    """The four scored fields of a plan, or None when the plan does not even fit the model's shape."""
    try:
        obj = model.model_validate(plan)  # no context: shape and task rule only, not columns/chart of a request
    except Exception:
        return None
    columns: set[str] = set()
    for op in obj.operations:
        columns.update(op.columns())
    return {"task": obj.task, "chart_type": obj.chart_type, "ops": Counter(op.type for op in obj.operations),
            "columns": columns}


def score(model: Any, expected: dict[str, Any], output: Any, valid: bool) -> dict[str, bool]:
    want = plan_fields(model, expected)
    if want is None:
        raise SystemExit(f"an expected plan does not fit the model: {json.dumps(expected)[:200]}")
    got = plan_fields(model, output) if valid else None
    if got is None:
        return {f: False for f in FIELDS}
    return {f: got[f] == want[f] for f in FIELDS}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    if not n:
        return {"n": 0}
    lat = np.array([r["latency_ms"] for r in rows], dtype=float)
    per_field = {f: sum(r["fields"][f] for r in rows) / n for f in FIELDS}
    return {
        "n": n,
        "valid_rate": sum(r["valid"] for r in rows) / n,
        "field_accuracy": float(np.mean([sum(r["fields"].values()) / len(FIELDS) for r in rows])),
        "exact": sum(all(r["fields"].values()) for r in rows) / n,
        "first_try_valid": sum(r["first_try_valid"] for r in rows) / n,
        "mean_attempts": float(np.mean([r["attempts"] for r in rows])),
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "per_field": per_field,
        "errors": sum(bool(r.get("exception")) for r in rows),
    }


# -- running -------------------------------------------------------------------------------------------

def git_info() -> dict[str, Any]:
    def run(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": run("rev-parse", "--short", "HEAD"),
            "dirty": run("status", "--porcelain", "--", "rag_middleware", "knowledge_base", "prompts").splitlines()}


def run_item(mw: Middleware, mode: Mode, item: dict[str, Any], model: Any) -> dict[str, Any]:
    started = time.perf_counter()
    row: dict[str, Any] = {"id": item["id"], "mode": mode.name}
    try:
        result = mw.ask(item["messages"], domain=item.get("domain", DOMAIN), learn=False, switches=mode.switches,
                        max_attempts=mode.max_attempts, raise_on_invalid=False)
    except RagMiddlewareError as exc:  # timeouts and transport errors count as invalid answers
        attempts = getattr(exc, "attempts", None) or []
        row.update(output=None, valid=False, attempts=len(attempts) or 1, first_try_valid=False,
                   exception=f"{type(exc).__name__}: {exc}",
                   attempt_log=[_attempt(a) for a in attempts])
    else:
        row.update(output=result.output, valid=result.valid, attempts=len(result.attempts),
                   first_try_valid=result.first_try_valid, status=result.status,
                   selected=[s.id for s in result.selected], negatives=[s.id for s in result.negatives],
                   prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                   attempt_log=[_attempt(a) for a in result.attempts])
        if not result.valid and result.attempts:  # keep the last raw answer for the failure analysis
            row["last_raw_output"] = result.attempts[-1].raw_output
    row["latency_ms"] = (time.perf_counter() - started) * 1000
    row["fields"] = score(model, item["expected"], row["output"], row["valid"])
    row["exact"] = all(row["fields"].values())
    return row


def _attempt(a: Any) -> dict[str, Any]:
    return {"number": a.number, "raw_output": a.raw_output, "errors": a.errors, "repairs": a.repairs,
            "error_kind": a.error_kind, "duration_ms": round(a.duration_ms, 1), "prompt_tokens": a.prompt_tokens,
            "completion_tokens": a.completion_tokens, "done_reason": a.done_reason}


def results_table(summaries: dict[str, dict[str, Any]], *, title: str = "data_ops quality") -> Table:
    table = Table(title=title)
    for col in ("mode", "n", "valid", "field acc", "exact", "first-try valid", "mean attempts", "p50 ms", "p95 ms",
                "task", "chart", "ops", "columns"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for name, s in summaries.items():
        if not s.get("n"):
            table.add_row(name, "0", *["-"] * 11)
            continue
        pf = s["per_field"]
        table.add_row(name, str(s["n"]), f"{s['valid_rate']:.3f}", f"{s['field_accuracy']:.3f}", f"{s['exact']:.3f}",
                      f"{s['first_try_valid']:.3f}", f"{s['mean_attempts']:.2f}", f"{s['p50_ms']:.0f}",
                      f"{s['p95_ms']:.0f}", f"{pf['task']:.2f}", f"{pf['chart_type']:.2f}", f"{pf['ops']:.2f}",
                      f"{pf['columns']:.2f}")
    return table


def markdown_table(summaries: dict[str, dict[str, Any]]) -> str:
    head = ("| mode | n | valid | field acc | exact | first-try valid | mean attempts | p50 ms | p95 ms "
            "| task | chart | ops | columns |")
    lines = [head, "|" + "|".join(["---"] * 13) + "|"]
    for name, s in summaries.items():
        if not s.get("n"):
            continue
        pf = s["per_field"]
        lines.append(f"| {name} | {s['n']} | {s['valid_rate']:.3f} | {s['field_accuracy']:.3f} | {s['exact']:.3f} "
                     f"| {s['first_try_valid']:.3f} | {s['mean_attempts']:.2f} | {s['p50_ms']:.0f} "
                     f"| {s['p95_ms']:.0f} | {pf['task']:.2f} | {pf['chart_type']:.2f} | {pf['ops']:.2f} "
                     f"| {pf['columns']:.2f} |")
    return "\n".join(lines)


def check_targets(summaries: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, bool | None]]:
    """(target, wanted, got, passed) for the full pipeline; passed is None when it cannot be judged."""
    full = summaries.get("full")
    if not full or not full.get("n"):
        return []
    out: list[tuple[str, str, str, bool | None]] = []
    for key, want in TARGETS.items():
        out.append((key, f">= {want:.2f}", f"{full[key]:.3f}", full[key] >= want))
    base = summaries.get("baseline")
    if base and base.get("n"):
        gain = full["field_accuracy"] - base["field_accuracy"]
        out.append(("field accuracy gain over baseline", f">= +{TARGET_GAIN:.2f}", f"{gain:+.3f}", gain >= TARGET_GAIN))
    else:
        out.append(("field accuracy gain over baseline", f">= +{TARGET_GAIN:.2f}", "baseline not run", None))
    return out


def write_chart(path: Path, summaries: dict[str, dict[str, Any]]) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed in the venv: no PNG written"
    names = [n for n, s in summaries.items() if s.get("n")]
    metrics = [("valid_rate", "valid"), ("field_accuracy", "field accuracy"), ("exact", "exact"),
               ("first_try_valid", "first-try valid")]
    x = np.arange(len(names))
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names)), 4.5))
    for i, (key, label) in enumerate(metrics):
        ax.bar(x + (i - (len(metrics) - 1) / 2) * width, [summaries[n][key] for n in names], width, label=label)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.axhline(TARGETS["field_accuracy"], color="grey", linestyle=":", linewidth=1)
    ax.set_title("data_ops quality per mode (Gemma 3 270M)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"chart written to {path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma list of: {', '.join(MODES)}")
    parser.add_argument("--limit", type=int, default=None, help="only the first N dev items")
    parser.add_argument("--dev", type=Path, default=DEFAULT_DEV, help="the dev set (JSONL)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON (and PNG) go")
    parser.add_argument("--check", action="store_true", help="exit status 1 when a full-pipeline target is missed")
    args = parser.parse_args(argv)

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    items = load_dev(args.dev)[: args.limit] if args.limit else load_dev(args.dev)
    git = git_info()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"quality-{stamp}.json"
    png_path = args.out / f"quality-{stamp}.png"

    dirty = f" (+{len(git['dirty'])} uncommitted change(s) in the package/KB/prompts)" if git["dirty"] else ""
    console.print(f"dev set {args.dev} ({len(items)} items), modes {', '.join(modes)}, git {git['commit']}{dirty}")
    tmp = tempfile.TemporaryDirectory(prefix="rag-mw-quality-")
    settings = load_settings(data_dir=Path(tmp.name) / "data", knowledge_base=ROOT / "knowledge_base",
                             prompts_dir=ROOT / "prompts")
    report: dict[str, Any] = {
        "started_at": stamp, "git_commit": git["commit"], "git_dirty": git["dirty"], "dev": str(args.dev),
        "dev_sha256": hashlib.sha256(args.dev.read_bytes()).hexdigest()[:16], "n_items": len(items),
        "limit": args.limit, "modes": {}, "summaries": {},
        "settings": {"backend": settings.llm.backend, "model": settings.llm.model, "num_ctx": settings.llm.num_ctx,
                     "embedding": settings.embedding.model},
    }
    summaries: dict[str, dict[str, Any]] = {m: {"n": 0} for m in modes}

    with Middleware(settings) as mw:
        dom = mw.domains.get(DOMAIN)
        model = dom.validator.model
        report["curated_examples"] = len(dom.examples)
        report["curated_negatives"] = len(dom.negatives)
        report["domain_cot_enabled"] = dom.spec.cot.enabled
        for item in items:
            score(model, item["expected"], item["expected"], True)  # fails fast on a malformed dev item
        with console.status("loading the models (warm-up call, not timed)"):
            mw.ask(WARMUP, domain=DOMAIN, learn=False, switches=MODES["baseline"].switches, max_attempts=1,
                   raise_on_invalid=False)

        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        overall = progress.add_task("all modes", total=len(items) * len(modes))
        with Live(Group(progress, results_table(summaries)), console=console, refresh_per_second=2,
                  transient=True) as live:
            for name in modes:
                mode = MODES[name]
                task = progress.add_task(name, total=len(items))
                rows: list[dict[str, Any]] = []
                report["modes"][name] = {"description": mode.description, "max_attempts": mode.max_attempts,
                                         "switches": mode.switches.__dict__, "items": rows}
                for item in items:
                    row = run_item(mw, mode, item, model)
                    rows.append(row)
                    marks = "".join("+" if row["fields"][f] else "-" for f in FIELDS)
                    progress.console.print(
                        f"{name:<11} {item['id']:<34} {'valid  ' if row['valid'] else 'INVALID'} fields {marks} "
                        f"attempts {row['attempts']} {row['latency_ms'] / 1000:6.1f}s", highlight=False)
                    summaries[name] = summarize(rows)
                    progress.advance(task)
                    progress.advance(overall)
                    live.update(Group(progress, results_table(summaries)))
                report["summaries"] = summaries
                json_path.write_text(json.dumps(report, indent=1, default=_jsonable), encoding="utf-8")
    tmp.cleanup()

    targets = check_targets(summaries)
    report["targets"] = [{"target": t, "wanted": w, "got": g, "passed": p} for t, w, g, p in targets]
    report["finished_at"] = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    chart_note = write_chart(png_path, summaries)
    report["chart"] = chart_note
    json_path.write_text(json.dumps(report, indent=1, default=_jsonable), encoding="utf-8")

    console.print(results_table(summaries, title=f"data_ops quality (git {git['commit']}, {len(items)} items)"))
    print("\n" + markdown_table(summaries) + "\n", flush=True)
    failed = False
    if targets:
        console.print("Targets for the full pipeline:")
        for target, want, got, passed in targets:
            verdict = "n/a" if passed is None else ("PASS" if passed else "FAIL")
            failed |= passed is False
            console.print(f"  {target:<36} {want:>8}  got {got:>16}  {verdict}", markup=False, highlight=False)
    console.print(f"results written to {json_path}")
    console.print(chart_note)
    return 1 if (args.check and failed) else 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, Counter):
        return dict(value)
    if isinstance(value, set):
        return sorted(value)
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
