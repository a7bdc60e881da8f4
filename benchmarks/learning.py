"""Does the learning loop learn? The A/B-halves lift and the learn-on drift, for any domain set.

1. **Lift.** The set is split in two halves by a hash of each id. Half B is answered twice with the full
   pipeline and the memory on: once over an empty memory, once after half A's expected answers were imported
   as approved (reviewed) memory. lift = field accuracy(B | A reviewed) - field accuracy(B | empty).
2. **Drift.** The whole set is answered in order with learning on and nobody reviewing, once with the default
   ``learn = "reviewed"`` and once with ``learn = "all"`` (the opt-in), and compared with learning off:
   drift = accuracy(learn on) - accuracy(learn off). Unreviewed answers must never drag accuracy down.

With ``--replay FILE`` the lift runs answer FILE's items instead of half B (half A of ``--set`` is still the
reviewed memory), e.g. paraphrases of half A: a reviewed answer to a question *like* the next one.

Every run uses a fresh data dir and the embedded defaults (Gemma 3 270M, MiniLM). Writes
``benchmarks/out/learning-<domain>-<stamp>.json`` (summaries, per field before/after, every row) and a chart
``.png`` beside it, and prints the tables.

Usage::

    python benchmarks/learning.py --domain claims_intake --set benchmarks/data/claims_intake_dev.jsonl
    python benchmarks/learning.py --domain data_ops --set benchmarks/data/data_ops_dev.jsonl --skip-drift
    python benchmarks/learning.py --domain claims_intake --set benchmarks/data/claims_intake_dev.jsonl \
        --replay benchmarks/data/claims_intake_para.jsonl --skip-drift

Targets (issue 13): lift >= +0.10 on a data-only domain (data_ops: >= +0.03, never lower); half B after review
>= 0.92 on a data-only domain; drift >= 0.00.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rag_middleware import Middleware, load_settings  # noqa: E402
from rag_middleware.analytics.evaluation import MODES, load_set, question_of, run_item, summarize  # noqa: E402
from rag_middleware.records import MemoryRecord  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 160)
TENANT = "bench"


def halves(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    a, b = [], []
    for item in items:
        (a if int(hashlib.sha256(item["id"].encode()).hexdigest(), 16) % 2 == 0 else b).append(item)
    return a, b


def lift_items(items: list[dict[str, Any]], replay: list[dict[str, Any]] | None = None, *, both: bool = False
               ) -> tuple[str, list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]]:
    """(name, folds) of the lift runs, each fold (reviewed, answered): half A is the reviewed memory and half B
    is answered, or the replay items when given (their ids must not be in half A: a replayed item is never its
    own memory). ``both``: a second fold answers half A with half B reviewed, so every item is scored once."""
    half_a, half_b = halves(items)
    if replay is None:
        return ("A+B", [(half_a, half_b), (half_b, half_a)]) if both else ("B", [(half_a, half_b)])
    reviewed_ids = {i["id"] for i in half_a}
    clash = sorted(i["id"] for i in replay if i["id"] in reviewed_ids)
    if clash:
        raise SystemExit(f"replay items share ids with half A: {', '.join(clash[:5])}")
    return "paraphrases", [(half_a, replay)]


def middleware(tmp: Path, *, learn: str) -> Middleware:
    # every request waits for the domain to finish learning from the reviewed answers (request/taught.py):
    # the benchmark measures what review teaches, not how fast the background build is
    return Middleware(load_settings(None, data_dir=tmp, learn=learn, selection={"teach_wait": 600.0}))


def import_reviewed(mw: Middleware, items: list[dict[str, Any]]) -> None:
    """Half A's expected answers as approved memory, as `memory import` would store them."""
    questions = [question_of(i) for i in items]
    vectors = mw.embedder.encode(questions)
    records = [MemoryRecord(id=f"reviewed-{i['id']}", tenant=TENANT, domain=i["domain"], kind="interaction",
                            status="approved", source="import", question=q,
                            answer=json.dumps(i["expected"], ensure_ascii=False, separators=(", ", ": ")))
               for i, q in zip(items, questions, strict=True)]
    mw.store.upsert(records, vectors)


