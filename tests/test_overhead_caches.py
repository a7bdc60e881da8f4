"""The per-request shortcuts give what the plain computation gives: cues (a value-free gate compiled once per
cue, values the text never writes left out of the alternation), whole-word mentions (a string scan), the
data_ops grammar (built new each call, no deep copy) and routing (a request that names its tenant is kept)."""

from __future__ import annotations

import json
import random
import re

import pytest

from rag_middleware.domains import DomainRegistry, grounding
from rag_middleware.domains.grounding import cued, mentioned
from tests.conftest import ROOT

DATA_OPS = DomainRegistry(ROOT / "knowledge_base").get("data_ops")
CUES = [c for spec in DATA_OPS.declarative.spec.context.values() for c in spec.cues or []]


def cued_plainly(values: list[str], body: str, cues: list[str]) -> list[str]:
    """cued as it was: every value in the alternation, every cue compiled."""
    forms: dict[str, str] = {}
    for v in values:
        for form in (v.lower(), v.lower().replace("_", " ")):
            forms.setdefault(form, v)
    if not forms:
        return []
    alt = "(?P<value>" + "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)) + ")(?![a-z0-9_])"
    low = body.lower()
    found = {forms[m.group("value")] for cue in cues for m in re.compile(cue.replace("{value}", alt)).finditer(low)}
    return [v for v in values if v in found]


def mentioned_plainly(values: list[str], body: str) -> list[str]:
    low_body = body.lower()
    words = set(re.findall(r"[a-z0-9]{3,}", low_body))
    named = []
    for value in values:
        low = value.lower().strip()
        forms = {low, low.replace("_", " ")}
        as_written = any(f and re.search(rf"(?<![a-z0-9_]){re.escape(f)}(?![a-z0-9_])", low_body) for f in forms)
        if as_written or (len(low) >= 3 and re.fullmatch(r"[a-z0-9]+", low)
                          and any(grounding._abbreviates(low, w) for w in words)):
            named.append(value)
    return named


# cues the gate must not read (value in a negative lookaround, any case, an atomic group) and ones it may
ODD_CUES = [r"(?<!not )by {value}", r"(?!no ){value}\s+first", r"(?i)BY {value}", r"{value}", r"(?>by\s+{value})",
            r"(?:the\s+)?{value}\s+(?:by|per)\b", r"(?=[^.]*\btotal\b)\bof\s+{value}"]
COLUMNS = ["sales", "region", "qty", "qty_on_hand", "on_hand", "store", "Store_ID", "a", "hand", "by", "order", "K"]
WORDS = ["by", "per", "each", "the", "total", "sort", "order", "ascending", "missing", "no", "of", "sum", "on hand",
         ",", ".", "\n", "-", "KELVIN", "\u017f"]


def test_cued_equals_the_plain_computation_on_random_requests():
    rnd = random.Random(11)
    for _ in range(600):
        values = rnd.sample(COLUMNS, rnd.randint(0, 6))
        body = " ".join(rnd.choice(WORDS + values + [v.replace("_", " ") for v in values])
                        for _ in range(rnd.randint(0, 20)))
        cues = rnd.sample(CUES + ODD_CUES, rnd.randint(1, 4))
        assert cued(values, body, cues) == cued_plainly(values, body, cues), (values, body, cues)


def test_a_cached_cue_answers_for_its_own_cues_and_values():
    body = "sort stores by sales, then the total revenue per region"
    group, key = (DATA_OPS.declarative.spec.context[n].cues for n in ("group_columns", "key_columns"))
    columns = ["store", "sales", "revenue", "region"]
    for _ in range(2):  # the second round reads the caches
        assert cued(columns, body, group) == ["region"]
        assert cued(columns, body, key) == ["sales"]
        assert cued(["sales"], body, group) == []
        assert cued(["store", "region"], body, key) == []
    assert cued(["qty_on_hand", "qty"], "rank by qty on hand", key) == ["qty_on_hand"]  # the longest form wins
    assert cued(["qty"], "rank by qty on hand", key) == ["qty"]


def test_the_gate_reads_only_cues_it_can_vouch_for():
    assert all(grounding._gate(cue, 16) is not None for cue in CUES)
    for cue in (r"(?!by {value})x", r"(?i)by {value}", r"(?>by\s+{value})", r"by\s++{value}", r"(?x) by \s {value}",
                r"(?#[)(?!]{value})", r"by {value}|{value} first", r"by {value}?"):
        assert grounding._gate(cue, 16) is None, cue


def test_mentioned_equals_the_plain_computation():
    rnd = random.Random(5)
    values = ["sales", "Region", "qty_on_hand", " store ", "store id", "x.y", "a+b", "", "_", "\u00e9_1"]
    words = ["by", "x.y", "a+b", "sales2", "_sales", "region_", "\u00e9 1", "qty on hand", ",", "\n", " ", ""]
    for _ in range(600):
        chosen = rnd.sample(values, rnd.randint(0, 5))
        body = "".join(rnd.choice(words + chosen) for _ in range(rnd.randint(0, 20)))
        assert mentioned(chosen, body) == mentioned_plainly(chosen, body), (chosen, body)


def _containers(node, out):
    if isinstance(node, dict | list):
        out.append(node)
        for child in node.values() if isinstance(node, dict) else node:
            _containers(child, out)
    return out


def test_the_data_ops_grammar_is_new_each_call_and_shares_nothing():
    hook = DATA_OPS.validator.grammar
    context = DATA_OPS.validator.context("Columns: region, sales, store_id\nTotal sales per region.")
    first, second = hook(context), hook(context)
    assert first == second and json.loads(json.dumps(first)) == first
    ids = [id(c) for c in _containers(first, [])]
    assert len(ids) == len(set(ids))  # no container twice within one grammar
    assert not set(ids) & {id(c) for c in _containers(second, [])}
    for node in _containers(first, []):  # an edit of one grammar reaches no other, nor the module's tables
        if isinstance(node, list):
            node.append("edited")
        else:
            node["edited"] = True
    assert hook(context) == second


@pytest.mark.parametrize("tenant", [None, "acme"])
def test_route_resolves_the_tenant_and_keeps_a_resolved_request(mw, tenant):
    from rag_middleware.request.ask import AskRequest

    ask = AskRequest.of("Columns: a, b\nSort by a.", domain="data_ops", tenant=tenant)
    route = mw.router.route(ask)
    assert route.tenant == (tenant or mw.settings.default_tenant)
    assert route.ask.model_dump() == ask.model_copy(update={"tenant": route.tenant}).model_dump()
    assert mw.router.route(route.ask).ask is route.ask
