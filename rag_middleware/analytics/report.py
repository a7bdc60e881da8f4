"""Replay reports: report.md for reading and one self-contained report.html (inline SVG charts, no scripts,
nothing fetched) for looking at. Both end with the failing items (see :mod:`rag_middleware.analytics.report_items`)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from .report_items import failing_items_html, failing_items_md, items_from_replay

__all__ = ["bar_chart", "histogram", "write_reports"]

_COLORS = ("#4C78A8", "#F58518", "#54A24B", "#E45756")


def bar_chart(title: str, groups: list[str], series: dict[str, list[float]], *, max_value: float = 1.0,
              percent: bool = True) -> str:
    """A grouped bar chart as inline SVG. ``series`` maps a legend label to one value per group."""
    width, height, left, bottom, top = 640, 260, 48, 40, 30
    plot_w, plot_h = width - left - 16, height - top - bottom
    n_series = max(1, len(series))
    group_w = plot_w / max(1, len(groups))
    bar_w = max(4.0, group_w * 0.7 / n_series)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>',
             f'<text x="{left}" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>']
    for tick in range(0, 5):
        value = max_value * tick / 4
        y = top + plot_h - plot_h * tick / 4
        label = f"{value:.0%}" if percent else f"{value:g}"
        parts.append(f'<line x1="{left}" x2="{width - 16}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{label}</text>')
    for gi, group in enumerate(groups):
        x0 = left + gi * group_w + group_w * 0.15
        for si, (name, values) in enumerate(series.items()):
            value = values[gi] if gi < len(values) and values[gi] is not None else 0.0
            h = plot_h * min(1.0, value / max_value) if max_value else 0
            x = x0 + si * bar_w
            text = f"{value:.0%}" if percent else f"{value:g}"
            parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                         f'fill="{_COLORS[si % len(_COLORS)]}"><title>{html.escape(name)} {html.escape(group)}: '
                         f'{text}</title></rect>')
        parts.append(f'<text x="{x0 + n_series * bar_w / 2:.1f}" y="{height - bottom + 16}" font-size="11" '
                     f'text-anchor="middle">{html.escape(group)}</text>')
    for si, name in enumerate(series):
        parts.append(f'<rect x="{left + si * 130}" y="{height - 14}" width="10" height="10" '
                     f'fill="{_COLORS[si % len(_COLORS)]}"/><text x="{left + si * 130 + 14}" y="{height - 5}" '
                     f'font-size="11">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(title: str, values: list[float], *, bins: int = 12, unit: str = "") -> str:
    if not values:
        return bar_chart(title, ["(none)"], {"count": [0]}, max_value=1, percent=False)
    lo, hi = min(values), max(values)
    step = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / step))] += 1
    labels = [f"{lo + i * step:.0f}{unit}" for i in range(bins)]
    return bar_chart(title, labels, {"items": counts}, max_value=max(counts), percent=False)


def _md_table(headers: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(out)


def _headline(summary: dict[str, Any]) -> list[list[Any]]:
    rows = [["now", summary["items"], f"{summary['valid_rate']:.1%}", f"{summary['first_try_valid_rate']:.1%}",
             "-" if summary["match_rate"] is None else f"{summary['match_rate']:.1%}", summary["mean_attempts"],
             summary["latency_ms"]["p50"], summary["latency_ms"]["p95"]]]
    base = summary.get("baseline")
    if base:
        rows.append(["baseline", base["items"], f"{base['valid_rate']:.1%}", f"{base['first_try_valid_rate']:.1%}",
                     f"{base['match_rate']:.1%}",
                     "-", "-", "-"])
    return rows


def write_reports(out: Path, summary: dict[str, Any], rows: list[dict[str, Any]], *,
                  baseline: list[dict[str, Any]] | None = None) -> tuple[Path, Path]:
    """Write ``out/report.md`` and ``out/report.html``; ``baseline`` (the baseline run's rows) marks regressions."""
    base = summary.get("baseline")
    items = items_from_replay(rows, baseline=baseline)
    heads = ["run", "items", "valid", "first-try valid", "match", "mean attempts", "p50 ms", "p95 ms"]
    md = [f"# Replay report {summary.get('label', '')}".rstrip(), "", _md_table(heads, _headline(summary)), ""]
    if summary["field_accuracy"]:
        md += ["## Field accuracy", "", _md_table(["field", "accuracy"], [[k, f"{v:.1%}"] for k, v in
                                                                          summary["field_accuracy"].items()]), ""]
    md += ["## Attempts", "", _md_table(["attempts", "items"], [[k, v] for k, v in
                                                                summary["attempts_histogram"].items()]), ""]
    if summary["skipped"]:
        md += ["## Skipped lines", ""] + [f"- {s}" for s in summary["skipped"]] + [""]
    if base:
        c = base["counts"]
        md += [f"## Against the baseline: {c['regressions']} regressions, {c['improvements']} improvements, "
               f"{c['unchanged']} unchanged", ""]
        if base["regressions"]:
            md += [_md_table(["id", "field diff", "examples then", "examples now", "template then → now"], [
                [r["id"], "; ".join(f"{d['path']}: {json.dumps(d['expected'])} → {json.dumps(d['actual'])}"
                                    for d in r["diff"][:5]) or "; ".join(r["errors_now"][:2]),
                 ", ".join(r["selected_then"][:6]), ", ".join(r["selected_now"][:6]),
                 f"{r['template_then']} → {r['template_now']}"] for r in base["regressions"]]), ""]
    md += [failing_items_md(items), ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md), encoding="utf-8")

    groups = ["valid", "first-try valid", "match"]
    series = {"now": [summary["valid_rate"], summary["first_try_valid_rate"], summary["match_rate"] or 0.0]}
    if base:
        series["baseline"] = [base["valid_rate"], base["first_try_valid_rate"], base["match_rate"]]
    charts = [bar_chart("Validity and match" + (" against the baseline" if base else ""), groups, series)]
    if summary["field_accuracy"]:
        charts.append(bar_chart("Field accuracy", list(summary["field_accuracy"]),
                                {"accuracy": list(summary["field_accuracy"].values())}))
    charts.append(histogram("Latency (ms)", [r["latency_ms"] for r in rows if r.get("latency_ms")]))
    hist = summary["attempts_histogram"]
    charts.append(bar_chart("Attempts per item", list(hist), {"items": list(hist.values())},
                            max_value=max(hist.values() or [1]), percent=False))

    def table(headers: list[str], body: list[list[Any]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in body)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"

    regress = ""
    if base:
        regress = f"<h2>Regressions ({base['counts']['regressions']})</h2>" + table(
            ["id", "field diff", "examples then", "examples now", "template then → now"],
            [[r["id"], "; ".join(f"{d['path']}: {json.dumps(d['expected'])} → {json.dumps(d['actual'])}"
                                 for d in r["diff"][:5]) or "; ".join(r["errors_now"][:2]),
              ", ".join(r["selected_then"][:6]), ", ".join(r["selected_now"][:6]),
              f"{r['template_then']} → {r['template_now']}"] for r in base["regressions"]])
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Replay report</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:12px 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left;vertical-align:top}}
.charts svg{{margin:8px 16px 8px 0;border:1px solid #eee}}</style></head><body>
<h1>Replay report {html.escape(summary.get('label', ''))}</h1>
{table(heads, _headline(summary))}
<div class="charts">{''.join(charts)}</div>
{regress}
{failing_items_html(items)}
</body></html>"""
    html_path = out / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return md_path, html_path
