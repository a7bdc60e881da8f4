"""What ``domains eval`` writes: one table per run (modes side by side), a confusion table per enum field,
per-field bars as a chart, the failing items (report.md, and report.html filterable by field and status with
no script), and every row as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .evaluation import confusion, summarize
from .report_items import ItemResult, explain, failing_items_html, failing_items_md

__all__ = ["markdown_report", "write_chart", "write_eval"]


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def summary_markdown(summaries: dict[str, dict[str, Any]]) -> str:
    fields = sorted({f for s in summaries.values() for f in s.get("per_field", {})})
    head = ["mode", "n", "valid", "field acc", "exact", "wrong but valid", "attempts", "p50 ms", *fields]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in summaries.items():
        if not s.get("n"):
            continue
        row = [name, s["n"], s["valid_rate"], s["field_accuracy"], s["exact"], s["wrong_but_valid"],
               s["mean_attempts"], round(s["p50_ms"]), *[s["per_field"].get(f, 0.0) for f in fields]]
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def confusion_markdown(rows: list[dict[str, Any]], field: str) -> str:
    table = confusion(rows, field)
    answered = sorted({a for c in table.values() for a in c})
    lines = [f"**{field}** (rows: expected, columns: answered)", "",
             "| expected | " + " | ".join(answered) + " |", "|" + "---|" * (len(answered) + 1)]
    for want in sorted(table):
        lines.append(f"| {want} | " + " | ".join(str(table[want].get(a, "")) for a in answered) + " |")
    return "\n".join(lines)


def markdown_report(*, domain: str, set_name: str, stamp: str, summaries: dict[str, dict[str, Any]],
                    rows: dict[str, list[dict[str, Any]]], enums: dict[str, list[Any]]) -> str:
    parts = [f"# {domain} on {set_name}", "", stamp, "", summary_markdown(summaries), ""]
    last = list(rows)[-1]
    for field in enums:
        if any(field in r["fields"] for r in rows[last]):
            parts += [confusion_markdown(rows[last], field), ""]
    buckets = summaries.get(last, {}).get("by_confidence") or []
    if buckets:
        parts += [f"## Accuracy by confidence ({last})", "", "| bucket | n | confidence | field acc | exact |",
                  "|---|---|---|---|---|"]
        parts += [f"| {b['bucket']} | {b['n']} | {b['min']:.2f}-{b['max']:.2f} | {b['field_accuracy']:.3f} | "
                  f"{b['exact']:.3f} |" for b in buckets]
        parts.append("")
    parts.append(failing_items_md(eval_items(rows[last]), title=f"Failing items ({last})"))
    return "\n".join(parts) + "\n"


def eval_items(rows: list[dict[str, Any]]) -> list[ItemResult]:
    """Eval rows as the report's item results (status, side-by-side fields, selected examples, why)."""
    out = []
    for r in rows:
        status = "error" if r.get("exception") else "invalid" if not r["valid"] else "pass" if r["exact"] else "fail"
        out.append(ItemResult(id=str(r["id"]), request=r["question"], expected=r["expected"], actual=r["output"],
                              fields=r["fields"], selected=[s["id"] for s in r.get("selected") or []],
                              status=status, errors=r.get("errors") or ([r["exception"]] if r.get("exception") else []),
                              raw_answer=r.get("raw_output") or "", why=explain(r)))
    return out


def write_chart(path: Path, summaries: dict[str, dict[str, Any]], *, title: str) -> Path | None:
    """Per-field accuracy bars, one colour per mode, plus valid/field acc/exact. None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    fields = sorted({f for s in summaries.values() for f in s.get("per_field", {})})
    groups = ["valid", "field acc", "exact", *fields]
    modes = [m for m, s in summaries.items() if s.get("n")]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 2), 4.0))
    width = 0.8 / max(1, len(modes))
    for i, mode in enumerate(modes):
        s = summaries[mode]
        values = [s["valid_rate"], s["field_accuracy"], s["exact"], *[s["per_field"].get(f, 0.0) for f in fields]]
        ax.bar([g + i * width for g in range(len(groups))], values, width, label=mode)
    ax.set_xticks([g + width * (len(modes) - 1) / 2 for g in range(len(groups))], groups, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_eval(out: Path, *, domain: str, set_name: str, stamp: str, rows: dict[str, list[dict[str, Any]]],
               enums: dict[str, list[Any]], meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """results.json, report.md and chart.png under ``out``; returns the summary per mode."""
    out.mkdir(parents=True, exist_ok=True)
    summaries = {mode: summarize(r) for mode, r in rows.items()}
    (out / "results.json").write_text(json.dumps({"meta": meta, "summaries": summaries, "rows": rows}, indent=1,
                                                 default=str), encoding="utf-8")
    (out / "report.md").write_text(markdown_report(domain=domain, set_name=set_name, stamp=stamp,
                                                   summaries=summaries, rows=rows, enums=enums), encoding="utf-8")
    write_chart(out / "chart.png", summaries, title=f"{domain} · {set_name}")
    last = list(rows)[-1]
    page = failing_items_html(eval_items(rows[last]), title=f"{domain} · {set_name} · failing items ({last})")
    (out / "report.html").write_text(f"<!doctype html><meta charset='utf-8'><title>{domain} eval</title>{page}",
                                     encoding="utf-8")
    return summaries
