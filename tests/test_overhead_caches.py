"""The per-request shortcuts give what the plain computation gives: cues (a value-free gate compiled once per
cue, values the text never writes left out of the alternation), whole-word mentions (a string scan), the
data_ops grammar (built new each call, no deep copy), rule patterns narrowed to the values a text writes, stored
answers parsed once, and routing (a request that names its tenant is kept)."""

from __future__ import annotations

import json
import random
import re

import pytest

from rag_middleware.domains import DomainRegistry, grounding
from rag_middleware.domains.grounding import cued, mentioned
from rag_middleware.domains.rule_match import expand
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


RULES = [r"^(?=.*\b{columns}\b)(?:use|with)\s+[\w ]{1,40}?$", r"(?!.*\b{columns}\b)^sort", r"{columns}|{other}",
         r"\bby {columns}\b", r"(?:missing|blank).*\b{columns}\b", r"{none}"]


def test_a_rule_narrowed_to_the_values_a_text_writes_finds_what_the_whole_rule_finds():
    rnd = random.Random(3)
    for _ in range(800):
        context = {"columns": rnd.sample(COLUMNS + ["\u00e9t\u00e9", "Stra\u00dfe"], rnd.randint(0, 6)),
                   "other": rnd.sample(COLUMNS, rnd.randint(0, 2)), "none": []}
        text = " ".join(rnd.choice(WORDS + COLUMNS + ["use", "with", "sort", "\u00e9t\u00e9", "STRASSE"])
                        for _ in range(rnd.randint(0, 12)))
        for rule in RULES:
            whole, narrowed = expand(rule, context), expand(rule, context, text)
            assert len(narrowed) <= len(whole)
            for start in range(0, len(text) + 1, 3):  # search and match, as the clause rules use them
                assert bool(re.search(whole, text[start:], re.I)) == bool(re.search(narrowed, text[start:], re.I))
                assert bool(re.match(whole, text, re.I)) == bool(re.match(narrowed, text, re.I))


def test_a_narrowed_rule_is_the_same_for_texts_naming_the_same_values():
    context = {"columns": ["region", "sales", "store_id", "order_date", "qty"]}
    rule = r"\bby {columns}\b"
    first = expand(rule, context, "Total sales by region, newest first")
    assert first == expand(rule, context, "sort by REGION, sum the sales") == r"\bby (?:region|sales)\b"
    assert expand(rule, context, "nothing named") == r"\bby (?!)\b"
    assert expand(rule, context, "by store id") == r"\bby (?:store\ id)\b"  # the spaced form counts as written


def test_a_stored_answer_is_parsed_once_into_its_value_and_texts():
    stored = json.dumps({"task": "aggregate", "chart_type": "none", "operations": [
        {"type": "group_by", "execution_instructions": {"method": "groupby", "args": [["region"]],
                                                        "kwargs": {"sales": "sum"}}}]})
    value, shown, full = DATA_OPS.stored_forms(stored)
    assert value == json.loads(stored) and json.loads(full) == value
    assert "task" not in json.loads(shown) and json.loads(shown) == DATA_OPS.declarative.for_display(value)
    assert (shown, full) == (DATA_OPS.answer_text(stored), DATA_OPS.answer_text(stored, hide_derived=False))
    assert shown == DATA_OPS.answer_text(value) and full == DATA_OPS.answer_text(value, hide_derived=False)
    value["operations"].clear()  # the caller's own copy: the next read is not changed by it
    again, shown_again, _ = DATA_OPS.stored_forms(stored)
    assert again == json.loads(stored) and shown_again == shown and again is not value
    assert DATA_OPS.stored_forms("not json") == (None, "not json", "not json")


def test_hiding_derived_fields_edits_only_an_owned_answer():
    answer = {"task": "aggregate", "chart_type": "none", "operations": []}
    kept = DATA_OPS.declarative.for_display(answer)
    assert "task" in answer and "task" not in kept
    assert DATA_OPS.declarative.for_display(answer, owned=True) is answer and "task" not in answer
