"""``rag-middleware ask --dry-run``: retrieval, selection, votes, grammar and prompt as ``ask`` builds them, with no
model call and nothing recorded."""

from __future__ import annotations

import json

import pytest
from conftest import FakeLLM, fake_middleware, project_settings, run_cli as run, use_cli_backend

QUESTION = "Columns: a, b\nsort by a"
GOOD = {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "a", "ascending": True}}}]}


class NoModel(FakeLLM):
    """A backend that fails the test when it is asked to generate anything."""

    def __init__(self, *, flat_prompt: bool = False) -> None:
        super().__init__(flat_prompt=flat_prompt)
        self.calls: list[str] = []

    def generate(self, request):
        self.calls.append("generate")
        raise AssertionError("the model was called during a dry run")

    def stream(self, request):
        self.calls.append("stream")
        raise AssertionError("the model was called during a dry run")


@pytest.fixture
def backends(cli_project, monkeypatch) -> list[FakeLLM]:
    """Every Middleware the CLI builds gets a NoModel backend; the list holds each one built."""
    built: list[FakeLLM] = []

    def make() -> FakeLLM:
        built.append(NoModel())
        return built[-1]

    use_cli_backend(monkeypatch, make)
    return built


def dry_run(capsys, *extra: str, question: str = QUESTION, domain: str = "data_ops") -> tuple[int, str, str]:
    return run(capsys, "--data-dir", "data", "ask", question.replace("\n", "\\n"), "-d", domain, "--dry-run",
               *extra)


def recorded(project) -> tuple[int, int]:
    """(interactions in the journal, records in the memory store) of the project's data dir."""
    mw = fake_middleware(project_settings(project), FakeLLM())
    try:
        return mw.journal.count(), mw.store.count()
    finally:
        mw.close()


def curated_ids(project, domain: str) -> set[str]:
    lines = (project / "knowledge_base" / domain / "examples.jsonl").read_text(encoding="utf-8").splitlines()
    return {json.loads(line)["id"] for line in lines if line.strip()}


def err_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_dry_run_shows_examples_votes_grammar_and_prompt(backends, capsys):
    code, out, err = dry_run(capsys)
    assert code == 0, err
    assert backends and all(b.calls == [] for b in backends)
    text = " ".join(out.split())
    assert "Selected examples" in text and "Negative examples" in text
    assert "Label votes" in text and "/chart_type" in text  # the vote on the chart type, with its scores
    assert "/chart_type: vote admits ['none']" in text  # a grammar note
    assert "grammar schema" in text
    schema_start = out.index("grammar schema")
    schema_text = out[out.index("\n", schema_start) + 1: out.index("timings (ms):")]
    schema = json.loads(schema_text)  # pretty-printed, plain JSON
    assert schema["properties"]["chart_type"] == {"enum": ["none"]}
    assert "user · request" in out and "sort by a" in out  # the request's turn of the prompt
    assert "Columns: a, b" in out
    assert "timings (ms): embed" in out
    assert out.strip().splitlines()[-1] == "dry run: no model was called, nothing was recorded"


def test_dry_run_json_holds_schema_votes_and_selected_examples(backends, cli_project, capsys):
    code, out, err = dry_run(capsys, "--json")
    assert code == 0, err
    assert all(b.calls == [] for b in backends)
    data = json.loads(out)
    assert data["dry_run"] is True and data["recorded"] is False
    assert data["domain"] == "data_ops" and data["question"] == QUESTION
    schema = data["json_schema"]
    assert schema["type"] == "object" and {"chart_type", "operations"} <= set(schema["properties"])
    assert schema["properties"]["chart_type"] == {"enum": ["none"]}
    assert [v["path"] for v in data["votes"]] == ["/chart_type"]
    assert any("grounded in ['a']" in note for note in data["grammar_notes"])
    assert data["selected"], "no example was selected"
    known = curated_ids(cli_project, "data_ops")
    for example in data["selected"]:
        assert example["id"] in known
        assert example["source"] == "curated"
        assert 0.0 < example["similarity"] <= 1.0
    assert data["messages"][0]["role"] == "system"
    assert data["messages"][-1] == {"role": "user", "content": QUESTION, "kind": "request"}
    assert data["prompt"] is None  # a chat backend gets messages, not a flat prompt
    assert {"embed", "search", "select", "render", "guide"} <= set(data["timings_ms"])


