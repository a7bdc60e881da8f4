"""Step guidance (domains/clauses.py) on hand-made vectors: the vote's k, margin, max_labels and similarity
floor, rules, the bank file, the default splitter, yaml rules and labels learned from examples. Fast: the
mutation target's test set for clauses.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from rag_middleware.domains.clauses import (
    StepGuide,
    StepSpec,
    default_split,
    example_clauses,
    path_labels,
    read_bank,
    yaml_rule,
)
from rag_middleware.errors import DomainError
from rag_middleware.memory.embedding import CachedEmbedder


class TableEmbedder:
    """Each known text has a fixed 2-D direction (angle in degrees); anything else points at 90 degrees."""

    name = "table"
    dim = 2

    def __init__(self, angles: dict[str, float]) -> None:
        self.angles = angles
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        rad = [np.deg2rad(self.angles.get(t, 90.0)) for t in texts]
        return np.array([[np.cos(a), np.sin(a)] for a in rad], dtype=np.float32).reshape(len(texts), 2)


def spec(**kw) -> StepSpec:
    return StepSpec(**{"split": "x.py:split", "k": 3, "margin": 0.9, "max_labels": 2, "min_similarity": 0.3, **kw})


def split(request: str) -> list[str]:
    return [c.strip() for c in request.split(" then ")]


# cos(0) = 1, cos(10) = .985, cos(20) = .940, cos(30) = .866, cos(80) = .174
BANK = [("s0", "sort"), ("s10", "sort"), ("f20", "filter"), ("g30", "group"), ("n80", "none")]
ANGLES = {"s0": 0, "s10": 10, "f20": 20, "g30": 30, "n80": 80, "q": 0, "far": 90, "chart": 80, "mid": 22}


def guide(bank=BANK, rule=None, **kw) -> tuple[StepGuide, TableEmbedder]:
    inner = TableEmbedder(ANGLES)
    return StepGuide(spec(**kw), bank, split, CachedEmbedder(inner), rule=rule), inner


def test_the_vote_sums_the_top_k_by_label_and_keeps_those_within_the_margin():
    g, _ = guide(k=3, margin=0.45)
    [vote] = g.vote("q")
    # top 3 of q (0 deg): s0 1.0, s10 .985, f20 .940 -> sort 1.985, filter .940 (>= .45 * 1.985)
    assert vote.clause == "q" and vote.labels == ["sort", "filter"]
    assert vote.scores == {"sort": pytest.approx(1.985, abs=1e-3), "filter": pytest.approx(0.94, abs=1e-3)}
    g, _ = guide(k=3, margin=0.9)
    assert g.vote("q")[0].labels == ["sort"]  # .940 < .9 * 1.985
    g, _ = guide(k=1, margin=0.1)
    assert g.vote("q")[0].labels == ["sort"] and g.vote("q")[0].scores == {"sort": pytest.approx(1.0)}
    g, _ = guide(k=4, margin=0.1, max_labels=2)
    assert g.vote("q")[0].labels == ["sort", "filter"]  # group also passes the margin: cut at max_labels
    g, _ = guide(k=4, margin=0.1, max_labels=3)
    assert g.vote("q")[0].labels == ["sort", "filter", "group"]


def test_a_label_exactly_at_the_margin_is_kept():
    bank = [("s0", "sort"), ("s0b", "filter")]
    inner = TableEmbedder({**ANGLES, "s0b": 0})
    g = StepGuide(spec(k=2, margin=1.0), bank, split, CachedEmbedder(inner))
    assert sorted(g.vote("q")[0].labels) == ["filter", "sort"]  # equal scores: both at 1.0 x best


def test_a_clause_below_the_floor_gets_no_labels_and_makes_the_plan_unguided():
    g, _ = guide(min_similarity=0.3)
    [vote] = g.vote("far")  # 90 deg: best is n80 at cos(10) = .985 -- so use a floor above it
    assert vote.labels
    g, _ = guide(min_similarity=0.99)
    [vote] = g.vote("far")
    assert vote.labels == [] and vote.scores == {}
    assert g.steps("q then far") == []
    g, _ = guide(min_similarity=0.985)  # cos(10 deg) = .98481: just below the floor
    assert g.vote("far")[0].labels == []
    g, _ = guide(min_similarity=0.9848)
    assert g.vote("far")[0].labels == ["none"]


def test_steps_skip_none_clauses_and_keep_request_order():
    g, _ = guide(k=1)
    assert g.steps("q then chart then mid") == [["sort"], ["filter"]]  # chart -> none; mid (22) -> f20
    assert g.steps("chart") == []


def test_none_among_several_labels_is_dropped_from_the_step():
    bank = [("a", "none"), ("b", "sort")]
    inner = TableEmbedder({"a": 0, "b": 5, "q": 0})
    g = StepGuide(spec(k=2, margin=0.5), bank, split, CachedEmbedder(inner))
    assert g.vote("q")[0].labels == ["none", "sort"]
    assert g.steps("q") == []  # led by none: no step
    inner = TableEmbedder({"a": 5, "b": 0, "q": 0})
    g = StepGuide(spec(k=2, margin=0.5), bank, split, CachedEmbedder(inner))
    assert g.steps("q") == [["sort"]]


def test_rules_decide_outright_and_are_not_embedded():
    g, inner = guide(rule=lambda clause, request: ["top_n"] if clause.startswith("top") else None)
    assert g.pending("top 3 then q") == ["q"]
    votes = g.vote("top 3 then q")
    assert votes[0].labels == ["top_n"] and votes[0].scores == {"rule": 1.0}
    assert votes[1].labels == ["sort"]
    assert all("top 3" not in call for call in inner.calls)
    g, _ = guide(rule=lambda clause, request: [])  # an empty answer is no decision: the vote decides
    assert g.vote("q")[0].labels == ["sort"]


def test_given_vectors_are_used_and_the_bank_is_embedded_once():
    g, inner = guide()
    vectors = {"q": np.array([0.0, 1.0], dtype=np.float32)}  # pretend q points at 90 degrees
    assert g.vote("q", vectors)[0].labels == ["none"]
    g.vote("q")
    g.vote("mid")
    bank_calls = [c for c in inner.calls if c == [t for t, _ in BANK]]
    assert len(bank_calls) == 1


def test_no_bank_or_no_clauses_means_no_guidance():
    g, _ = guide(bank=[])
    assert g.vote("q") == [] and g.steps("q") == [] and g.pending("q") == []
    g, _ = guide()
    assert g.vote(" then ") == [] and g.pending("q then q") == ["q", "q"]


def test_read_bank(tmp_path):
    path = tmp_path / "steps.jsonl"
    path.write_text('{"text": "sort it", "label": "sort"}\n\n{"text": 3, "label": "x"}\n', encoding="utf-8")
    assert read_bank(path) == [("sort it", "sort"), ("3", "x")]
    path.write_text('{"text": "a", "label": "b"}\n{"text": "no label"}\n', encoding="utf-8")
    with pytest.raises(DomainError, match="each line needs text and label") as info:
        read_bank(path)
    assert info.value.line == 2
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(DomainError) as info:
        read_bank(path)
    assert info.value.line == 1
    with pytest.raises(DomainError, match="not found"):
        read_bank(tmp_path / "missing.jsonl")


@pytest.mark.parametrize(("request_", "clauses"), [
    ("sort by a. Filter b", ["sort by a", "Filter b"]),
    ("sort by a then filter b and then drop c", ["sort by a", "filter b", "drop c"]),
    ("sort by a, and group by b", ["sort by a", "group by b"]),
    ("sort by a, finally drop c", ["sort by a", "finally drop c"]),
    ("sort by a after that drop c", ["sort by a", "drop c"]),
    ("line one\nline two;", ["line one", "line two"]),
    ("keep a and b", ["keep a and b"]),  # a plain 'and' is not a joint
    ("sort by a, And Then filter", ["sort by a", "filter"]),
])
def test_default_split(request_, clauses):
    assert default_split(request_) == clauses


def test_yaml_rule_patterns_contexts_and_hook():
    rules = [SimpleNamespace(pattern=r"\btop\b", label="top_n"), SimpleNamespace(pattern=r"by {columns}", label="sort")]
    hook_calls = []

    def hook(clause, request):
        hook_calls.append(clause)
        return ["hooked"]

    rule = yaml_rule(rules, hook, context_of=lambda request: {"columns": ["unit_price"]})
    assert rule("TOP 3", "r") == ["top_n"]
    assert rule("order by unit price", "r") == ["sort"]
    assert hook_calls == []
    assert rule("something else", "r") == ["hooked"] and hook_calls == ["something else"]
    assert yaml_rule(rules, None)("nothing", "r") is None
    assert yaml_rule(rules, None)("by x", "r") is None  # {columns} without a context matches nothing literal
    assert yaml_rule([], hook) is hook and yaml_rule([], None) is None


def test_path_labels_and_example_clauses():
    labels = path_labels(("ops", "*", "type"))
    assert labels({"ops": [{"type": "sort"}, {"type": 3}]}) == ["sort", "3"]
    assert labels({}) == []
    examples = [SimpleNamespace(question="a then b", answer={"ops": [{"type": "x"}, {"type": "y"}]}),
                SimpleNamespace(question="a then b then c", answer={"ops": [{"type": "x"}]}),  # counts differ
                SimpleNamespace(question="", answer={"ops": []})]
    assert example_clauses(examples, split, labels) == [("a", "x"), ("b", "y")]


def test_step_spec_bounds():
    assert spec().bank == "steps.jsonl"
    with pytest.raises(ValueError):
        spec(k=0)
    with pytest.raises(ValueError):
        spec(margin=0.0)
    with pytest.raises(ValueError):
        spec(max_labels=6)
    with pytest.raises(ValueError):
        StepSpec(split="x.py:f", unknown=1)


def test_the_floor_and_rounding_are_exact():
    g, _ = guide(k=2, min_similarity=1.0)  # q and s0 point the same way: cosine exactly 1.0, at the floor
    [vote] = g.vote("q")
    assert vote.labels == ["sort"]
    assert vote.scores == {"sort": round(1.0 + float(np.float32(np.cos(np.deg2rad(10)))), 3)}
    g, _ = guide(min_similarity=0.99)
    assert [v.labels for v in g.vote("far then q")] == [[], ["sort"]]  # the clause after a weak one is voted too


def test_steps_keep_every_allowed_label_and_use_given_vectors():
    g, _ = guide(k=3, margin=0.45)
    assert g.steps("q") == [["sort", "filter"]]
    g, _ = guide(k=1)
    twenty = np.array([np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))], dtype=np.float32)
    assert g.steps("q", {"q": twenty}) == [["filter"]]


def test_the_rule_and_the_context_see_the_request():
    seen = []
    g, _ = guide(rule=lambda clause, request: seen.append(request) or None)
    g.vote("q then mid")
    assert seen == ["q then mid", "q then mid"]
    calls = []
    rule = yaml_rule([SimpleNamespace(pattern="zz", label="x")], lambda clause, request: calls.append(request),
                     context_of=lambda request: calls.append(("ctx", request)) or {})
    rule("clause", "the request")
    assert calls == [("ctx", "the request"), "the request"]


def test_default_split_drops_empty_pieces_and_strips_only_punctuation():
    assert default_split(" ; ") == []
    assert default_split("a;\n,") == ["a"]
    assert default_split("Sort by X then drop X.") == ["Sort by X", "drop X"]


def test_bank_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(DomainError) as info:
        read_bank(missing)
    assert info.value.path == str(missing) and "steps bank not found" in str(info.value)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n', encoding="utf-8")
    with pytest.raises(DomainError) as info:
        read_bank(bad)
    assert info.value.path == str(bad) and info.value.line == 1
    assert "each line needs text and label (KeyError)" in str(info.value)
