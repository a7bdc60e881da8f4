"""Fine-tuning export: approved and edited only, PII masked everywhere, duplicates removed, stratified holdout,
and a report that accounts for all of it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rag_middleware.errors import UnknownDomainError
from conftest import mw_export, mw_feedback

from rag_middleware.learning.export import ExportOptions
from rag_middleware.learning.feedback import Feedback
from rag_middleware.learning.pii import PiiMasker, iban_valid, luhn_valid

EMAIL = "jane.doe@example.com"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"
IP = "192.168.17.42"
SSN = "123-45-6789"
PLANTED = [EMAIL, PHONE, CARD, IBAN, IP, SSN, "4111111111111111", "7946 0958", "DE89370400440532013000"]


def shop(tool: str = "count_documents", collection: str = "orders", **filters) -> dict:
    return {"tool": tool, "collection": collection, "field": None, "filter": filters, "limit": None}


def plan(column: str, ascending: bool = True) -> dict:
    return {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
        "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": column, "ascending": ascending}}}]}


def ask(mw, fake_llm, question: str, answer, domain: str) -> str:
    fake_llm.enqueue(json.dumps(answer))
    return mw.ask(question, domain=domain).interaction_id


def review(mw, iid: str, action: str, **kw) -> None:
    mw_feedback(mw, Feedback(interaction_id=iid, action=action, reviewer="ana", **kw))


@pytest.fixture
def reviewed(mw, fake_llm) -> dict[str, str]:
    """Interactions in two domains with PII planted in requests, answers and edits, plus duplicates."""
    ids = {}
    ids["pii_email"] = ask(mw, fake_llm, f"How many orders did the customer with email {EMAIL} place?",
                           shop(email=EMAIL), "shop_query")
    ids["pii_card"] = ask(mw, fake_llm, f"Count the orders of customer {CARD}, phone {PHONE}, IBAN {IBAN}.",
                          shop(customer_id=CARD), "shop_query")
    ids["pii_ip"] = ask(mw, fake_llm, f"List customers who signed up from {IP} or have SSN {SSN}",
                        shop("find_documents", "customers", name=SSN), "shop_query")
    ids["vip"] = ask(mw, fake_llm, "How many customers are in the gold segment?", shop(collection="customers",
                                                                                         segment="gold"), "shop_query")
    ids["vip_twin"] = ask(mw, fake_llm, "How many customers are in the gold segment?",
                          shop(collection="customers", segment="gold"), "shop_query")
    ids["vip_near"] = ask(mw, fake_llm, "How many customers are in the gold segment now?",
                          shop(collection="customers", segment="gold"), "shop_query")
    ids["rejected"] = ask(mw, fake_llm, "How many products are out of stock?", shop(collection="products"),
                          "shop_query")
    ids["unreviewed"] = ask(mw, fake_llm, "How many orders were shipped?", shop(status="shipped"), "shop_query")
    ids["sort_price"] = ask(mw, fake_llm, "Columns: price, qty\nsort by price", plan("price"), "data_ops")
    ids["sort_qty"] = ask(mw, fake_llm, "Columns: price, qty\nsort by qty, largest first", plan("qty"), "data_ops")
    ids["sort_edit"] = ask(mw, fake_llm, "Columns: name, age\norder by age descending", plan("age"), "data_ops")
    for key in ("pii_email", "pii_ip", "vip", "vip_twin", "vip_near", "sort_price", "sort_qty"):
        review(mw, ids[key], "approve", score=5 if key != "sort_qty" else 2)
    review(mw, ids["pii_card"], "edit", score=4, edited_output=shop(customer_id=CARD, email=EMAIL),
           notes=f"call {PHONE}")
    review(mw, ids["sort_edit"], "edit", score=5, edited_output=plan("age", ascending=False))
    review(mw, ids["rejected"], "reject", reason="out of stock means stock = 0")
    return ids


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def exported_ids(report: dict) -> set[str]:
    return {v["interaction_id"] for v in report["schema_validity"]["items"]}


def test_checksums():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE88 3704 0044 0532 0130 00")


def test_masker_masks_each_type_and_keeps_ordinary_numbers():
    masker = PiiMasker()
    text = (f"mail {EMAIL}, call {PHONE} or (415) 555-2671, card {CARD}, iban {IBAN}, ip {IP} / 2001:db8::7, "
            f"ssn {SSN}, passport no: X1234567. Keep 2024-01-31, top 10, 1000 rows, 3.14159, card 4111 1111 1111 1112")
    masked = masker.mask(text)
    for planted in (EMAIL, PHONE, "555-2671", CARD, IBAN, IP, "2001:db8::7", SSN, "X1234567"):
        assert planted not in masked, planted
    for kept in ("2024-01-31", "top 10", "1000 rows", "3.14159", "4111 1111 1111 1112"):
        assert kept in masked, kept
    assert masker.hits == {"email": 1, "phone": 2, "card": 1, "iban": 1, "ip": 2, "national_id": 2}
    assert json.loads(json.dumps(masker.mask_value({"email": EMAIL})))["email"] == "<EMAIL>"


def test_chat_export_has_only_approved_and_edited_answers(mw, reviewed, tmp_path):
    out = tmp_path / "ft"
    report = mw_export(mw, ExportOptions(out=out, holdout=0.2))
    lines = read_jsonl(out / "train.jsonl") + read_jsonl(out / "holdout.jsonl")
    ids = exported_ids(report)
    assert reviewed["rejected"] not in ids and reviewed["unreviewed"] not in ids
    assert report["counts"]["candidates"] == 9  # 7 approved + 2 edited
    assert report["counts"]["skipped"] == {"not approved (rejected)": 1}
    assert report["counts"]["exported"] == len(lines) == 9 - 2  # the exact twin and the near twin are gone
    for line in lines:
        assert list(line) == ["messages"]
        roles = [m["role"] for m in line["messages"]]
        assert roles[0] == "system" and roles[-2:] == ["user", "assistant"]
        assert set(line["messages"][-1]) == {"role", "content"}
    answers = [json.loads(line["messages"][-1]["content"]) for line in lines]
    assert plan("age", ascending=False) in answers and plan("age") not in answers  # the edit, not the original
    assert all(v["valid"] for v in report["schema_validity"]["items"])
    assert report["schema_validity"] == {**report["schema_validity"], "valid": 9, "invalid": 0}


def test_no_planted_pii_in_any_exported_file(mw, reviewed, tmp_path):
    for fmt in ("chat", "prompt-completion"):
        out = tmp_path / fmt
        report = mw_export(mw, ExportOptions(out=out, format=fmt, with_examples=True))
        files = sorted(out.iterdir())
        assert {f.name for f in files} == {"train.jsonl", "holdout.jsonl", "export_report.json"}
        blob = "\n".join(f.read_text(encoding="utf-8") for f in files)
        for planted in PLANTED:
            assert planted not in blob, (fmt, planted)
        assert "<EMAIL>" in blob and "<CARD>" in blob and "<PHONE>" in blob
        hits = report["pii"]["hits_by_type"]
        assert hits["email"] >= 3 and hits["card"] >= 2 and hits["phone"] >= 1 and hits["iban"] >= 1
        assert hits["ip"] >= 1 and hits["national_id"] >= 2
        assert report["pii"]["examples_with_pii"] >= 3  # planted items, and any curated few-shot with PII
    # digits of the card in any grouping never survive
    assert not re.search(r"4111[\s-]?1111[\s-]?1111[\s-]?1111", blob)


def test_duplicates_and_near_duplicates_are_removed(mw, reviewed, tmp_path):
    report = mw_export(mw, ExportOptions(out=tmp_path / "a"))
    assert report["duplicates_removed"] == {"exact": 1, "near": 1, "near_threshold": 0.95}
    looser = mw_export(mw, ExportOptions(out=tmp_path / "b", near_dup_threshold=1.0))
    assert looser["duplicates_removed"]["near"] == 0 and looser["counts"]["exported"] == 8


def test_prompt_completion_format_and_stratified_holdout(mw, reviewed, tmp_path):
    out = tmp_path / "pc"
    report = mw_export(mw, ExportOptions(out=out, format="prompt-completion", holdout=0.5))
    train, holdout = read_jsonl(out / "train.jsonl"), read_jsonl(out / "holdout.jsonl")
    for line in train + holdout:
        assert set(line) == {"prompt", "completion", "metadata"}
        assert line["prompt"].rstrip().endswith("Answer:")
        assert line["metadata"]["action"] in ("approve", "edit") and line["metadata"]["interaction_id"]
    held = {line["metadata"]["domain"] for line in holdout}
    assert held == {"shop_query", "data_ops"}, "each domain is represented in the holdout"
    assert report["counts"]["holdout_by_domain"] == {"shop_query": 2, "data_ops": 2}
    assert report["counts"]["train"] + report["counts"]["holdout"] == report["counts"]["exported"]
    # deterministic: the same split again
    again = mw_export(mw, ExportOptions(out=tmp_path / "pc2", format="prompt-completion", holdout=0.5))
    assert again["counts"] == report["counts"]
    assert read_jsonl(tmp_path / "pc2" / "holdout.jsonl") == holdout


def test_min_score_domain_and_with_examples(mw, reviewed, tmp_path):
    report = mw_export(mw, ExportOptions(out=tmp_path / "s", min_score=5, domain="data_ops", holdout=0.0))
    assert exported_ids(report) == {reviewed["sort_price"], reviewed["sort_edit"]}  # sort_qty scored 2
    plain = read_jsonl(tmp_path / "s" / "train.jsonl")
    mw_export(mw, ExportOptions(out=tmp_path / "x", min_score=5, domain="data_ops", holdout=0.0,
                                      with_examples=True))
    rich = read_jsonl(tmp_path / "x" / "train.jsonl")
    assert all(len(r["messages"]) > len(p["messages"]) for r, p in zip(rich, plain, strict=True))
    assert all(len(p["messages"]) == 3 for p in plain)
    assert mw_export(mw, ExportOptions(out=tmp_path / "t", tenant="other"))["counts"]["exported"] == 0
    assert mw_export(mw, ExportOptions(out=tmp_path / "u", tenant="default"))["counts"]["exported"] == 7
    with pytest.raises(UnknownDomainError):
        mw_export(mw, ExportOptions(out=tmp_path / "y", domain="nope"))


def test_report_counts_tokens_and_quality(mw, reviewed, tmp_path):
    report = mw_export(mw, ExportOptions(out=tmp_path / "r"))
    on_disk = json.loads((tmp_path / "r" / "export_report.json").read_text(encoding="utf-8"))
    assert on_disk["counts"] == report["counts"]
    tokens = report["tokens"]
    assert tokens["prompt_total"] > tokens["completion_total"] > 0 and tokens["max_example"] > 0
    quality = report["quality"]
    assert 0 <= quality["score"] < 100
    assert quality["score"] == 100 - sum(d["points"] for d in quality["deductions"])
    reasons = " ".join(d["reason"] for d in quality["deductions"])
    assert "training examples" in reasons and "holdout" in reasons


def test_an_empty_export_still_writes_a_report(mw, tmp_path):
    report = mw_export(mw, ExportOptions(out=tmp_path / "e"))
    assert report["counts"]["exported"] == 0 and report["quality"]["score"] < 100
    assert (tmp_path / "e" / "train.jsonl").read_text() == ""
