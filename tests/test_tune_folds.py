"""tune's folds learn from their training examples only: what a domain learns from its examples at load (cue
words, the per-clause bank, the anchored lists, the examples themselves) and the vote judgement never saw the
held-out fold. A tiny domain whose held-out fold alone carries a made-up word ("zorblax") and a step label
("count"), replayed on a scripted model."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from conftest import ROOT, FakeLLM, fake_middleware

from rag_middleware import load_settings
from rag_middleware.learning.fold_domains import FoldDomains
from rag_middleware.learning.tune import TuneOptions, run_tune, split_folds
from rag_middleware.request import retriever as retriever_module
from rag_middleware.request.assembly import Assembler

ITEM = {"type": "object", "properties": {"field": {"enum": ["bedrooms", "price"]}, "op": {"enum": ["eq", "gte", "lt"]},
                                         "value": {"type": "number"}},
        "required": ["field", "op", "value"], "additionalProperties": False}
SCHEMA = {"type": "object", "properties": {
    "kind": {"enum": ["flat", "house", "loft"]},
    "filters": {"type": "array", "items": ITEM},
    "steps": {"type": "array", "items": {"type": "object", "properties": {"type": {"enum": ["find", "sort", "count"]}},
                                         "required": ["type"], "additionalProperties": False}}},
    "required": ["kind", "filters", "steps"], "additionalProperties": False}
DOMAIN_YAML = """\
description: Homes search queries.
output_schema: output.schema.json
ground:
  /filters/*/value: numbers
vote:
  /kind: {k: 3}
  /steps/*/type: {per_clause: true}