def closeness(mw: Middleware, reviewed: list[dict[str, Any]], answered: list[dict[str, Any]]) -> dict[str, Any]:
    """Each answered question's best cosine to a reviewed question, and how many reach near-identical."""
    a = mw.embedder.encode([question_of(i) for i in reviewed])
    b = mw.embedder.encode([question_of(i) for i in answered])
    best = (b @ a.T).max(axis=1)
    near = mw.settings.selection.near_identical
    return {"near_identical": near, "reaching": int((best >= near).sum()), "min": round(float(best.min()), 3),
            "median": round(float(sorted(best)[len(best) // 2]), 3),
            "best_cosine": {i["id"]: round(float(c), 3) for i, c in zip(answered, best, strict=True)}}


def pool_closeness(close: dict[str, Any], found: dict[str, Any]) -> None:
    """Add one fold's closeness to ``close`` (the pooled figures of every fold so far)."""
    best = sorted({**close.get("best_cosine", {}), **found["best_cosine"]}.values())
    close.update(near_identical=found["near_identical"], best_cosine={**close.get("best_cosine", {}),
                                                                      **found["best_cosine"]},
                 reaching=sum(c >= found["near_identical"] for c in best), min=best[0], median=best[len(best) // 2])


def run(label: str, items: list[dict[str, Any]], *, learn: str, mode: str, progress: Progress,
        prepare: Any = None) -> list[dict[str, Any]]:
    task = progress.add_task(label, total=len(items))
    with tempfile.TemporaryDirectory(prefix="rag-mw-learning-") as tmp, middleware(Path(tmp), learn=learn) as mw:
        if prepare is not None:
            prepare(mw)
        rows = []
        for item in items:
            rows.append(run_item(mw, item, MODES[mode], learn=learn != "off", tenant=TENANT))
            progress.advance(task)
    return rows


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def chart(path: Path, summaries: dict[str, dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, s in summaries.items() if s.get("n")]
    fields = sorted({f for n in names for f in summaries[n]["per_field"]})
    groups = ["field acc", "exact", *fields]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(groups) + 2), 4.0))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        s = summaries[name]
        ax.bar([g + i * width for g in range(len(groups))],
               [s["field_accuracy"], s["exact"], *[s["per_field"].get(f, 0) for f in fields]], width, label=name)
    ax.set_xticks([g + width * (len(names) - 1) / 2 for g in range(len(groups))], groups, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--set", required=True, type=Path, nargs="+", help="one or more sets, pooled")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--skip-lift", action="store_true")
    parser.add_argument("--skip-drift", action="store_true")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--replay", type=Path, default=None,
                        help="answer this set's items in the lift runs instead of half B (e.g. half A paraphrased)")
    parser.add_argument("--both-halves", action="store_true",
                        help="two folds: B with A reviewed and A with B reviewed, so the lift covers every item")
    args = parser.parse_args()

    items = [i for s in args.set for i in load_set(s, domain=args.domain) if i["domain"] == args.domain]
    items = items[: args.limit or None]
    replay = None
    if args.replay is not None:
        replay = [i for i in load_set(args.replay, domain=args.domain) if i["domain"] == args.domain]
    who, folds = lift_items(items, replay, both=args.both_halves)
    half_a, answered = folds[0][0], [i for _, fold in folds for i in fold]
    empty_run = f"{who}, empty memory"
    reviewed_run = f"{who}, other half reviewed" if args.both_halves else f"{who}, A reviewed"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows: dict[str, list[dict[str, Any]]] = {}
    close: dict[str, Any] = {}

    def prepare(reviewed: list[dict[str, Any]], fold: list[dict[str, Any]]) -> Any:
        def imported(mw: Middleware) -> None:
            import_reviewed(mw, reviewed)
            pool_closeness(close, closeness(mw, reviewed, fold))
        return imported

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        if not args.skip_lift:
            rows[empty_run] = run(empty_run, answered, learn="off", mode="full-memory", progress=progress)
            rows[reviewed_run] = [row for reviewed, fold in folds
                                  for row in run(reviewed_run, fold, learn="off", mode="full-memory",
                                                 progress=progress, prepare=prepare(reviewed, fold))]
        if not args.skip_drift:
            rows["all, learn off"] = run("all, learn off", items, learn="off", mode="full-memory", progress=progress)
            rows["all, learn reviewed"] = run("all, learn reviewed", items, learn="reviewed", mode="full-memory",
                                              progress=progress)
            rows["all, learn all"] = run("all, learn all", items, learn="all", mode="full-memory", progress=progress)
    summaries = {name: summarize(r) for name, r in rows.items()}
    result: dict[str, Any] = {"domain": args.domain, "set": [str(s) for s in args.set], "date": stamp,
                              "commit": commit(), "folds": len(folds), "half_a": len(half_a),
                              "half_b": len(items) - len(half_a), "summaries": summaries}
    if replay is not None:
        result["replay"] = {"set": str(args.replay), "n": len(replay)}
    if close:
        result["closeness"] = close
    if reviewed_run in summaries:
        reviewed, empty = summaries[reviewed_run], summaries[empty_run]
        result["lift"] = round(reviewed["field_accuracy"] - empty["field_accuracy"], 4)
    if "all, learn off" in summaries:
        off = summaries["all, learn off"]["field_accuracy"]
        result["drift_reviewed"] = round(summaries["all, learn reviewed"]["field_accuracy"] - off, 4)
        result["drift_all"] = round(summaries["all, learn all"]["field_accuracy"] - off, 4)

    replayed = f" · replay {args.replay.name}" if args.replay is not None else ""
    names = "+".join(s.name for s in args.set)
    table = Table(title=f"learning · {args.domain} · {names}{replayed} · {stamp} · {result['commit']}")
    fields = sorted({f for s in summaries.values() for f in s.get("per_field", {})})
    for col in ("run", "n", "valid", "field acc", "exact", *fields):
        table.add_column(col, justify="left" if col == "run" else "right")
    for name, s in summaries.items():
        table.add_row(name, str(s["n"]), f"{s['valid_rate']:.3f}", f"{s['field_accuracy']:.3f}", f"{s['exact']:.3f}",
                      *[f"{s['per_field'].get(f, 0):.2f}" for f in fields])
    console.print(table)
    if close:
        console.print(f"{who} vs A reviewed: best cosine median {close['median']:.3f}, min {close['min']:.3f}; "
                      f"{close['reaching']}/{len(answered)} reach near-identical ({close['near_identical']})")
    for key in ("lift", "drift_reviewed", "drift_all"):
        if key in result:
            console.print(f"{key}{' (paraphrases)' if key == 'lift' and replay is not None else ''}: "
                          f"{result[key]:+.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"learning-{args.domain}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    base.with_suffix(".json").write_text(json.dumps({**result, "rows": rows}, indent=1, default=str), encoding="utf-8")
    chart(base.with_suffix(".png"), summaries, f"learning loop · {args.domain}{replayed}")
    console.print(f"wrote {base.with_suffix('.json')} and {base.with_suffix('.png')}")


if __name__ == "__main__":
    main()
