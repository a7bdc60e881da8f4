"""``rag-middleware review`` driven through a pseudo-terminal: approve, edit in $EDITOR (an invalid edit is
refused with its errors, then fixed), reject with a reason, skip, quit; and what each did to memory."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import FakeLLM, HashEmbedder

from rag_middleware import Middleware
from rag_middleware.learning.feedback import FeedbackLog
from rag_middleware.llm.tokens import ApproxTokenCounter

pexpect = pytest.importorskip("pexpect")

HERE = Path(__file__).resolve().parent
EDITOR = """import json, sys
from pathlib import Path
queue = Path(sys.argv[0]).with_name("edits.json")
edits = json.loads(queue.read_text())
Path(sys.argv[-1]).write_text(edits.pop(0))
queue.write_text(json.dumps(edits))
"""


def plan(column: str, ascending: bool = True) -> dict:
    return {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
        "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": column, "ascending": ascending}}}]}


@pytest.fixture
def recorded(settings, fake_llm, embedder) -> list[str]:
    """Four validated interactions, oldest first (review shows the newest first)."""
    ids = []
    with Middleware(settings, backend=fake_llm, embedder=embedder, token_counter=ApproxTokenCounter()) as mw:
        for question, answer in (("Columns: a, b\nsort by a", plan("a")), ("Columns: a, b\nsort by b", plan("b")),
                                 ("Columns: x, y\nsort by x, largest first", plan("x")),
                                 ("Columns: x, y\nsort by y", plan("y"))):
            fake_llm.enqueue(json.dumps(answer))
            ids.append(mw.ask(question, domain="data_ops").interaction_id)
    return ids


def spawn(project: Path, *args: str) -> pexpect.spawn:
    editor = project / "editor.py"
    editor.write_text(EDITOR)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_MW_")}
    env.update({"EDITOR": f"{sys.executable} {editor}", "VISUAL": f"{sys.executable} {editor}", "TERM": "xterm",
                "HF_HUB_OFFLINE": "1", "COLUMNS": "120"})
    return pexpect.spawn(sys.executable, [str(HERE / "cli_driver.py"), "--data-dir", str(project / "data"),
                                          "review", *args], cwd=str(project), env=env, encoding="utf-8",
                         timeout=60, dimensions=(50, 120))


def test_review_through_a_pty(project, settings, recorded):
    first, second, third, fourth = recorded
    (project / "edits.json").write_text(json.dumps([
        json.dumps(plan("z")),  # not a column of the request: refused with the errors
        json.dumps(plan("x", ascending=False)),
    ]))
    child = spawn(project, "--domain", "data_ops", "--reviewer", "ana")
    child.expect_exact(f"[1/4] {fourth}")
    child.expect_exact("request")
    child.expect_exact("selected examples and negatives")
    child.expect_exact("[q]uit")
    child.sendline("a")
    child.expect_exact(f"{fourth}: approved by ana")

    child.expect_exact(f"[2/4] {third}")
    child.expect_exact("[q]uit")
    child.sendline("e")
    child.expect_exact("the edit fails validation:")
    child.expect_exact("unknown column z")
    child.expect_exact("[e]dit again or [s]kip")
    child.sendline("e")
    child.expect_exact(f"{third}: edited by ana")

    child.expect_exact(f"[3/4] {second}")
    child.expect_exact("[q]uit")
    child.sendline("r")
    child.expect_exact("reason")
    child.sendline("")  # an empty reason is asked again
    child.expect_exact("reason")
    child.sendline("   ")  # so is a blank one, with a word why
    child.expect_exact("needs a reason")
    child.expect_exact("reason")
    child.sendline("should sort by a")
    child.expect_exact(f"{second}: rejected by ana")

    child.expect_exact(f"[4/4] {first}")
    child.expect_exact("[q]uit")
    child.sendline("x")  # not a choice: asked again
    child.expect_exact("[q]uit")
    child.sendline("s")
    child.expect_exact("approve 1, edit 1, reject 1, skip 1")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

    with Middleware(settings, embedder=HashEmbedder(), backend=FakeLLM(), token_counter=ApproxTokenCounter()) as mw:
        by_id = {r.id: r for r in mw.store.get(recorded)}
    assert (by_id[fourth].status, by_id[fourth].kind) == ("approved", "interaction")
    assert (by_id[third].status, by_id[third].source) == ("approved", "edited")
    assert json.loads(by_id[third].answer) == plan("x", ascending=False)
    assert (by_id[second].kind, by_id[second].reason) == ("negative", "should sort by a")
    assert by_id[first].status == "validated"
    log = FeedbackLog(settings.db_path)
    assert log.count() == 3
    log.close()

    # a second session shows only what this reviewer has not reviewed (the skipped one); q quits at once
    child = spawn(project, "--domain", "data_ops", "--reviewer", "ana")
    child.expect_exact(f"[1/1] {first}")
    child.expect_exact("[q]uit")
    child.sendline("q")
    child.expect_exact("approve 0, edit 0, reject 0, skip 0")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
