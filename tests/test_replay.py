"""Replay: a file and the store through today's prompts, the as_of guard, baselines, resume, reports."""

from __future__ import annotations

import json
import os

import pytest
from conftest import FakeLLM, run_cli as run, use_cli_backend

from rag_middleware.llm.base import Completion, GenerateRequest
from rag_middleware.request.pipeline import Middleware
from rag_middleware.analytics.replay import ReplayOptions, diff_values, load_items, read_results, run_replay, summarize
from rag_middleware.llm.tokens import ApproxTokenCounter

SORT_A = {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "a", "ascending": True}}}]}
DUPS = {"task": "clean", "chart_type": "none", "operations": [{"type": "remove_duplicates", "execution_instructions": {
    "method": "pandas.DataFrame.drop_duplicates", "args": [], "kwargs": {}}}]}


class RuleLLM(FakeLLM):
    """Answers from the request text: a sort plan for 'sort', dedup otherwise. It only answers validly while
    the system prompt says 'one JSON object' (so editing that template plants a regression)."""

    def generate(self, request: GenerateRequest) -> Completion:
        self.requests.append(request.model_copy(deep=True))
        if "one JSON object" not in request.messages[0]["content"]:
            return Completion(text="Sure! Here is a plan.", done_reason="stop")
        last = request.messages[-1]["content"].lower()
        return Completion(text=json.dumps(SORT_A if "sort" in last else DUPS), done_reason="stop",
                          prompt_tokens=50, completion_tokens=20)


def write_items(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


ITEMS = [
    {"id": "a", "domain": "data_ops", "messages": [{"role": "user", "content": "Columns: a, b\nsort by a"}],
     "expected": SORT_A},
    {"id": "b", "domain": "data_ops", "messages": [{"role": "user", "content": "Columns: a, b\nremove duplicates"}],
     "expected": DUPS},
    "{not json",
    {"id": "c", "domain": "nope", "messages": [{"role": "user", "content": "hi"}]},
    {"id": "d", "domain": "data_ops", "messages": [{"role": "user", "content": "Columns: a, b\nsort by a"}],
     "expected": {**SORT_A, "chart_type": "bar"}},
]


@pytest.fixture
def rmw(settings, embedder):
    m = Middleware(settings, backend=RuleLLM(), embedder=embedder, token_counter=ApproxTokenCounter())
    yield m
    m.close()


def test_file_replay_compares_skips_and_reports(rmw, tmp_path):
    items, skipped = load_items(str(write_items(tmp_path / "items.jsonl", ITEMS)), rmw)
    assert [i.id for i in items] == ["a", "b", "c", "d"] and skipped and "line 3" in skipped[0]
    rows = run_replay(rmw, items, tmp_path / "out", ReplayOptions())
    by_id = {r["id"]: r for r in rows}
    assert by_id["a"]["valid"] and by_id["a"]["match"] is True and by_id["a"]["diff"] == []
    assert by_id["c"]["errors"] and "unknown domain 'nope'" in by_id["c"]["errors"][0]
    assert by_id["d"]["match"] is False
    assert by_id["d"]["diff"] == [{"path": "chart_type", "expected": "bar", "actual": "none"}]
    assert by_id["a"]["template_version"] == rmw.templates.version and by_id["a"]["selected"]
    summary = summarize(rows, skipped=skipped)
    assert summary["items"] == 4 and summary["skipped_lines"] == 1 and summary["item_errors"] == 1
    assert summary["match_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert summary["field_accuracy"]["chart_type"] == pytest.approx(2 / 3, abs=1e-3)
    assert rmw.store.count() == 0  # memory is read-only during a replay
    assert by_id["d"]["request"] == ITEMS[4]["messages"] and by_id["d"]["expected"]["chart_type"] == "bar"


def test_reports_list_each_failing_item(rmw, tmp_path):
    from rag_middleware.analytics.report import write_reports

    items, skipped = load_items(str(write_items(tmp_path / "items.jsonl", ITEMS)), rmw)
    rows = run_replay(rmw, items, tmp_path / "out", ReplayOptions())
    md_path, html_path = write_reports(tmp_path / "out", summarize(rows, skipped=skipped), rows)
    md, page = md_path.read_text(), html_path.read_text()
    assert "## Failing items (2)" in md  # c (unknown domain) and d (wrong chart type); a and b passed
    assert "| chart_type | `bar` | `none` |" in md and "[chart_type (1)](#field-chart-type)" in md
    assert "[error (1)](#status-error)" in md and "unknown domain 'nope'" in md
    d = page[page.index('id="fi-item-d"'):]
    d = d[:d.index("</details>")]
    assert '<td class="exp"><pre>bar</pre></td><td class="act"><pre>none</pre></td>' in d and "sort by a" in d
    assert ", ".join(by for by in next(r for r in rows if r["id"] == "d")["selected"]) in d
    assert 'id="fi-item-a"' not in page and "<script" not in page


def test_store_replay_keeps_the_as_of_guard(rmw, tmp_path):
    rmw.settings.learn = "all"  # unreviewed answers count as examples
    first = rmw.ask("Columns: a, b\nsort by a", domain="data_ops")  # learn on: enters memory
    second = rmw.ask("Columns: a, b\nsort by a please", domain="data_ops")
    assert first.interaction_id in [s.id for s in second.selected]  # live, the later one sees the earlier
    items, _ = load_items("store:", rmw)
    assert [i.id for i in items] == [first.interaction_id, second.interaction_id]
    rows = {r["id"]: r for r in run_replay(rmw, items, tmp_path / "out", ReplayOptions())}
    replayed_first = rows[first.interaction_id]
    assert first.interaction_id not in replayed_first["selected"]  # never itself
    assert second.interaction_id not in replayed_first["selected"]  # nothing recorded after it
    assert first.interaction_id in rows[second.interaction_id]["selected"]
    assert replayed_first["compared_with"] == "recorded" and replayed_first["match"] is True
    replays = rmw.journal.list(replays=True, limit=10)
    assert {r.replay_of for r in replays} == {None, first.interaction_id, second.interaction_id}
    again, _ = load_items("store:", rmw)  # replays are recorded, but are not conversations to replay
    assert [i.id for i in again] == [first.interaction_id, second.interaction_id]


def test_resume_after_an_interruption(rmw, tmp_path):
    items, _ = load_items(str(write_items(tmp_path / "items.jsonl", [i for i in ITEMS if isinstance(i, dict)])), rmw)
    out = tmp_path / "out"

    def stop_after_two(row, resumed):
        if len(read_results(out)) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_replay(rmw, items, out, ReplayOptions(), on_item=stop_after_two)
    with (out / "results.jsonl").open("a") as fh:
        fh.write('{"id": "torn')  # a line cut short by the interruption
    calls_before = len(rmw.backend.requests)
    rows = run_replay(rmw, items, out, ReplayOptions())
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"]
    assert len(rmw.backend.requests) - calls_before == 1  # only d was left ('c' never calls the model)
    assert len(read_results(out)) == 4


def test_diff_values_names_paths():
    assert diff_values({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}], "c": 1}) == [
        {"path": "a.1.b", "expected": 2, "actual": 3}, {"path": "c", "expected": None, "actual": 1}]


