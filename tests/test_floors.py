"""Floors read off the examples: an ordered label that a number of the same answer lifts."""

from __future__ import annotations

from rag_middleware.domains.floors import Floor, infer_floors, lift
from rag_middleware.domains.infer import infer
from rag_middleware.domains.mechanisms import Declarative
from rag_middleware.domains.spec import DeclarativeSpec
from rag_middleware.request.ask import Switches

SEVERITY = {"enum": ["low", "medium", "high", "critical"]}
AMOUNT = {"anyOf": [{"type": "integer"}, {"type": "null"}]}
TOP = [(("severity",), SEVERITY), (("amount",), AMOUNT)]


def answers(pairs: list[tuple[int | None, str]]) -> list[tuple[str, dict]]:
    return [(f"claim for {n}", {"severity": s, "amount": n}) for n, s in pairs]


BANDED = answers([(95, "low"), (180, "low"), (310, "low"), (480, "low"), (640, "low"), (780, "low"),
                  (650, "high"),  # an injury made it high: above the floor is fine
                  (1450, "medium"), (2300, "medium"), (3750, "medium"), (6800, "medium"), (1900, "high"),
                  (11000, "high"), (14500, "high"), (22000, "high"), (30000, "critical")])


def test_the_round_thresholds_between_the_bands_are_read_off_the_examples():
    floors = infer_floors(TOP, [("amount",)], BANDED)
    floor = floors[("severity",)]
    assert floor.order == ("low", "medium", "high", "critical")
    assert floor.steps == ((1000, "medium"), (10000, "high"))
    assert floor.describe() == "at least medium from 1,000, high from 10,000 of /amount"


def test_a_label_below_the_floor_is_lifted_and_listed_and_one_above_is_kept():
    floor = Floor(("amount",), ("low", "medium", "high", "critical"), ((1000, "medium"), (10000, "high")))
    repairs: list[str] = []
    low = {"severity": "low", "amount": 16000}
    lift(low, {("severity",): floor}, repairs)
    assert low["severity"] == "high" and repairs[0].startswith("/severity: 'low' -> 'high'")
    critical = {"severity": "critical", "amount": 50}
    lift(critical, {("severity",): floor}, repairs)
    assert critical["severity"] == "critical" and len(repairs) == 1
    unknown = {"severity": "low", "amount": None}
    lift(unknown, {("severity",): floor}, repairs)
    assert unknown["severity"] == "low"


def test_no_floor_without_a_relation_or_enough_examples():
    shuffled = answers([(n, s) for (n, _), (_, s) in zip(
        [(95, ""), (180, ""), (310, ""), (480, ""), (640, ""), (780, ""), (1450, ""), (2300, ""), (3750, ""),
         (6800, ""), (11000, ""), (14500, "")],
        [(0, "high"), (0, "low"), (0, "critical"), (0, "medium"), (0, "high"), (0, "low"), (0, "low"),
         (0, "critical"), (0, "medium"), (0, "low"), (0, "medium"), (0, "low")], strict=True)])
    assert infer_floors(TOP, [("amount",)], shuffled) == {}
    assert infer_floors(TOP, [("amount",)], BANDED[:6]) == {}  # too few
    two_labels = [(("deal",), {"enum": ["rent", "buy"]}), (("amount",), AMOUNT)]
    deals = [(q, {"deal": "rent" if a["amount"] < 5000 else "buy", "amount": a["amount"]}) for q, a in BANDED]
    assert infer_floors(two_labels, [("amount",)], deals) == {}  # an order needs three labels or more


def test_a_reversed_enum_is_read_in_its_own_order():
    reversed_top = [(("severity",), {"enum": ["critical", "high", "medium", "low"]}), (("amount",), AMOUNT)]
    floor = infer_floors(reversed_top, [("amount",)], BANDED)[("severity",)]
    assert floor.order == ("low", "medium", "high", "critical")


def test_inference_adds_the_floor_and_the_post_step_applies_it_with_the_derived_fields():
    schema = {"type": "object", "properties": {"severity": SEVERITY, "amount": AMOUNT}}
    spec = DeclarativeSpec()
    notes = infer(spec, schema, [(q.replace("claim for", "claim for $"), a) for q, a in BANDED])
    assert ("severity",) in spec.floor and any("at least medium" in n for n in notes)
    decl = Declarative(spec, schema)
    fixed, repairs = decl.post({"severity": "low", "amount": 2500}, "claim for $2,500", flags=Switches())
    assert fixed["severity"] == "medium" and repairs
    kept, _ = decl.post({"severity": "low", "amount": 2500}, "claim for $2,500", flags=Switches(derive=False))
    assert kept["severity"] == "low"


def test_the_claims_domain_learns_its_severity_floor(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from pathlib import Path

    from rag_middleware.domains.registry import DomainRegistry

    domain = DomainRegistry(Path(__file__).resolve().parents[1] / "knowledge_base").get("claims_intake")
    floor = domain.declarative.spec.floor[("severity",)]
    assert floor.steps == ((1000, "medium"), (10000, "high"))


def test_an_example_below_its_inferred_floor_is_not_a_load_error(tmp_path):
    """Up to a tenth of the examples may sit below the floor (the data's own noise); loading never fails on it."""
    import json

    from rag_middleware.domains.registry import DomainRegistry

    root = tmp_path / "kb" / "sev"
    root.mkdir(parents=True)
    schema = {"type": "object", "properties": {"severity": SEVERITY, "amount": AMOUNT, "team": {
        "enum": ["a", "b", "c", "d"]}}, "required": ["severity", "amount", "team"]}
    (root / "output.schema.json").write_text(json.dumps(schema))
    (root / "domain.yaml").write_text("description: severity from amounts\noutput_schema: output.schema.json\n"
                                      "derive:\n  /team:\n    from: /severity\n    map: {low: a, medium: b, high: c, "
                                      "critical: d}\n")
    rows = [*BANDED, ("claim for 5000, a small one", {"severity": "low", "amount": 5000})]  # below its floor
    team = {"low": "a", "medium": "b", "high": "c", "critical": "d"}
    lines = [json.dumps({"id": f"e{i}", "question": q.replace("claim for", "claim for $"),
                         "answer": {**a, "team": team[a["severity"]]}}) for i, (q, a) in enumerate(rows)]
    (root / "examples.jsonl").write_text("\n".join(lines) + "\n")
    domain = DomainRegistry(tmp_path / "kb").get("sev")
    assert ("severity",) in domain.declarative.spec.floor
