"""benchmarks/learning.py without a model: the halves, what the lift runs answer with ``--replay``, the
paraphrase sets, and the labels and JSON of a replay run (the pipeline replaced by a stub)."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import ROOT, HashEmbedder
from rag_middleware import load_settings
from rag_middleware.analytics.evaluation import load_set, question_of

DATA = ROOT / "benchmarks" / "data"


@pytest.fixture(scope="module")
def learning():
    spec = importlib.util.spec_from_file_location("learning_benchmark", ROOT / "benchmarks" / "learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _items(n: int) -> list[dict[str, Any]]:
    return [{"id": f"q{i}", "domain": "d", "question": f"question {i}", "expected": {"x": i}} for i in range(n)]


def test_halves_partition_the_set_by_id(learning):
    items = _items(30)
    a, b = learning.halves(items)
    assert a and b and len(a) + len(b) == 30
    assert {i["id"] for i in a}.isdisjoint(i["id"] for i in b)
    assert learning.halves(list(reversed(items)))[0] == list(reversed(a))  # by id, not by position


def test_without_replay_the_lift_answers_half_b(learning):
    items = _items(20)
    a, b = learning.halves(items)
    assert learning.lift_items(items) == ("B", [(a, b)])


def test_both_halves_answer_each_half_with_the_other_reviewed(learning):
    items = _items(20)
    a, b = learning.halves(items)
    assert learning.lift_items(items, both=True) == ("A+B", [(a, b), (b, a)])


def test_replay_answers_its_items_with_half_a_still_reviewed(learning):
    items = _items(20)
    a, _ = learning.halves(items)
    replay = [{**i, "id": i["id"] + "-para", "question": "reworded " + i["question"]} for i in a]
    who, folds = learning.lift_items(items, replay)
    assert who == "paraphrases" and folds == [(a, replay)]


def test_a_replayed_item_is_never_its_own_memory(learning):
    items = _items(20)
    a, _ = learning.halves(items)
    with pytest.raises(SystemExit, match=a[0]["id"]):
        learning.lift_items(items, [a[0]])


@pytest.mark.parametrize("domain", ["claims_intake", "listing_search"])
def test_paraphrase_sets_cover_half_a_with_the_same_answers(learning, domain):
    dev = load_set(DATA / f"{domain}_dev.jsonl", domain=domain)
    para = load_set(DATA / f"{domain}_para.jsonl", domain=domain)
    a, _ = learning.halves(dev)
    by_id = {i["id"]: i for i in a}
    assert sorted(p["id"] for p in para) == sorted(f"{i}-para" for i in by_id)
    for p in para:
        original = by_id[p["id"].removesuffix("-para")]
        assert set(p) == set(original) and p["domain"] == domain
        assert p["expected"] == original["expected"]
        assert question_of(p).strip() and question_of(p) != question_of(original)
    learning.lift_items(dev, para)  # no id of half A replayed


def test_closeness_counts_near_identical_questions(learning):
    mw = SimpleNamespace(embedder=HashEmbedder(), settings=load_settings(None))
    reviewed = [{"id": "a", "question": "my van was stolen overnight"}, {"id": "b", "question": "cat ate a lily"}]
    answered = [{"id": "a-para", "question": "my van was stolen overnight"},
                {"id": "x", "question": "flooded engine will not start"}]
    close = learning.closeness(mw, reviewed, answered)
    assert close["reaching"] == 1 and close["near_identical"] == mw.settings.selection.near_identical
    assert close["best_cosine"]["a-para"] == pytest.approx(1.0, abs=1e-3) and close["best_cosine"]["x"] < 0.9


def _main(learning, monkeypatch, tmp_path, items, replay=None, extra=()):
    """Run main() with the pipeline stubbed: answers are right only with A reviewed. (labels, ids, result).
    The items are written to two set files, pooled by ``--set``."""
    (tmp_path / "set.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items[:5]), encoding="utf-8")
    (tmp_path / "set2.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items[5:]), encoding="utf-8")
    argv = ["learning.py", "--domain", "d", "--set", str(tmp_path / "set.jsonl"), str(tmp_path / "set2.jsonl"),
            "--skip-drift", "--out", str(tmp_path / "out"), *extra]
    if replay is not None:
        (tmp_path / "para.jsonl").write_text("".join(json.dumps(i) + "\n" for i in replay), encoding="utf-8")
        argv += ["--replay", str(tmp_path / "para.jsonl")]
    seen: dict[str, list[str]] = {}
    imported: list[list[str]] = []

    def fake_run(label, run_items, *, learn, mode, progress, prepare=None):
        if prepare is not None:
            store = SimpleNamespace(upsert=lambda records, vectors: imported.append([r.question for r in records]))
            prepare(SimpleNamespace(embedder=HashEmbedder(), settings=load_settings(None), store=store))
        seen.setdefault(label, []).extend(i["id"] for i in run_items)
        good = prepare is not None
        return [{"id": i["id"], "fields": {"x": good}, "exact": good, "valid": True, "attempts": 1,
                 "latency_ms": 1.0} for i in run_items]

    monkeypatch.setattr(learning, "run", fake_run)
    monkeypatch.setattr(learning, "chart", lambda *a, **k: None)
    monkeypatch.setattr(sys, "argv", argv)
    learning.main()
    result = json.loads(next((tmp_path / "out").glob("learning-d-*.json")).read_text(encoding="utf-8"))
    return seen, imported, result


def test_replay_run_is_labelled_and_recorded(learning, monkeypatch, tmp_path):
    items = _items(12)
    a, _ = learning.halves(items)
    replay = [{**i, "id": i["id"] + "-para", "question": "please: " + i["question"]} for i in a]
    seen, imported, result = _main(learning, monkeypatch, tmp_path, items, replay)
    assert list(seen) == ["paraphrases, empty memory", "paraphrases, A reviewed"]
    assert all(ids == [r["id"] for r in replay] for ids in seen.values())
    assert imported == [[i["question"] for i in a]]
    assert result["lift"] == 1.0 and result["replay"] == {"set": str(tmp_path / "para.jsonl"), "n": len(replay)}
    assert set(result["summaries"]) == set(seen)
    assert set(result["closeness"]["best_cosine"]) == {r["id"] for r in replay}


def test_without_replay_the_run_is_unchanged(learning, monkeypatch, tmp_path):
    items = _items(12)
    a, b = learning.halves(items)
    seen, imported, result = _main(learning, monkeypatch, tmp_path, items)
    assert seen == {"B, empty memory": [i["id"] for i in b], "B, A reviewed": [i["id"] for i in b]}
    assert imported == [[i["question"] for i in a]]
    assert (result["half_a"], result["half_b"], result["lift"], result["folds"]) == (len(a), len(b), 1.0, 1)
    assert "replay" not in result and set(result["closeness"]["best_cosine"]) == {i["id"] for i in b}
    assert result["set"] == [str(tmp_path / "set.jsonl"), str(tmp_path / "set2.jsonl")]


def test_both_halves_score_every_item_once_per_run(learning, monkeypatch, tmp_path):
    items = _items(12)
    a, b = learning.halves(items)
    seen, imported, result = _main(learning, monkeypatch, tmp_path, items, extra=["--both-halves"])
    order = [i["id"] for i in b + a]
    assert seen == {"A+B, empty memory": order, "A+B, other half reviewed": order}
    assert imported == [[i["question"] for i in a], [i["question"] for i in b]]  # each fold its own memory
    assert result["folds"] == 2 and result["lift"] == 1.0
    assert set(result["closeness"]["best_cosine"]) == set(order)
