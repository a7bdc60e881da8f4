"""Confidence where reviewers and operators see it: ``stats`` (mean per group, failed and least confident
queries, also in --json and GET /rag/stats), ``review --order confidence`` and ``export finetune
--min-confidence``."""

from __future__ import annotations

import json
import math
import os
import sys
from datetime import datetime, timedelta, UTC
from pathlib import Path

import pytest
from conftest import FakeLLM, mw_export, mw_feedback, run_cli, use_cli_backend
from starlette.testclient import TestClient

from rag_middleware.cli.review import least_confident
from rag_middleware.learning.export import ExportOptions
from rag_middleware.learning.feedback import Feedback, FeedbackLog
from rag_middleware.records import Attempt, Interaction
from rag_middleware.server import create_app
from rag_middleware.analytics.stats import read_stats

HERE = Path(__file__).resolve().parent
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def shop(collection: str, **filters) -> dict:
    return {"tool": "count_documents", "collection": collection, "field": None, "filter": filters, "limit": None}


def record(mw, *, question: str, confidence: float | None, minute: int, domain: str = "shop_query",
           status: str = "validated", output=None) -> str:
    """An interaction written straight to the log, with a chosen confidence and time."""
    output = shop("orders") if output is None and status == "validated" else output
    text = json.dumps(output) if output is not None else ""
    inter = Interaction(tenant="default", domain=domain, status=status, request={}, question=question,
                        template_version="t1", model="m", backend="fake", created_at=T0 + timedelta(minutes=minute),
                        attempts=[Attempt(number=1, messages=[], raw_output=text or "nope",
                                          errors=[] if output is not None else ["(root): no JSON object found"])],
                        output=output, output_text=text, confidence=confidence,
                        confidence_parts={} if confidence is None else {"attempts": 1.0, "agreement": confidence})
    mw.journal.write(inter)
    return inter.id


@pytest.fixture
def traffic(mw) -> dict[str, str]:
    """Shop answers at known confidences, two failures, and a free-text answer (no confidence)."""
    ids = {
        "sure": record(mw, question="How many orders are there?", confidence=0.9, minute=1),
        "unsure": record(mw, question="How many customers signed up?", confidence=0.2, minute=2,
                         output=shop("customers")),
        "middling": record(mw, question="How many products are in stock?", confidence=0.5, minute=3,
                           output=shop("products")),
        "shaky": record(mw, question="How many orders came from Spain?", confidence=0.35, minute=4,
                        output=shop("orders", country="ES")),
        "failed": record(mw, question="Count the returned orders " + "please " * 40, confidence=0.0, minute=5,
                         status="failed"),
        "failed_too": record(mw, question="What is the total of the refunds?", confidence=0.0, minute=6,
                             status="failed"),
        "chat": record(mw, question="How do I sum a column?", confidence=None, minute=7, domain="assistant",
                       status="answered", output="Use =SUM(A:A)."),
    }
    return ids


# -- stats ------------------------------------------------------------------------------------------------

def test_stats_mean_confidence_per_group_and_the_lists(mw, traffic):
    out = read_stats(mw.settings.db_path, by="domain")
    groups = {g["key"]: g for g in out["groups"]}
    # of the valid answers only: the failures' 0.0 does not drag the mean down; free text has none
    assert groups["shop_query"]["mean_confidence"] == pytest.approx((0.9 + 0.2 + 0.5 + 0.35) / 4, abs=1e-4)
    assert groups["assistant"]["mean_confidence"] is None
    assert out["overall"]["mean_confidence"] == pytest.approx((0.9 + 0.2 + 0.5 + 0.35) / 4, abs=1e-4)

    low = out["low_confidence"]
    assert [q["id"] for q in low] == [traffic["unsure"], traffic["shaky"], traffic["middling"], traffic["sure"]]
    assert low[0] == {**low[0], "domain": "shop_query", "confidence": 0.2,
                      "question": "How many customers signed up?"}
    failed = out["failed"]
    assert [q["id"] for q in failed] == [traffic["failed_too"], traffic["failed"]]  # newest first
    assert failed[1]["status"] == "failed" and len(failed[1]["question"]) == 100 and failed[1]["question"].endswith("…")

    small = read_stats(mw.settings.db_path, list_size=1)
    assert [q["id"] for q in small["low_confidence"]] == [traffic["unsure"]]
    assert [q["id"] for q in small["failed"]] == [traffic["failed_too"]]