@pytest.fixture
def cli(cli_project, monkeypatch):
    use_cli_backend(monkeypatch, RuleLLM)
    return cli_project


def test_cli_replay_detects_a_regression_planted_in_a_template(cli, capsys):
    items = write_items(cli / "items.jsonl", [i for i in ITEMS if isinstance(i, dict) and i["id"] in "ab"])
    code, out, _ = run(capsys, "--data-dir", "data", "replay", str(items), "--out", "run1")
    assert code == 0 and "2 items" in out and "valid 100.0%" in out
    summary = json.loads((cli / "run1" / "summary.json").read_text())
    assert summary["valid_rate"] == 1.0 and (cli / "run1" / "report.html").read_text().count("<svg") >= 3
    system = cli / "prompts" / "system.j2"
    system.write_text(system.read_text().replace("one JSON object", "an object"))
    code, out, _ = run(capsys, "--data-dir", "data", "replay", str(items), "--out", "run2", "--baseline", "run1",
                       "--fail-on-regression", "--max-attempts", "1")
    assert code == 1 and "2 regressions" in out
    summary = json.loads((cli / "run2" / "summary.json").read_text())
    regressions = summary["baseline"]["regressions"]
    assert {r["id"] for r in regressions} == {"a", "b"}
    assert regressions[0]["template_then"] != regressions[0]["template_now"]
    report = (cli / "run2" / "report.md").read_text()
    assert "2 regressions" in report and regressions[0]["template_now"] in report
    assert "[regression (2)](#status-regression)" in report and "(baseline pass → now invalid)" in report
    assert "Sure! Here is a plan." in report  # what the model said instead of the plan
    page = (cli / "run2" / "report.html").read_text()
    assert page.count('class="item st-regression') == 2


CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
                 if os.path.exists(p)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_html_report_renders_in_headless_chromium(rmw, tmp_path):
    import subprocess

    items, skipped = load_items(str(write_items(tmp_path / "items.jsonl", ITEMS)), rmw)
    out = tmp_path / "out"
    rows = run_replay(rmw, items, out, ReplayOptions())
    from rag_middleware.analytics.report import write_reports

    _, html_path = write_reports(out, summarize(rows, skipped=skipped, baseline=rows), rows)
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600", f"--screenshot={shot}",
         "--dump-dom", html_path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("<svg") >= 3 and "Replay report" in proc.stdout  # the DOM Chromium built
    assert shot.exists() and shot.stat().st_size > 10_000  # a real picture, not a blank page
