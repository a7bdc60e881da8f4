"""`prompts try DRAFT_DIR`: recent conversations replayed with a draft and with the production label through
the replay engine; a draft that breaks answers is reported as regressions, with the HTML report."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from conftest import FakeLLM, run_cli, use_cli_backend

from rag_middleware.llm.base import Completion
from rag_middleware.cli.context import CliState
from rag_middleware.memory.interaction_log import InteractionLog
from rag_middleware.templating.versions import TemplateStore

QUESTIONS = ["Columns: a, b\nsort by a", "Columns: price, qty\nsort by price", "Columns: x, y, z\nsort by z",
             "Columns: name, city\nsort by city"]


def plan(column: str) -> dict:
    return {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
        "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": column, "ascending": True}}}]}


class RepairReadingLLM(FakeLLM):
    """A model that needs the repair prompt: its first answer leaves out the operations, and it fixes the
    answer only when the repair turn tells it what is missing (names the 'operations' field)."""

    def _next(self, request):
        self.requests.append(request.model_copy(deep=True))
        question = next(m["content"] for m in request.messages if m.get("kind") == "request")
        column = re.search(r"sort by (\w+)", question).group(1)
        last = request.messages[-1]
        if last.get("kind") == "repair" and "operations" in last["content"]:
            text = json.dumps(plan(column))
        else:
            text = json.dumps({"task": "sort", "chart_type": "none"})
        return Completion(text=text, done_reason="stop", prompt_tokens=40, completion_tokens=20, model=self.model)


@pytest.fixture
def cli(cli_project, monkeypatch):
    use_cli_backend(monkeypatch, RepairReadingLLM)
    return cli_project


def run(capsys, *argv: str) -> tuple[int, str, str]:
    return run_cli(capsys, "--data-dir", "data", *argv)


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def recorded(cli, capsys) -> list[str]:
    """Production is the shipped prompts; four conversations were answered with it (each after one repair)."""
    code, out, _ = run(capsys, "prompts", "promote", "production", "prompts")
    assert code == 0
    ids = []
    with CliState(overrides={"data_dir": "data"}).middleware() as mw:
        for q in QUESTIONS:
            result = mw.ask(q, domain="data_ops")
            assert result.valid and len(result.attempts) == 2
            ids.append(result.interaction_id)
    return ids


def draft(cli, name: str, repair: str):
    path = cli / "drafts" / name
    shutil.copytree(cli / "prompts", path)
    (path / "repair.j2").write_text(repair)
    return path


def test_a_draft_that_breaks_answers_is_reported_as_regressions(cli, capsys, recorded):
    # the draft's repair turn no longer lists the errors: the model cannot fix its answer any more
    path = draft(cli, "terse", "That is not right. Try again (attempt {{ attempt }} of {{ max_attempts }}).")
    code, out, err = run(capsys, "prompts", "try", "drafts/terse", "--limit", "50", "--out", "try1",
                         "--fail-on-regression")
    assert code == 1, err
    text = flat(out)
    production = TemplateStore(cli / "data").resolve("production")
    assert "4 conversations" in text and f"production {production}" in text
    assert "against production: 4 regressions, 0 improvements, 0 unchanged" in text
    rows = {cells[0]: cells[1:] for line in out.splitlines()
            if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 6}
    assert rows["production"] == [production, "100.0%", "0.0%", "100.0%", "2"]
    assert rows["draft"][1:] == ["0.0%", "0.0%", "0.0%", "3"]
    report = cli / "try1" / "report.html"
    assert "report: try1/report.html" in text
    assert report.read_text().count("<svg") >= 1
    summary = json.loads((cli / "try1" / "summary.json").read_text())
    assert summary["baseline_template_version"] == production and summary["template_version"] != production
    regressions = summary["baseline"]["regressions"]
    assert {r["id"] for r in regressions} == set(recorded)
    assert all(r["template_then"] == production and r["template_now"] == summary["template_version"]
               for r in regressions)
    assert all("operations" in " ".join(r["errors_now"]) for r in regressions)
    # the draft is a stored version, and the trial's records did not join the recent conversations
    assert summary["template_version"] in {v.version for v in TemplateStore(cli / "data").versions()}
    log = InteractionLog(cli / "data" / "rag.db")
    try:
        assert log.count() == len(QUESTIONS)
    finally:
        log.close()
    assert (cli / "try1" / "interactions.db").exists()
    assert path.is_dir()


def test_a_draft_that_keeps_answers_has_no_regressions(cli, capsys, recorded):
    draft(cli, "reworded", "Fix {{ errors | length }} problem(s):\n{% for e in errors %}* {{ e }}\n{% endfor %}"
                           "Answer again with the whole JSON object.")
    code, out, _ = run(capsys, "prompts", "try", "drafts/reworded", "--out", "try2", "--fail-on-regression")
    assert code == 0
    assert "against production: 0 regressions, 0 improvements, 4 unchanged" in flat(out)
    code, out, _ = run(capsys, "prompts", "try", "drafts/reworded", "--out", "try3", "--limit", "2")
    assert "2 conversations" in flat(out)


def test_try_refuses_a_draft_with_lint_errors_and_an_empty_source(cli, capsys):
    draft(cli, "broken", "{{ errors }} {{ attempts }}")
    code, _, err = run(capsys, "prompts", "try", "drafts/broken")
    assert code == 1 and "unknown variable 'attempts'" in err
    draft(cli, "fine", "{{ errors | join('; ') }}")
    code, _, err = run(capsys, "prompts", "try", "drafts/fine")  # no production label, no conversations
    assert code == 2 and "no 'production' label yet" in flat(err) and "nothing to replay" in flat(err)


def test_try_against_a_file(cli, capsys):
    items = cli / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"q{i}", "domain": "data_ops", "expected": plan(c),
                                         "messages": [{"role": "user", "content": q}]}) + "\n"
                             for i, (q, c) in enumerate(zip(QUESTIONS, ["a", "price", "z", "city"], strict=True))))
    draft(cli, "terse", "Try again.")
    code, out, _ = run(capsys, "prompts", "try", "drafts/terse", "--against", "items.jsonl", "--out", "t")
    assert code == 0  # no --fail-on-regression
    assert "against production: 4 regressions" in flat(out)