def test_stats_cli_shows_confidence(cli_project, mw, traffic, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    data = ["--data-dir", str(mw.settings.data_dir)]
    code, out, err = run_cli(capsys, *data, "stats", "--json", "--by", "domain", "--top", "2")
    assert code == 0, err
    body = json.loads(out)
    assert [q["id"] for q in body["low_confidence"]] == [traffic["unsure"], traffic["shaky"]]
    assert len(body["failed"]) == 2
    code, out, err = run_cli(capsys, *data, "stats", "--domain", "shop_query")
    assert code == 0, err
    assert "confidence" in out and " 0.49 " in out  # the mean (0.4875) in the table
    assert "lowest-confidence answers" in out and traffic["unsure"] in out
    assert "failed queries" in out and traffic["failed_too"] in out


def test_stats_endpoint_has_the_lists(mw, traffic):
    settings = mw.settings.model_copy(update={"server": mw.settings.server.model_copy(
        update={"upstream": "embedded", "admin_token": None, "admin_open": False})})
    with TestClient(create_app(settings, middleware=mw), client=("127.0.0.1", 50000)) as client:
        body = client.get("/rag/stats", params={"by": "domain"}).json()
    assert body["low_confidence"][0]["id"] == traffic["unsure"]
    assert {q["id"] for q in body["failed"]} == {traffic["failed"], traffic["failed_too"]}
    assert {g["key"]: g["mean_confidence"] for g in body["groups"]}["assistant"] is None


# -- review --order confidence -----------------------------------------------------------------------------

def test_least_confident_orders_the_whole_log(mw, traffic):
    items = least_confident(mw, domain=None, tenant=None, status="validated", limit=3, skip=lambda _id: False)
    assert [i.id for i in items] == [traffic["unsure"], traffic["shaky"], traffic["middling"]]
    # already reviewed ones are skipped before the limit applies
    items = least_confident(mw, domain="shop_query", tenant=None, status="validated", limit=2,
                            skip=lambda iid: iid == traffic["unsure"])
    assert [i.id for i in items] == [traffic["shaky"], traffic["middling"]]
    # free text (no confidence) comes after every scored answer
    items = least_confident(mw, domain=None, tenant=None, status=None, limit=10, skip=lambda _id: False)
    assert items[-1].id == traffic["chat"] and items[0].confidence == 0.0


def test_review_rejects_an_unknown_order(cli_project, mw, capsys):
    code, _out, err = run_cli(capsys, "--data-dir", str(mw.settings.data_dir), "review", "--order", "oldest")
    assert code == 2 and "--order must be one of newest, confidence" in err


def test_review_through_a_pty_least_confident_first(project, mw, traffic):
    pexpect = pytest.importorskip("pexpect")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_MW_")}
    env.update({"TERM": "xterm", "HF_HUB_OFFLINE": "1", "COLUMNS": "120"})
    child = pexpect.spawn(sys.executable, [str(HERE / "cli_driver.py"), "--data-dir", str(project / "data"), "review",
                                           "--domain", "shop_query", "--order", "confidence", "--reviewer", "ana"],
                          cwd=str(project), env=env, encoding="utf-8", timeout=60, dimensions=(50, 120))
    child.expect_exact(f"[1/4] {traffic['unsure']}")
    child.expect_exact("confidence 0.20")
    child.expect_exact("[q]uit")
    child.sendline("a")
    child.expect_exact(f"[2/4] {traffic['shaky']}")
    child.expect_exact("confidence 0.35")
    child.expect_exact("[q]uit")
    child.sendline("s")
    child.expect_exact(f"[3/4] {traffic['middling']}")
    child.expect_exact("[q]uit")
    child.sendline("q")
    child.expect_exact("approve 1, edit 0, reject 0, skip 1")
    child.expect(pexpect.EOF)
    log = FeedbackLog(mw.settings.db_path)
    try:
        assert [f.action for f in log.of(traffic["unsure"])] == ["approve"]
    finally:
        log.close()


# -- export finetune --min-confidence ----------------------------------------------------------------------

@pytest.fixture
def approved(mw, traffic) -> dict[str, str]:
    for key in ("sure", "unsure", "middling", "shaky"):
        mw_feedback(mw, Feedback(interaction_id=traffic[key], action="approve", reviewer="ana"))
    mw_feedback(mw, Feedback(interaction_id=traffic["chat"], action="approve", reviewer="ana"))
    return traffic


def exported(report: dict) -> set[str]:
    return {v["interaction_id"] for v in report["schema_validity"]["items"]}


def test_export_min_confidence_skips_and_counts(mw, approved, tmp_path):
    everything = mw_export(mw, ExportOptions(out=tmp_path / "all", holdout=0.0))
    assert exported(everything) == {approved[k] for k in ("sure", "unsure", "middling", "shaky", "chat")}
    assert everything["counts"]["skipped"] == {}

    report = mw_export(mw, ExportOptions(out=tmp_path / "sure", holdout=0.0, min_confidence=0.4))
    assert exported(report) == {approved["sure"], approved["middling"]}
    assert report["counts"]["skipped"] == {"confidence below 0.4": 2,
                                           "no confidence recorded (free text or older records)": 1}
    assert report["options"]["min_confidence"] == 0.4
    # the threshold is inclusive
    assert exported(mw_export(mw, ExportOptions(out=tmp_path / "edge", holdout=0.0, domain="shop_query",
                                                      min_confidence=0.5))) == {approved["sure"], approved["middling"]}


def test_export_cli_min_confidence(cli_project, mw, approved, capsys, tmp_path, monkeypatch):
    use_cli_backend(monkeypatch, FakeLLM)
    code, out, err = run_cli(capsys, "--data-dir", str(mw.settings.data_dir), "export", "finetune", "--out",
                             str(tmp_path / "x"), "--domain", "shop_query", "--holdout", "0", "--min-confidence", "0.3")
    assert code == 0, err
    assert "skipped: confidence below 0.3 1" in " ".join(out.split())
    report = json.loads((tmp_path / "x" / "export_report.json").read_text())
    assert report["counts"]["exported"] == 3
    code, _out, err = run_cli(capsys, "export", "finetune", "--out", str(tmp_path / "y"), "--min-confidence", "1.5")
    assert code == 2


def test_token_probability_is_the_mean_per_field_of_the_tokens_of_its_value_not_keys_or_punctuation():
    from rag_middleware.request.confidence import value_probability

    tokens = [('{"', -9.0), ("city", -6.0), ('": "', -3.0), ("Par", math.log(0.5)), ("is", math.log(1.0)),
              ('", "', -2.0), ("n", -7.0), ('": ', -4.0), ("12", math.log(0.3)), ("}", -1.0)]
    assert value_probability(tokens) == pytest.approx(((0.5 + 1.0) / 2 + 0.3) / 2)  # per field, then mean
    assert value_probability([('{"', -1.0), ("a", -1.0), ('": ', -1.0), ('"x\\"y"', math.log(0.8)), ("}", -1.0)]) \
        == pytest.approx(0.8)  # an escaped quote stays inside its value
    assert value_probability(None) is None and value_probability([("{}", -1.0)]) is None
    # a field without a token of its own (an empty list) counts as unknown
    assert value_probability([('{"a": ', -1.0), ("1", math.log(0.9)), (', "b": []}', -1.0)]) == pytest.approx(
        (0.9 + 0.5) / 2)


def test_fields_the_grammar_settled_weigh_less_than_fields_left_to_the_model():
    from rag_middleware.request.confidence import confidence, left_open, value_probability

    votes = [{"path": "/kind", "allowed": ["a"]}, {"path": "/level", "allowed": ["x", "y"]},
             {"path": "/tags", "allowed": []}, {"path": "/tags/0", "allowed": ["t"]},
             {"path": "/size", "allowed": []}, {"path": "/size", "allowed": [3]}]  # a second record settles it
    assert left_open(votes) == {"level", "tags"}
    tokens = [('{"kind": "', -1.0), ("a", math.log(0.5)), ('", "level": "', -1.0), ("x", math.log(0.5)), ('"}', -1.0)]
    assert value_probability(tokens, {"level"}) == pytest.approx(((0.9 + 0.05) + 0.5) / 2)
    assert value_probability(tokens) == pytest.approx(0.5)
    output = {"kind": "a", "level": "x"}
    unsure_open = confidence(valid=True, output=output, attempts=1, votes=votes, similarities=[0.5], logprobs=tokens)
    sure_open = [('{"kind": "', -1.0), ("a", math.log(0.5)), ('", "level": "', -1.0), ("x", 0.0), ('"}', -1.0)]
    sure = confidence(valid=True, output=output, attempts=1, votes=votes, similarities=[0.5], logprobs=sure_open)
    unsure_settled = [('{"kind": "', -1.0), ("a", math.log(0.1)), ('", "level": "', -1.0), ("x", 0.0), ('"}', -1.0)]
    settled = confidence(valid=True, output=output, attempts=1, votes=votes, similarities=[0.5],
                         logprobs=unsure_settled)
    assert unsure_open["settled_fields"] == 0.5 and unsure_open["score"] < settled["score"] < sure["score"]
    assert sure["token_probability"] == pytest.approx(0.75) and settled["token_probability"] == pytest.approx(0.55)


def test_an_answer_with_token_probabilities_records_them_in_its_confidence(mw, fake_llm, monkeypatch):
    real = fake_llm.generate

    def with_logprobs(request):
        completion = real(request)
        return completion.model_copy(update={"logprobs": [(completion.text, -0.1)]})

    monkeypatch.setattr(fake_llm, "generate", with_logprobs)
    fake_llm.enqueue(json.dumps({"claim_type": "home", "severity": "low", "channel": "email",
                                 "injury_reported": False, "department": "property_claims",
                                 "policy_number": None, "amount_claimed": None}))
    result = mw.ask("Dear team, my fence blew over. Regards", domain="claims_intake")
    record = mw.journal.get(result.interaction_id)
    assert record.attempts[-1].logprobs and record.confidence_parts["token_probability"] == pytest.approx(
        math.exp(-0.1), abs=1e-3)
    # with token probabilities, they are the evidence, each field the grammar settled counting 0.9 and a tenth
    # of its own (agreement and familiarity are recorded beside them)
    parts = record.confidence_parts
    settled = parts["settled_fields"]
    assert 0 < settled < 1  # this fence claim leaves some voted fields open
    assert record.confidence == pytest.approx(parts["settled_probability"], abs=1e-3)
    assert parts["settled_probability"] == pytest.approx(
        settled * (0.9 + 0.1 * math.exp(-0.1)) + (1 - settled) * math.exp(-0.1), abs=1e-3)
    assert {"agreement", "familiarity"} <= set(record.confidence_parts)


def test_ask_explain_shows_the_confidence_and_its_parts(cli_project, capsys, monkeypatch):
    class WithLogprobs(FakeLLM):
        def generate(self, request):
            completion = super().generate(request)
            return completion.model_copy(update={"logprobs": [(completion.text, math.log(0.8))]})

    answer = json.dumps({"claim_type": "home", "severity": "low", "channel": "email", "injury_reported": False,
                         "department": "property_claims", "policy_number": None, "amount_claimed": None})
    use_cli_backend(monkeypatch, lambda: WithLogprobs(default=answer))
    code, _, err = run_cli(capsys, "--data-dir", "data", "ask", "Dear team, my fence blew over.", "--domain",
                           "claims_intake", "--explain")
    assert code == 0
    shown = " ".join(err.split())
    assert "confidence 0.90 (attempts 1.00, settled_fields 0.57, agreement" in shown
    # 4 of 7 fields settled: (4 x 0.98 + 3 x 0.8) / 7
    assert "token_probability 0.80, settled_probability 0.90)" in shown
