"""The learning loop's core: the learn policy, overrides in the data dir, inference from examples, confidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_middleware.config import load_settings
from rag_middleware.request.confidence import confidence
from rag_middleware.domains import DomainRegistry, load_domain
from rag_middleware.domains.overrides import OverrideStore
from rag_middleware.errors import ConfigError

SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["category", "team", "urgent", "order_id", "minutes"],
    "properties": {
        "category": {"enum": ["billing", "bug", "account"]},
        "team": {"enum": ["payments", "engineering", "identity"]},
        "urgent": {"type": "boolean"},
        "order_id": {"type": ["string", "null"], "pattern": "^ORD-[0-9]{4}$"},
        "minutes": {"type": ["integer", "null"]},
    },
}
RIGHT = {"category": "billing", "team": "payments", "urgent": False, "order_id": "ORD-1111", "minutes": None}
TEAM = {"billing": "payments", "bug": "engineering", "account": "identity"}
QUESTIONS = [
    ("billing", "I was charged twice for ORD-1234 in the last hour", "ORD-1234", 60),
    ("billing", "Refund please, the invoice is wrong, order ORD-2222, 2 hours ago", "ORD-2222", 120),
    ("bug", "The app crashes when I open settings since 30 minutes", None, 30),
    ("bug", "Button does nothing on checkout ORD-3333 for the last day", "ORD-3333", 1440),
    ("account", "I cannot log in, password reset mail never came, waited 45 minutes", None, 45),
    ("account", "Please change the email on my profile, tried for 3 hours", None, 180),
]


def make_domain(root: Path, *, extra_yaml: str = "") -> Path:
    d = root / "tickets"
    d.mkdir(parents=True)
    (d / "domain.yaml").write_text("description: Route a support ticket.\noutput_schema: schema.json\n" + extra_yaml)
    (d / "schema.json").write_text(json.dumps(SCHEMA))
    lines = []
    for i, (cat, q, oid, minutes) in enumerate(QUESTIONS):
        answer = {"category": cat, "team": TEAM[cat], "urgent": i % 2 == 0, "order_id": oid, "minutes": minutes}
        lines.append(json.dumps({"id": f"e{i}", "question": q, "answer": answer}))
    (d / "examples.jsonl").write_text("\n".join(lines) + "\n")
    return d


def test_learn_policy_maps_the_old_booleans(tmp_path):
    assert load_settings(None, data_dir=tmp_path).learn == "reviewed"
    assert load_settings(None, data_dir=tmp_path, learn=True).learn == "reviewed"
    assert load_settings(None, data_dir=tmp_path, learn=False).learn == "off"
    assert load_settings(None, data_dir=tmp_path, learn="all").learn == "all"
    with pytest.raises(ConfigError):
        load_settings(None, data_dir=tmp_path, learn="sometimes")


def test_inference_reads_the_map_the_numbers_and_the_votes_off_the_examples(tmp_path):
    domain = load_domain(make_domain(tmp_path))
    assert "/team: derived from /category (the examples follow one map)" in domain.inferred
    assert "/minutes: grounded in the request's numbers (time units)" in domain.inferred
    assert "/category: voted by the nearest examples" in domain.inferred
    assert "/urgent: voted by the nearest examples" in domain.inferred
    notes: list[str] = []
    grammar = domain.grammar_schema("Charged twice on ORD-9876 during the past 2 hours", notes=notes)
    assert "team" not in grammar["properties"] and "team" not in grammar["required"]  # never asked
    assert grammar["properties"]["order_id"]["enum"] == ["ORD-9876"]  # a pattern string the request writes is copied
    # "2 hours" in the field's unit, and not null: the examples set minutes whenever they state a duration
    assert grammar["properties"]["minutes"]["enum"] == [120]
    assert ("minutes",) in domain.declarative.spec.found
    value, repairs = domain.post(None, "x")({"category": "bug", "urgent": True, "order_id": None, "minutes": 5})
    assert value["team"] == "engineering" and any("derived from /category" in r for r in repairs)
    assert domain.validator.validate_value(value, "x").ok
    # examples are shown without the derived field, so the model is never taught to write it
    assert "team" not in json.loads(domain.answer_text(domain.examples[0].answer))


def test_inference_can_be_switched_off_and_a_declaration_wins(tmp_path):
    domain = load_domain(make_domain(tmp_path, extra_yaml="infer: false\n"))
    assert domain.inferred == [] and not domain.declarative.spec.derive
    other = tmp_path / "other"
    declared = load_domain(make_domain(other, extra_yaml="vote:\n  /category: {k: 3, margin: 0.9}\n"))
    assert declared.declarative.spec.vote[("category",)].k == 3  # the declaration, not the inferred default


def test_an_override_in_the_data_dir_is_versioned_and_merged_at_load(tmp_path):
    kb = tmp_path / "kb"
    make_domain(kb)
    store = OverrideStore(tmp_path / "overrides")
    registry = DomainRegistry(kb, overrides=tmp_path / "overrides")
    assert registry.get("tickets").spec.selection == {}
    first = store.write("tickets", {"selection": {"k": 2}, "vote": {"/category": {"margin": 0.9}}}, reason="tune")
    domain = registry.get("tickets")
    assert domain.spec.selection == {"k": 2}
    assert domain.declarative.spec.vote[("category",)].margin == 0.9
    second = store.write("tickets", {"negatives": [{"id": "n1", "question": "refund ORD-1111", "why": "billing",
                                                    "wrong": {**RIGHT, "category": "bug", "team": "engineering"},
                                                    "right": RIGHT}]},
                         reason="an edit pattern")
    assert [n.id for n in registry.get("tickets").negatives] == ["n1"]
    assert registry.get("tickets").spec.selection == {"k": 2}  # a later version keeps the earlier changes
    assert [v["version"] for v in store.versions("tickets")] == [first, second]
    assert [v["live"] for v in store.versions("tickets")] == [False, True]
    store.set_live("tickets", None)
    assert registry.get("tickets").spec.selection == {}
    with pytest.raises(ConfigError):
        store.write("tickets", {"description": "no"}, reason="x")


def test_confidence_rises_with_agreement_and_falls_with_attempts():
    votes = [{"path": "/category", "scores": {"billing": 0.9, "bug": 0.1}}]
    agreed = confidence(valid=True, output={"category": "billing"}, attempts=1, votes=votes, similarities=[0.8])
    against = confidence(valid=True, output={"category": "bug"}, attempts=1, votes=votes, similarities=[0.8])
    retried = confidence(valid=True, output={"category": "billing"}, attempts=3, votes=votes, similarities=[0.8])
    strange = confidence(valid=True, output={"category": "billing"}, attempts=1, votes=votes, similarities=[0.2])
    assert agreed["score"] > against["score"] and agreed["score"] > retried["score"]
    assert agreed["score"] > strange["score"]
    assert confidence(valid=False, output=None, attempts=3, votes=votes, similarities=[0.9])["score"] == 0.0


def test_votes_that_prove_unreliable_on_the_examples_narrow_nothing():
    import numpy as np

    from rag_middleware.domains.spec import VoteSpec
    from rag_middleware.domains.judgement import gate, reliability

    rng = np.random.default_rng(0)
    topics = np.eye(3, 16, dtype=np.float32)
    examples, vectors = [], []
    for i in range(18):
        topic = i % 3
        v = topics[topic] + 0.05 * rng.standard_normal(16).astype(np.float32)
        vectors.append(v / np.linalg.norm(v))
        # 'kind' follows the topic (neighbours know it); 'mood' is a coin toss (neighbours cannot know it)
        examples.append((f"e{i}", f"question {i}", {"kind": ["a", "b", "c"][topic], "mood": ["x", "y"][(i // 3) % 2]}))
    specs = {("kind",): VoteSpec(k=5, margin=0.6), ("mood",): VoteSpec(k=5, margin=0.6)}
    judged = reliability(examples, np.stack(vectors), specs)
    assert judged["/kind"]["reliable"] and judged["/kind"]["precision"] == 1.0
    assert not judged["/mood"]["reliable"]
    votes = [{"path": "/mood", "allowed": ["x"], "confident": True, "voters": []},
             {"path": "/kind", "allowed": ["a"], "confident": True, "voters": []}]
    gated = gate(votes, judged)
    assert gated[0]["allowed"] == [] and "left to the model" in gated[0]["reason"]
    assert gated[1]["allowed"] == ["a"]
    # a reviewed answer to the same question speaks for itself
    strong = [{**votes[0], "voters": [{"id": "r", "reviewed": True, "near_identical": True}]}]
    assert gate(strong, judged)[0]["allowed"] == ["x"]


def test_a_request_number_is_one_items_value_and_a_unit_field_takes_quantities_only(tmp_path):
    d = tmp_path / "homes"
    d.mkdir()
    schema = {"type": "object", "additionalProperties": False, "required": ["filters", "days"], "properties": {
        "filters": {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                               "required": ["field", "value"],
                                               "properties": {"field": {"enum": ["rooms", "price", "floor"]},
                                                              "value": {"type": "integer"}}}},
        "days": {"type": ["integer", "null"]}}}
    (d / "schema.json").write_text(json.dumps(schema))
    (d / "domain.yaml").write_text("description: d\noutput_schema: schema.json\ninfer: false\n"
                                   "ground:\n  /filters/*/value: numbers\nunits:\n  /days: {day: 1, week: 7}\n")
    domain = load_domain(d)
    value, repairs = domain.post(None, "flats on floor 5")({"filters": [
        {"field": "floor", "value": 5}, {"field": "price", "value": 5}], "days": None})
    assert value["filters"] == [{"field": "floor", "value": 5}] and "reuses the number 5" in repairs[0]
    grammar = domain.grammar_schema("3 rooms, listed in the last 2 weeks")
    assert grammar["properties"]["days"]["enum"] == [14, None]
    assert domain.grammar_schema("3 rooms")["properties"]["days"]["enum"] == [None]  # 3 is not a duration


def test_an_override_can_turn_chain_of_thought_on(tmp_path):
    kb = tmp_path / "kb"
    make_domain(kb)
    registry = DomainRegistry(kb, overrides=tmp_path / "overrides")
    assert not registry.get("tickets").spec.cot.enabled
    OverrideStore(tmp_path / "overrides").write("tickets", {"cot": {"enabled": True}}, reason="tune: cot wins")
    assert registry.get("tickets").spec.cot.enabled
