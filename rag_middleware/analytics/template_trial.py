"""Try a draft template set before it ships: the same conversations through the replay engine twice, once with
the baseline version (the production label) and once with the draft, then the draft's summary against the
baseline's rows (regressions, improvements, unchanged) and the reports.

Both runs share one Middleware (one embedder, one memory, read-only), so the only difference between them is
the template snapshot each run is pinned to.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..request.pipeline import Middleware
from .replay import ReplayItem, ReplayOptions, run_replay, summarize
from .report import write_reports
from ..templating.engine import TemplateSnapshot

__all__ = ["TrialResult", "run_trial"]


class TrialResult:
    def __init__(self, summary: dict[str, Any], baseline_summary: dict[str, Any], report: Path) -> None:
        self.summary = summary
        self.baseline_summary = baseline_summary
        self.report = report

    @property
    def regressions(self) -> list[dict[str, Any]]:
        return self.summary["baseline"]["regressions"]


def run_trial(mw: Middleware, items: list[ReplayItem], *, draft: TemplateSnapshot, baseline: TemplateSnapshot,
              out: Path, opts: ReplayOptions, skipped: list[str] | None = None, baseline_label: str = "baseline",
              on_item: Callable[[str, dict[str, Any], bool], None] | None = None) -> TrialResult:
    """Replay ``items`` with ``baseline`` into ``out/baseline`` and with ``draft`` into ``out/draft`` (each
    resumable), and write ``out/summary.json`` and the reports comparing the draft with the baseline."""
    skipped = skipped or []
    rows: dict[str, list[dict[str, Any]]] = {}
    for run, snapshot in (("baseline", baseline), ("draft", draft)):
        step = (lambda row, resumed, run=run: on_item(run, row, resumed)) if on_item else None
        with mw.templates.pinned(snapshot):
            rows[run] = run_replay(mw, items, out / run, opts, on_item=step)
    baseline_summary = summarize(rows["baseline"], skipped=skipped, label=f"{baseline_label} {baseline.version}")
    baseline_summary["template_version"] = baseline.version
    (out / "baseline" / "summary.json").write_text(json.dumps(baseline_summary, indent=2, default=str),
                                                   encoding="utf-8")
    summary = summarize(rows["draft"], skipped=skipped, baseline=rows["baseline"],
                        label=f"draft {draft.version} against {baseline_label} {baseline.version}")
    summary.update(template_version=draft.version, baseline_template_version=baseline.version,
                   baseline_label=baseline_label, draft_source=draft.source)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    _, html_path = write_reports(out, summary, rows["draft"])
    return TrialResult(summary, baseline_summary, html_path)
