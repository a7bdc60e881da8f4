"""Clause rules are matched part by part (static parts compiled once): the same decisions as the whole pattern."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from rag_middleware.domains.clauses import rule_parts, yaml_rule
from rag_middleware.domains.grounding import compiled, gate
from rag_middleware.domains.loader import load_domain
from rag_middleware.domains.rule_match import expand

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("pattern", "parts"), [
    (r"^(?=a)(?!b)c", ["(?=a)", "(?!b)", "c"]),
    (r"^(?=.*\b{columns}\b)(?:use|with)\s+x$", [r"(?:use|with)\s+x$", r"(?=.*\b{columns}\b)"]),  # static first
    (r"^(?!x)(?=y).*\b{columns}\b", ["(?!x)", "(?=y)", r".*\b{columns}\b"]),
    (r"^(?=[(])\(", ["(?=[(])", r"\("]),  # a paren in a class or escaped is no group
    (r"^(?=[]a)])b", ["(?=[]a)])", "b"]),  # a ] first in a class is a literal
    (r"^(?=a)", ["(?=a)"]),
    (r"^(?<!a)b", ["(?<!a)", "b"]),
    (r"^(?=a)b|c", [r"^(?=a)b|c"]),  # ^ binds to the first alternative only
    (r"^(?=(a))\1", [r"^(?=(a))\1"]),  # a backreference into another part
    (r"^(?=a)?b", [r"^(?=a)?b"]),  # a repeated lookaround
    (r"(?=a)b", [r"(?=a)b"]),  # not anchored
    (r"^ab", [r"^ab"]),  # no lookaround
    (r"^(?=a)(?#x)b", [r"^(?=a)(?#x)b"]),
    (r"\bword\b", [r"\bword\b"]),
])
def test_rule_parts(pattern, parts):
    assert rule_parts(pattern) == parts


def test_hand_made_rules_decide_as_the_whole_pattern():
    rules = [SimpleNamespace(pattern=r"^(?=.*\b{columns}\b)(?:please\s+)?(?:use|with)\s+(?:the\s+)?[\w ]{1,40}?$",
                             label="none"),
             SimpleNamespace(pattern=r"^(?=.*\b(?:drop|remove)\b)(?=.*\b(?:missing|empty)\b).*\b{columns}\b",
                             label="drop_missing"),
             SimpleNamespace(pattern=r"^(?!.*\bmissing\b)(?:drop|remove)\s+(?:the\s+)?{columns}$", label="drop_column"),
             SimpleNamespace(pattern=r"^(?=a)b|(?i:z)", label="alt"),
             SimpleNamespace(pattern=r"^sort(?!.*\b{columns}\b)", label="sort_unnamed"),  # no gate: negated
             SimpleNamespace(pattern=r"\bby\s+{columns}\s+first\b", label="by_first")]  # gated
    context = {"columns": ["unit_price", "email"]}
    rule = yaml_rule(rules, None, context_of=lambda request: context)
    clauses = ["use the unit price", "please with email", "use the weight", "remove rows with missing email",
               "remove rows with missing weight", "drop the email", "drop the missing email", "Z", "ab", "b",
               "Drop Unit_Price", "with", "sort it", "sort by email", "sort by weight", "order by email first",
               "by UNIT PRICE first", "by weight first", "by  email first"]
    for clause in clauses:
        whole = next((s.label for s in rules if re.search(expand(s.pattern, context), clause, re.I)), None)
        assert rule(clause, "r") == ([whole] if whole else None), clause


def _requests() -> list[str]:
    out = [json.loads(line)["question"] for line in
           (ROOT / "knowledge_base" / "data_ops" / "examples.jsonl").read_text(encoding="utf-8").splitlines()
           if line.strip()]
    for name in ("data_ops_dev.jsonl", "data_ops_fresh.jsonl"):
        path = ROOT / "benchmarks" / "data" / name
        if path.exists():
            out += [json.loads(line)["messages"][-1]["content"] for line in
                    path.read_text(encoding="utf-8").splitlines() if line.strip()]
    columns = "Columns: order_id, email, unit_price, region, signup_date"
    out += [f"{columns}\n{text}" for text in (
        "use the email column", "drop the unit_price column", "remove rows with a missing email",
        "Take out unit price", "drop rows where region is blank then use region", "with signup_date",
        "Please remove the email field first", "delete missing values in unit_price", "skip empty region rows")]
    return out


def test_a_rule_gate_vouches_only_for_a_context_in_plain_sight():
    fill = r"(?:[\s\S]+?)"
    assert gate(r"\bby\s+{columns}\s+first\b", fill, "{columns}", re.I).search("By Anything First")
    for pattern in (r"^sort(?!.*\b{columns}\b)", r"(?<!{columns})x", r"[{columns}]", r"{columns}+",
                    r"{columns}|{columns}", r"(?i){columns}", r"(?>{columns})x", r"(?#{columns}"):
        assert gate(pattern, fill, "{columns}", re.I) is None, pattern


def test_data_ops_rules_decide_as_their_whole_patterns():
    """Every clause rule of data_ops, on every clause of its examples and dev sets: each rule on its own
    matches exactly when its whole expanded pattern is found in the clause."""
    domain = load_domain(ROOT / "knowledge_base" / "data_ops")
    [vspec] = [v for v in domain.declarative.spec.vote.values() if v.per_clause]
    split = [r for r in vspec.rules if len(rule_parts(r.pattern)) > 1]
    assert len(split) >= 3  # the rules with a leading lookaround, {columns} ones among them
    singles = [(spec, yaml_rule([spec], None, context_of=domain.declarative.context)) for spec in vspec.rules]
    matched = checked = 0
    for request in _requests():
        context = domain.declarative.context(request)
        for clause in domain.split(request):
            for spec, rule in singles:
                whole = compiled(expand(spec.pattern, context), re.I).search(clause) is not None
                assert (rule(clause, request) is not None) == whole, (spec.pattern[:60], clause)
                matched += whole and spec in split
                checked += 1
    assert checked > 1000 and matched >= 20


def test_a_request_is_split_and_ruled_once_for_pending_and_vote():
    from rag_middleware.domains.clauses import RECENT_REQUESTS, StepGuide, StepSpec

    from test_clauses import TableEmbedder

    calls = []

    def rule(clause, request):
        calls.append(clause)
        return ["top_n"] if clause.startswith("top") else None

    guide = StepGuide(StepSpec(split="x.py:split"), [("q", "sort")], lambda r: r.split(" then "),
                      TableEmbedder({"q": 0}), rule=rule)
    assert guide.pending("top 3 then q") == ["q"]
    assert [v.labels for v in guide.vote("top 3 then q")] == [["top_n"], ["sort"]]
    assert calls == ["top 3", "q"]
    for i in range(RECENT_REQUESTS + 1):  # only the last few requests are kept
        guide.pending(f"q{i}")
    guide.pending("top 3 then q")
    assert calls[-2:] == ["top 3", "q"] and len(calls) == 2 + RECENT_REQUESTS + 1 + 2