@pytest.mark.parametrize("flat_prompt", [False, True], ids=["chat", "flat"])
def test_dry_run_is_what_ask_then_sends(cli_project, monkeypatch, capsys, flat_prompt):
    """The same retrieval, selection, grammar and prompt as the first request of a real ``ask``."""
    model = FakeLLM(flat_prompt=flat_prompt, default=json.dumps(GOOD))
    use_cli_backend(monkeypatch, lambda: model)
    code, out, err = dry_run(capsys, "--json")
    assert code == 0, err
    assert model.requests == []
    planned = json.loads(out)
    assert (planned["prompt"] is not None) == flat_prompt
    if flat_prompt:
        assert "sort by a" in planned["prompt"]

    code, out, err = run(capsys, "--data-dir", "data", "ask", QUESTION, "-d", "data_ops", "--json")
    assert code == 0, err
    answered = json.loads(out)
    assert len(model.requests) == 1
    sent = model.requests[0]
    assert planned["messages"] == sent.messages
    assert planned["prompt"] == sent.prompt
    assert planned["json_schema"] == sent.json_schema
    assert planned["options"] == sent.options
    assert planned["votes"] == answered["votes"]
    assert [s["id"] for s in planned["selected"]] == [s["id"] for s in answered["selected"]]


def test_dry_run_records_nothing(backends, cli_project, capsys, monkeypatch):
    assert recorded(cli_project) == (0, 0)
    for extra in ((), ("--json",), ("--explain",), ("--no-learn",)):
        code, _, err = dry_run(capsys, *extra)
        assert code == 0, err
    assert recorded(cli_project) == (0, 0)
    assert all(b.calls == [] for b in backends)

    # the same request without --dry-run is recorded: the count above can see a recording
    use_cli_backend(monkeypatch, lambda: FakeLLM(default=json.dumps(GOOD)))
    code, _, err = run(capsys, "--data-dir", "data", "ask", QUESTION, "-d", "data_ops")
    assert code == 0, err
    assert recorded(cli_project)[0] == 1


def test_dry_run_flat_prompt_is_shown(cli_project, monkeypatch, capsys):
    model = NoModel(flat_prompt=True)
    use_cli_backend(monkeypatch, lambda: model)
    code, out, err = dry_run(capsys)
    assert code == 0, err
    assert model.calls == []
    assert "flat prompt sent to the base model" in out


def test_dry_run_unknown_domain_is_one_clear_error(backends, capsys):
    code, out, err = dry_run(capsys, domain="nope")
    assert code == 2
    line = err_line(err)
    assert line.startswith("error:") and "nope" in line
    assert "assistant" in line and "data_ops" in line  # the known domains are listed
    assert "Traceback" not in err and "dry run" not in out
    assert all(b.calls == [] for b in backends)


@pytest.mark.parametrize("question", ["", "   "])
def test_dry_run_empty_request_is_refused(backends, capsys, question):
    code, _, err = dry_run(capsys, question=question, domain="nope")  # refused as empty first, as ask does
    assert code == 2
    assert "empty" in err_line(err)


def test_dry_run_broken_template_names_file_and_line(backends, cli_project, capsys):
    (cli_project / "prompts" / "system.j2").write_text("line one\n{{ domain.description }\n")
    code, out, err = dry_run(capsys)
    assert code == 2
    assert "system.j2:2" in err_line(err)
    assert "dry run" not in out
    assert recorded(cli_project) == (0, 0)