"""
IDS = [f"h{i}" for i in range(1, 13)]
FOLDS = split_folds(IDS, folds=3)
HELD = frozenset(FOLDS[0])  # the fold that alone says "zorblax" and alone counts


def f(field: str, op: str, value: int) -> dict:
    return {"field": field, "op": op, "value": value}


def ex(question: str, kind: str, filters: list[dict], steps: str) -> tuple[str, dict]:
    return question, {"kind": kind, "filters": filters, "steps": [{"type": s} for s in steps.split()]}


PLANTED = [
    ex("zorblax lofts with at least 2 bedrooms, then count them", "loft", [f("bedrooms", "gte", 2)], "find count"),
    ex("zorblax lofts under zorblax 900, then count them", "loft", [f("price", "lt", 900)], "find count"),
    ex("lofts with 3 bedrooms", "loft", [f("bedrooms", "eq", 3)], "find"),
    ex("lofts under 2000", "loft", [f("price", "lt", 2000)], "find"),
]
OTHERS = [
    ex("flats with at least 2 bedrooms, then sort them by price", "flat", [f("bedrooms", "gte", 2)], "find sort"),
    ex("houses under 500000", "house", [f("price", "lt", 500000)], "find"),
    ex("flats under 1200 with 1 bedrooms", "flat", [f("price", "lt", 1200), f("bedrooms", "eq", 1)], "find"),
    ex("houses with at least 4 bedrooms, then sort them by price", "house", [f("bedrooms", "gte", 4)], "find sort"),
    ex("flats with 2 bedrooms", "flat", [f("bedrooms", "eq", 2)], "find"),
    ex("houses under 800000 with 3 bedrooms", "house", [f("price", "lt", 800000), f("bedrooms", "eq", 3)], "find"),
    ex("flats under 700, then sort them by price", "flat", [f("price", "lt", 700)], "find sort"),
    ex("houses with 5 bedrooms", "house", [f("bedrooms", "eq", 5)], "find"),
]


def homes(root: Path) -> Path:
    """A project whose knowledge base holds the tiny ``homes`` domain; the fold HELD gets the planted examples."""
    domain = root / "knowledge_base" / "homes"
    domain.mkdir(parents=True)
    (domain / "domain.yaml").write_text(DOMAIN_YAML)
    (domain / "output.schema.json").write_text(json.dumps(SCHEMA))
    planted, others = iter(PLANTED), iter(OTHERS)
    lines = [json.dumps({"id": i, **dict(zip(("question", "answer"), next(planted if i in HELD else others),
                                             strict=True))}) for i in IDS]
    (domain / "examples.jsonl").write_text("\n".join(lines) + "\n")
    shutil.copytree(ROOT / "prompts", root / "prompts")
    return root


def learnt_zorblax(domain) -> dict[str, bool]:
    """Where the planted word and label show in what the domain learnt from its examples."""
    return {
        "examples": any("zorblax" in e.question for e in domain.examples),
        "cues": any("zorblax" in term for terms in domain.cues.values() for term in terms),
        "step_bank": any("zorblax" in text or label == "count" for text, label in domain.step_bank),
        "anchors": any("zorblax" in word for bank in domain.anchors for window, _, _ in bank.windows
                       for word in window),
    }


def test_each_fold_scores_on_a_domain_learnt_without_its_held_out_examples(tmp_path, monkeypatch):
    project = homes(tmp_path)
    settings = load_settings(data_dir=project / "data", knowledge_base=project / "knowledge_base",
                             prompts_dir=project / "prompts")
    prepared: list[tuple[object, frozenset[str]]] = []
    judged: list[set[str]] = []
    prepare, reliability = Assembler.prepare, retriever_module.reliability

    def spy_prepare(self, domain, request, ask, **kw):
        prepared.append((domain, frozenset(ask.exclude_ids or ())))
        return prepare(self, domain, request, ask, **kw)

    def spy_reliability(examples, *args, **kw):
        judged.append({i for i, _, _ in examples})
        return reliability(examples, *args, **kw)

    monkeypatch.setattr(Assembler, "prepare", spy_prepare)
    monkeypatch.setattr(retriever_module, "reliability", spy_reliability)
    mw = fake_middleware(settings, FakeLLM())
    try:
        full = mw.domains.get("homes")
        assert all(learnt_zorblax(full).values())  # the planted data is learnable: a leak would show
        judged.clear()
        result = run_tune(mw, domain="homes", options=TuneOptions(folds=3, budget=12, items=12))
        assert result["folds"] == FOLDS and result["calls"] == 12

        assert Counter(held for _, held in prepared) == {frozenset(fold): len(fold) for fold in FOLDS}
        for domain, held in prepared:
            assert not {e.id for e in domain.examples} & held
            assert {e.id for e in domain.examples} == set(IDS) - held
            assert Path(domain.path).name == "homes"
            learnt = learnt_zorblax(domain)
            if held == HELD:
                assert not any(learnt.values()), learnt  # nothing of the held-out fold was learnt
            else:
                assert all(learnt.values()), learnt  # learnt from the training part, as it should be
        # the vote judgement (leave-one-out on the curated examples) ran per fold, on its training examples
        assert judged and all(ids in [set(IDS) - set(fold) for fold in FOLDS] for ids in judged)
        assert set(IDS) - HELD in judged

        # afterwards the registry serves the domain's own directory, with every example
        assert mw.domains.root == project / "knowledge_base"
        after = mw.domains.get("homes")
        assert after.path == project / "knowledge_base" / "homes" and len(after.examples) == 12
    finally:
        mw.close()


def test_fold_copies_blank_the_held_out_lines_and_are_removed(tmp_path):
    project = homes(tmp_path)
    source = project / "knowledge_base" / "homes"
    folds = FoldDomains(source)
    assert folds.root({"not-a-curated-id"}) is None  # nothing to leave out: the domain's own directory
    root = folds.root(HELD | {"rev-1"})
    assert root is not None and folds.root(set(HELD)) == root  # one copy per held-out set
    copied = (root / "homes" / "examples.jsonl").read_text().splitlines()
    original = (source / "examples.jsonl").read_text().splitlines()
    assert len(copied) == len(original)  # line numbers stay those of the original file
    assert [line for line in copied if line] == [line for line in original if json.loads(line)["id"] not in HELD]
    assert (root / "homes" / "domain.yaml").read_text() == DOMAIN_YAML
    folds.close()
    assert not root.exists()
