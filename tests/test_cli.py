"""The ``rag-middleware`` CLI: in process with a FakeLLM/HashEmbedder middleware, plus one real subprocess run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FakeLLM, HashEmbedder, run_cli as run
from ollama_fake import free_port

from rag_middleware.cli.context import CliState
from rag_middleware.request.pipeline import Middleware
from rag_middleware.llm.tokens import ApproxTokenCounter

QUESTION = "Columns: a, b\nsort by a"
GOOD = {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "a", "ascending": True}}}]}
DUPS = {"task": "clean", "chart_type": "none", "operations": [{"type": "remove_duplicates", "execution_instructions": {
    "method": "pandas.DataFrame.drop_duplicates", "args": [], "kwargs": {}}}]}
RECORDS = [
    {"id": "imp-sort", "question": QUESTION, "answer": GOOD, "domain": "data_ops", "tenant": "acme",
     "status": "approved"},
    {"id": "imp-dups", "question": "Columns: x, y\nRemove duplicate rows.", "answer": DUPS, "domain": "data_ops",
     "tenant": "acme", "status": "validated"},
    {"id": "imp-mean", "question": "What is a mean?", "answer": "The sum divided by the count.",
     "domain": "assistant", "tenant": "acme", "status": "validated"},
]


@pytest.fixture
def llm() -> FakeLLM:
    return FakeLLM(default=json.dumps(GOOD))


@pytest.fixture
def cli_env(project, monkeypatch, llm):
    """Run in the temp project; every Middleware the CLI builds gets the fakes (the real Ollama backend when
    --backend ollama is asked for)."""
    monkeypatch.chdir(project)
    for var in list(os.environ):
        if var.startswith("RAG_MW_") or var in ("OLLAMA_HOST", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                                                 "all_proxy"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("RAG_MW_RETRY__BACKOFF_INITIAL", "0")
    monkeypatch.setenv("RAG_MW_RETRY__BACKOFF_MAX", "0")

    def middleware(self: CliState, **extra):
        settings = self.settings(**extra)
        backend = None if settings.llm.backend == "ollama" else llm
        return Middleware(settings, backend=backend, embedder=HashEmbedder(), token_counter=ApproxTokenCounter())

    monkeypatch.setattr(CliState, "middleware", middleware)
    return project




def err_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def flat(text: str) -> str:
    return " ".join(text.split())


# -- ask ---------------------------------------------------------------------------------------------


def test_ask_json_prints_one_object(cli_env, capsys, llm):
    code, out, err = run(capsys, "--data-dir", "data", "ask", QUESTION, "--domain", "data_ops", "--json")
    assert code == 0, err
    data = json.loads(out)
    for key in ("output", "valid", "attempts", "selected", "template_version", "interaction_id", "timings_ms"):
        assert key in data
    assert data["valid"] is True
    assert data["attempts"] == 1
    assert data["output"]["task"] == "sort"
    assert data["interaction_id"] and data["template_version"]
    assert isinstance(data["selected"], list) and data["selected"]
    assert len(llm.requests) == 1
    assert "sort by a" in llm.requests[0].messages[-1]["content"]


def test_ask_literal_backslash_n_becomes_a_newline(cli_env, capsys, llm):
    code, _, err = run(capsys, "--data-dir", "data", "ask", "Columns: a, b\\nsort by a", "-d", "data_ops")
    assert code == 0, err
    assert "Columns: a, b\nsort by a" in llm.requests[0].messages[-1]["content"]


def test_ask_all_attempts_fail(cli_env, capsys, llm):
    llm.default = "certainly not json"
    code, out, err = run(capsys, "--data-dir", "data", "ask", QUESTION, "--domain", "data_ops")
    assert code != 0
    line = err_line(err)
    assert line.startswith("error:")
    assert "no valid answer after 3 attempt" in line
    assert len(llm.requests) == 3
    assert "certainly not json" not in out


def test_ask_all_attempts_fail_json_still_reports_the_attempts(cli_env, capsys, llm):
    llm.default = "certainly not json"
    code, out, err = run(capsys, "--data-dir", "data", "ask", QUESTION, "--domain", "data_ops", "--json")
    assert code != 0
    assert "no valid answer" in err_line(err)
    data = json.loads(out)
    assert data["valid"] is False
    assert data["attempts"] == 3
    assert all(errors for errors in data["attempt_errors"])


def test_ask_unknown_domain_lists_known_ones(cli_env, capsys, llm):
    code, _, err = run(capsys, "--data-dir", "data", "ask", "hello", "--domain", "nope")
    assert code != 0
    line = err_line(err)
    assert "nope" in line
    assert "assistant" in line and "data_ops" in line
    assert llm.requests == []


@pytest.mark.parametrize("question", ["", "   "])
def test_ask_empty_question(cli_env, capsys, llm, question):
    code, _, err = run(capsys, "--data-dir", "data", "ask", question, "--domain", "assistant")
    assert code != 0
    assert "empty" in err_line(err)
    assert llm.requests == []


def test_ask_ollama_unreachable_names_the_host(cli_env, capsys, monkeypatch):
    host = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("RAG_MW_LLM__OLLAMA_HOST", host)
    code, _, err = run(capsys, "--data-dir", "data", "ask", QUESTION, "-d", "data_ops", "--backend", "ollama")
    assert code != 0
    line = err_line(err)
    assert host in line
    assert "unreachable" in line


def test_ask_rejects_an_unknown_backend(cli_env, capsys, llm):
    code, _, err = run(capsys, "--data-dir", "data", "ask", QUESTION, "-d", "data_ops", "--backend", "gpt")
    assert code != 0
    assert "--backend" in err
    assert llm.requests == []


@pytest.mark.parametrize("argv", [["ask"], ["no-such-command"], ["memory", "count", "--limit", "3"]])
def test_usage_errors_exit_2_with_a_message_not_a_traceback(cli_env, capsys, argv):
    code, out, err = run(capsys, "--data-dir", "data", *argv)
    assert code == 2
    assert "Traceback" not in err
    assert err.strip()


# -- prompts render ----------------------------------------------------------------------------------


def test_prompts_render_json_does_not_call_the_model(cli_env, capsys, llm):
    code, out, err = run(capsys, "--data-dir", "data", "prompts", "render", "--domain", "data_ops",
                         "--request", "Columns: a, b\\nsort by a", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert llm.requests == []
    assert {"embed", "search", "select", "render"} <= set(data["timings_ms"])
    assert data["messages"] and data["messages"][0]["role"] == "system"
    assert data["messages"][-1]["role"] == "user"
    assert "Columns: a, b\nsort by a" in data["messages"][-1]["content"]
    assert data["domain"] == "data_ops"


# -- memory ------------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def count(capsys, *filters: str) -> int:
    code, out, err = run(capsys, "--data-dir", "data", "memory", "count", *filters)
    assert code == 0, err
    return int(out.strip())


def test_memory_import_count_and_idempotence(cli_env, capsys, tmp_path):
    before = count(capsys)
    file = write_jsonl(tmp_path / "records.jsonl", RECORDS)
    code, out, err = run(capsys, "--data-dir", "data", "memory", "import", str(file))
    assert code == 0, err
    text = flat(out)
    assert "3 records" in text and "inserted 3" in text and "unchanged 0" in text
    assert count(capsys) == before + 3
    assert count(capsys, "--tenant", "acme", "--domain", "data_ops") == 2
    assert count(capsys, "--tenant", "acme", "--status", "approved") == 1

    code, out, err = run(capsys, "--data-dir", "data", "memory", "import", str(file))
    assert code == 0, err
    text = flat(out)
    assert "inserted 0" in text and "updated 0" in text and "unchanged 3" in text
    assert count(capsys) == before + 3


def test_memory_import_bad_line_names_it_and_writes_nothing(cli_env, capsys, tmp_path):
    before = count(capsys)
    file = write_jsonl(tmp_path / "bad.jsonl", [RECORDS[0], RECORDS[1], '{"id": "broken", "question": ', RECORDS[2]])
    code, _, err = run(capsys, "--data-dir", "data", "memory", "import", str(file))
    assert code != 0
    line = err_line(err)
    assert ":3:" in line
    assert "invalid JSON" in line
    assert count(capsys) == before


def test_memory_import_answer_failing_the_output_model_is_refused(cli_env, capsys, tmp_path):
    bad = dict(RECORDS[0], id="bad-plan", answer={"task": "sort"})
    file = write_jsonl(tmp_path / "bad.jsonl", [RECORDS[2], bad])
    code, _, err = run(capsys, "--data-dir", "data", "memory", "import", str(file))
    assert code != 0
    assert ":2:" in err_line(err)


def test_memory_list_json(cli_env, capsys, tmp_path):
    file = write_jsonl(tmp_path / "records.jsonl", RECORDS)
    assert run(capsys, "--data-dir", "data", "memory", "import", str(file))[0] == 0
    code, out, err = run(capsys, "--data-dir", "data", "memory", "list", "--tenant", "acme", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert {r["id"] for r in rows} == {"imp-sort", "imp-dups", "imp-mean"}
    by_id = {r["id"]: r for r in rows}
    assert by_id["imp-sort"]["status"] == "approved"
    assert by_id["imp-sort"]["source"] == "import"
    assert json.loads(by_id["imp-sort"]["answer"]) == GOOD
    assert by_id["imp-mean"]["answer"] == "The sum divided by the count."

    code, out, _ = run(capsys, "--data-dir", "data", "memory", "list", "--tenant", "acme", "--domain", "assistant",
                       "--json")
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines() if line.strip()] == ["imp-mean"]


# -- data dir ----------------------------------------------------------------------------------------


def test_unwritable_data_dir_is_a_one_line_error(cli_env, capsys, tmp_path):
    if os.geteuid() == 0:  # root ignores permissions: use a path below a regular file instead
        blocker = tmp_path / "file.txt"
        blocker.write_text("not a directory")
        data_dir = blocker / "data"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        data_dir = locked / "data"
    try:
        code, _, err = run(capsys, "--data-dir", str(data_dir), "memory", "count")
    finally:
        if os.geteuid() != 0:
            (tmp_path / "locked").chmod(0o700)
    assert code != 0
    line = err_line(err)
    assert str(data_dir) in line
    assert "data dir" in line
    assert not data_dir.exists()


# -- the real entry point ----------------------------------------------------------------------------


def test_entry_point_help():
    exe = Path(sys.executable).with_name("rag-middleware")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for command in ("ask", "demo", "prompts", "memory"):
        assert command in proc.stdout


@pytest.mark.integration
def test_real_cli_ollama_unreachable(project, tmp_path):
    """The real stack (packaged embedder) in a subprocess: an unreachable Ollama host is named in one line."""
    exe = Path(sys.executable).with_name("rag-middleware")
    host = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_MW_") and k != "OLLAMA_HOST"}
    env.update({"RAG_MW_LLM__OLLAMA_HOST": host, "RAG_MW_RETRY__BACKOFF_INITIAL": "0",
                "RAG_MW_RETRY__BACKOFF_MAX": "0", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    proc = subprocess.run([str(exe), "--data-dir", str(tmp_path / "data"), "ask", QUESTION, "--domain", "data_ops",
                           "--backend", "ollama"], capture_output=True, text=True, timeout=300, cwd=project, env=env)
    assert proc.returncode != 0
    assert host in err_line(proc.stderr)
    assert proc.stdout.strip() == ""
