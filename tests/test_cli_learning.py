"""The learning-loop commands in process: feedback, export finetune, stats, ab report."""

from __future__ import annotations

import json
import re

import pytest
from conftest import FakeLLM, run_cli as run, use_cli_backend

from rag_middleware.learning.feedback import FeedbackLog

QUESTION = "Columns: a, b\nsort by a"


def plan(column: str = "a", ascending: bool = True) -> dict:
    return {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
        "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": column, "ascending": ascending}}}]}


@pytest.fixture
def env(cli_project, monkeypatch):
    llm = FakeLLM(default=json.dumps(plan()))
    use_cli_backend(monkeypatch, lambda: llm)
    return cli_project


def asked(capsys, question: str = QUESTION) -> str:
    code, out, _ = run(capsys, "ask", question, "--domain", "data_ops", "--json")
    assert code == 0, out
    return json.loads(out)["interaction_id"]


def test_feedback_command(env, capsys):
    iid = asked(capsys)
    code, out, _ = run(capsys, "feedback", iid, "--approve", "--score", "5", "--reviewer", "ana")
    assert code == 0 and f"{iid}: approved by ana" in out and "interaction/approved" in out
    code, out, _ = run(capsys, "feedback", iid, "--reject", "ascending was wrong", "--reviewer", "ana", "--json")
    body = json.loads(out)
    assert code == 0 and body["replaced"] is True and body["memory"] == {"kind": "negative", "status": "rejected",
                                                                         "source": "rejected"}
    edit = env / "fixed.json"
    edit.write_text(json.dumps(plan(ascending=False)))
    code, out, _ = run(capsys, "feedback", iid, "--edit", str(edit), "--reviewer", "bo")
    assert code == 0 and "edited by bo" in out and "(edited)" in out
    log = FeedbackLog(env / ".rag-mw" / "rag.db")
    assert {f.reviewer: f.action for f in log.of(iid)} == {"ana": "reject", "bo": "edit"}
    log.close()


@pytest.mark.parametrize("args,message,code", [
    (["nope", "--approve"], "error: no interaction 'nope'", 2),
    (["ID", "--approve", "--reject", "x"], "give exactly one of --approve", 2),
    (["ID"], "give exactly one of --approve", 2),
    (["ID", "--edit", "missing.json"], "cannot read --edit file missing.json", 2),
    (["ID", "--reject", "  "], "needs a reason", 2),
])
def test_feedback_command_errors(env, capsys, args, message, code):
    iid = asked(capsys)
    args = [iid if a == "ID" else a for a in args]
    got, out, err = run(capsys, "feedback", *args)
    assert got == code and message in err, (out, err)
    assert len([line for line in err.splitlines() if line.strip()]) == 1


def test_invalid_edit_is_refused_on_the_command_line(env, capsys):
    iid = asked(capsys)
    bad = env / "bad.json"
    bad.write_text(json.dumps(plan(column="zzz")))
    code, _, err = run(capsys, "feedback", iid, "--edit", str(bad))
    assert code == 2 and "fails the data_ops output model" in err and "unknown column zzz" in err


def test_score_out_of_range_is_a_usage_error(env, capsys):
    code, _, err = run(capsys, "feedback", "x", "--approve", "--score", "9")
    assert code == 2 and "--score" in err


def test_export_command_masks_pii_and_reports(env, capsys):
    iid = asked(capsys, "Columns: a, b\nsort by a for jane@example.org, call +1 415 555 2671")
    other = asked(capsys, "Columns: a, b\nsort by b")
    run(capsys, "feedback", iid, "--approve", "--score", "5")
    run(capsys, "feedback", other, "--approve", "--score", "3")
    code, out, err = run(capsys, "export", "finetune", "--out", "ft", "--format", "prompt-completion",
                         "--holdout", "0", "--min-score", "4")
    assert code == 0, err
    assert re.search(r"quality score: \d+/100", out) and re.search(r"PII masked: email \d, phone \d", out), out
    lines = (env / "ft" / "train.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["metadata"]["interaction_id"] == iid
    for f in (env / "ft").iterdir():
        text = f.read_text()
        assert "jane@example.org" not in text and "555 2671" not in text
    code, _, err = run(capsys, "export", "finetune", "--out", "ft2", "--format", "csv")
    assert code == 2 and "--format must be chat or prompt-completion" in err


def test_stats_command(env, capsys):
    iid = asked(capsys)
    asked(capsys, "Columns: a, b\nsort by b")
    run(capsys, "feedback", iid, "--approve")
    code, out, _ = run(capsys, "stats", "--json", "--by", "domain")
    body = json.loads(out)
    assert code == 0 and body["overall"]["requests"] == 2 and body["overall"]["approval_rate"] == 1.0
    assert [g["key"] for g in body["groups"]] == ["data_ops"]
    code, out, _ = run(capsys, "stats", "--by", "model", "--plot", "trend.html")
    assert code == 0 and "(all)" in out and "trend plot written to trend.html" in out
    assert "fake-model" in json.loads(run(capsys, "stats", "--by", "model", "--json")[1])["groups"][0]["key"]
    assert "<svg" in (env / "trend.html").read_text()
    code, out, _ = run(capsys, "stats", "--since", "2999-01-01", "--json")
    assert json.loads(out)["overall"]["requests"] == 0
    code, _, err = run(capsys, "stats", "--since", "last week")
    assert code == 2 and "--since must be an ISO date" in err
    code, _, err = run(capsys, "stats", "--by", "colour")
    assert code == 2 and "--by must be one of" in err
    code, _, err = run(capsys, "stats", "--domain", "nope")
    assert code == 2 and "unknown domain 'nope'" in err
    code, out, _ = run(capsys, "stats", "--domain", "assistant", "--json")
    assert code == 0 and json.loads(out)["overall"]["requests"] == 0


def test_ab_report_command(env, capsys):
    spec = env / "knowledge_base" / "data_ops" / "domain.yaml"
    spec.write_text(spec.read_text() + "variants:\n  - name: one\n  - name: two\n", encoding="utf-8")
    for _ in range(3):
        asked(capsys)
    code, out, _ = run(capsys, "ab", "report", "--domain", "data_ops")
    assert code == 0 and "A/B report: data_ops" in out and "one" in out and "two" in out
    assert "not enough data" in out
    code, out, _ = run(capsys, "ab", "report", "--domain", "data_ops", "--json")
    body = json.loads(out)
    assert sum(v["requests"] for v in body["variants"]) == 3 and body["enough_data"] is False
    code, _, err = run(capsys, "ab", "report", "--domain", "nope")
    assert code == 2 and "unknown domain 'nope'" in err
