"""Tools for domain authors: ``domains new`` scaffolds a domain that loads, ``domains check`` finds every planted
problem (with file and line), ``domains eval`` scores a domain end to end with a scripted model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import FakeLLM, HashEmbedder, run_cli, use_cli_backend
from rag_middleware.cli import context as cli_context
from rag_middleware.domains import DomainRegistry, load_domain
from rag_middleware.domains import authoring
from rag_middleware.domains.authoring import check_domain, schema_fields
from rag_middleware.domains.spec import DeclarativeSpec
from rag_middleware.errors import DomainError

TICKETS = {
    "type": "object",
    "properties": {
        "category": {"enum": ["billing", "bug", "other"]},
        "team": {"enum": ["payments", "engineering", "support"]},
        "order_id": {"type": ["string", "null"], "pattern": "^ORD-[0-9]{5}$"},
        "urgent": {"type": "boolean"},
        "steps": {"type": "array", "maxItems": 3, "items": {"type": "object", "properties": {
            "action": {"enum": ["refund", "escalate", "reply"]}}, "required": ["action"]}},
    },
    "required": ["category", "team", "order_id", "urgent", "steps"],
    "additionalProperties": False,
}


@pytest.fixture
def wide(monkeypatch):
    """Rich tables at full width, so cells are not wrapped mid-word."""
    monkeypatch.setattr(cli_context.console, "_width", 250)


@pytest.fixture
def fake_embedder(monkeypatch):
    monkeypatch.setattr(authoring, "make_embedder", HashEmbedder)


def answer(category="billing", team="payments", order_id=None, urgent=False, steps=("refund",)):
    return {"category": category, "team": team, "order_id": order_id, "urgent": urgent,
            "steps": [{"action": a} for a in steps]}


def example(id_, question, value) -> str:
    return json.dumps({"id": id_, "question": question, "answer": value})


def new_tickets(project: Path, capsys) -> Path:
    schema = project / "tickets.schema.json"
    schema.write_text(json.dumps(TICKETS, indent=2), encoding="utf-8")
    code, out, err = run_cli(capsys, "domains", "new", "tickets", "--schema", str(schema))
    assert code == 0, err
    return project / "knowledge_base" / "tickets"


# -- domains new ------------------------------------------------------------------------------------------

def test_new_scaffolds_a_domain_that_loads(cli_project, capsys, wide):
    path = new_tickets(cli_project, capsys)
    assert sorted(p.name for p in path.iterdir()) == ["domain.yaml", "examples.jsonl", "negatives.jsonl",
                                                      "output.schema.json"]
    assert json.loads((path / "output.schema.json").read_text()) == TICKETS
    assert (path / "examples.jsonl").read_text() == ""
    domain = DomainRegistry(cli_project / "knowledge_base").get("tickets")
    assert domain.examples == [] and domain.validator.json_schema() == TICKETS
    assert domain.spec.description.startswith("TODO")


def test_new_prints_next_steps_with_an_example_line_of_the_schemas_shape(cli_project, capsys, wide):
    schema = cli_project / "tickets.schema.json"
    schema.write_text(json.dumps(TICKETS), encoding="utf-8")
    code, out, _ = run_cli(capsys, "domains", "new", "tickets", "--schema", str(schema))
    assert code == 0
    assert "domains check tickets" in out and "domains eval tickets" in out and "docs/domains.md" in out
    line = next(line.strip() for line in out.splitlines() if line.strip().startswith('{"id"'))
    skeleton = json.loads(line)["answer"]
    assert skeleton == {"category": "billing", "team": "payments", "order_id": None, "urgent": False, "steps": []}
    domain = DomainRegistry(cli_project / "knowledge_base").get("tickets")
    assert domain.validator.validate_value(skeleton, "x").ok  # the printed line is a valid answer


def test_the_yaml_names_the_schemas_fields_and_its_commented_sections_parse(cli_project, capsys):
    text = (new_tickets(cli_project, capsys) / "domain.yaml").read_text()
    assert "#   /category: enum of 3, a vote candidate" in text
    assert "#   /steps/*/action: enum of 3, a vote candidate" in text
    assert "#   /order_id: has a pattern, grounded in the request automatically" in text
    assert "#   /steps: a list of at most 3, max_items bounds it" in text
    # every commented example section, uncommented, is a valid declarative spec
    block = text.split("# -- declarative mechanisms", 1)[1].split("# from your schema", 1)[0]
    uncommented = "\n".join(line[2:] for line in block.splitlines()[1:] if line.startswith("# "))
    sections = yaml.safe_load(uncommented)
    assert set(sections) == {"context", "ground", "units", "derive", "vote", "harden"}
    spec = DeclarativeSpec.from_sections(**{k: sections.get(k) or {} for k in ("context", "ground", "units", "derive",
                                                                                "vote")}, harden=sections["harden"])
    assert spec.harden.max_items == 6 and ("category",) in spec.vote


def test_new_declares_the_contexts_a_given_schema_grounds_in(cli_project, capsys):
    grounded = json.loads(json.dumps(TICKETS))
    grounded["properties"]["steps"]["items"]["properties"]["path"] = {"type": "string", "x-ground": "paths"}
    schema = cli_project / "grounded.schema.json"
    schema.write_text(json.dumps(grounded), encoding="utf-8")
    code, _, err = run_cli(capsys, "domains", "new", "tickets", "--schema", str(schema))
    assert code == 0, err  # it had refused: "the output schema grounds in paths: declare it under context:"
    domain = DomainRegistry(cli_project / "knowledge_base").get("tickets")
    assert list(domain.declarative.spec.context) == ["paths"]
    assert domain.declarative.context("see /api/v2/orders") == {"paths": []}  # matches nothing until written


def test_new_without_a_schema_writes_a_starter_schema(cli_project, capsys):
    code, out, _ = run_cli(capsys, "domains", "new", "notes")
    assert code == 0 and "replace the starter schema" in out
    domain = DomainRegistry(cli_project / "knowledge_base").get("notes")
    assert set(domain.validator.json_schema()["properties"]) == {"category", "summary"}


def test_new_with_a_model_file_copies_it_and_references_it(cli_project, capsys):
    model = cli_project / "plan_model.py"
    model.write_text("from typing import Literal\nfrom pydantic import BaseModel\n\nclass Plan(BaseModel):\n"
                     "    kind: Literal['a', 'b']\n    n: int | None = None\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "domains", "new", "plans", "--model", f"{model}:Plan")
    assert code == 0, err
    path = cli_project / "knowledge_base" / "plans"
    assert (path / "plan_model.py").read_text() == model.read_text()
    text = (path / "domain.yaml").read_text()
    assert "output_model: plan_model.py:Plan" in text and "#   /kind: enum of 2" in text
    domain = DomainRegistry(cli_project / "knowledge_base").get("plans")
    assert domain.validator.model.__name__ == "Plan"


def test_new_with_a_model_that_does_not_import_leaves_nothing_behind(cli_project, capsys):
    code, _, err = run_cli(capsys, "domains", "new", "plans", "--model", "no_such_package.models:Plan")
    assert code == 2
    assert "not created" in err and "no_such_package" in err
    assert not (cli_project / "knowledge_base" / "plans").exists()


@pytest.mark.parametrize("name", ["Tickets", "my domain", "1st", "a-b", "../escape", "x" * 49])
def test_new_refuses_a_bad_name(cli_project, capsys, name):
    before = sorted(p.name for p in (cli_project / "knowledge_base").iterdir())
    code, out, err = run_cli(capsys, "domains", "new", name)
    assert code == 2
    assert "bad domain name" in err and "Traceback" not in err
    assert sorted(p.name for p in (cli_project / "knowledge_base").iterdir()) == before


def test_new_refuses_an_existing_domain_and_leaves_it_alone(cli_project, capsys):
    spec = cli_project / "knowledge_base" / "claims_intake" / "domain.yaml"
    before = spec.read_text()
    code, _, err = run_cli(capsys, "domains", "new", "claims_intake")
    assert code == 2 and "already exists" in err
    assert spec.read_text() == before


@pytest.mark.parametrize("content,message", [("{not json", "invalid JSON"),
                                             ('{"type": "bogus"}', "not a valid JSON Schema")])
def test_new_refuses_a_bad_schema_file(cli_project, capsys, content, message):
    schema = cli_project / "bad.json"
    schema.write_text(content, encoding="utf-8")
    code, _, err = run_cli(capsys, "domains", "new", "tickets", "--schema", str(schema))
    assert code == 2 and message in err
    assert not (cli_project / "knowledge_base" / "tickets").exists()


# -- domains check ----------------------------------------------------------------------------------------

def test_check_on_a_fresh_scaffold_says_what_is_missing(cli_project, capsys, fake_embedder, wide):
    new_tickets(cli_project, capsys)
    code, out, _ = run_cli(capsys, "domains", "check", "tickets", "--json")
    assert code == 1
    report = json.loads(out)
    kinds = [p["kind"] for p in report["problems"]]
    assert kinds[0] == "empty" and report["examples"] == 0
    uncovered = {p["message"].split(":")[0] for p in report["problems"] if p["kind"] == "uncovered"}
    assert uncovered == {"/category", "/team", "/steps/*/action"}


def test_check_passes_on_the_shipped_domains(cli_project, capsys, fake_embedder, wide):
    for name in ("claims_intake", "listing_search"):
        code, out, _ = run_cli(capsys, "domains", "check", name)
        assert code == 0, out
        assert "no problems" in out


PLANTED = [
    example("refund", "Order ORD-12345 was charged twice, please refund", answer(order_id="ORD-12345")),
    example("crash", "The app crashes when I open settings", answer("bug", "engineering", steps=["escalate"])),
    example("bad-enum", "Where is my invoice?", answer("invoices")),  # line 3: not an allowed category
    json.dumps({"id": "no-answer", "question": "hello"}),  # line 4: no answer at all
    example("wrong-team", "The checkout page shows an error", answer("bug", "payments", steps=["reply"])),  # line 5
    example("refund-again", "Order ORD-12345 was charged twice, please refund it",
            answer(order_id="ORD-12345", urgent=True, steps=["escalate"])),  # line 6: near-identical to line 1
    example("bad-order", "my order is late", answer(order_id="12345")),  # line 7: fails the pattern
]


def planted_domain(root: Path) -> Path:
    path = root / "tickets"
    path.mkdir(parents=True)
    (path / "output.schema.json").write_text(json.dumps(TICKETS), encoding="utf-8")
    (path / "domain.yaml").write_text(
        "description: Route a support ticket.\noutput_schema: output.schema.json\n"
        "derive:\n  /team: {from: /category, map: {billing: payments, bug: engineering, other: support}}\n",
        encoding="utf-8")
    (path / "examples.jsonl").write_text("\n".join(PLANTED) + "\n", encoding="utf-8")
    (path / "negatives.jsonl").write_text(json.dumps({
        "id": "neg", "question": "refund me", "wrong": {}, "why": "w", "right": answer(team="support")}) + "\n",
        encoding="utf-8")
    return path


def test_check_finds_every_planted_problem_where_the_loader_stops_at_the_first(tmp_path):
    path = planted_domain(tmp_path / "kb")
    with pytest.raises(DomainError, match=r"examples\.jsonl:4: answer: Field required"):
        load_domain(path)  # the loader refuses at its first bad line (and the check still runs)
    report = check_domain(path, embedder=HashEmbedder())
    by_kind: dict[str, list] = {}
    for p in report.problems:
        by_kind.setdefault(p.kind, []).append(p)
    invalid = {(Path(p.file).name, p.line): p for p in by_kind["invalid"]}
    assert set(invalid) == {("examples.jsonl", 3), ("examples.jsonl", 4), ("examples.jsonl", 7)}
    assert "category: must be one of ['billing', 'bug', 'other']" in invalid["examples.jsonl", 3].message
    assert invalid["examples.jsonl", 3].id == "bad-enum"
    assert "answer" in invalid["examples.jsonl", 4].message
    assert "order_id" in invalid["examples.jsonl", 7].message

    derived = {(Path(p.file).name, p.line): p.message for p in by_kind["derived"]}
    assert derived == {
        ("examples.jsonl", 5): '/team is "payments" but its map from /category gives "engineering"',
        ("negatives.jsonl", 1): '/team is "support" but its map from /category gives "payments"',
    }

    [near] = by_kind["near_duplicate"]
    assert (near.id, near.line) == ("refund", 1)
    assert "refund-again (examples.jsonl:6)" in near.message
    assert "urgent false vs true" in near.message and 'steps [{"action": "refund"}] vs' in near.message
    assert "category" not in near.message.split("differently:")[1]  # only the fields that differ

    uncovered = [p.message for p in by_kind["uncovered"]]
    assert uncovered == ['/category: no example answers "other" (2 of 3 values covered)']  # /team is derived
    assert not report.ok and report.examples == 4 and report.negatives == 1
    assert set(by_kind) == {"invalid", "derived", "near_duplicate", "uncovered"}


def test_check_reports_a_schema_node_that_admits_nothing(tmp_path):
    path = planted_domain(tmp_path / "kb")
    (path / "examples.jsonl").write_text(PLANTED[0] + "\n", encoding="utf-8")
    contradictory = json.loads(json.dumps(TICKETS))
    contradictory["properties"]["steps"]["minItems"] = 4  # maxItems 3
    (path / "output.schema.json").write_text(json.dumps(contradictory), encoding="utf-8")
    found = [p for p in check_domain(path, near_duplicates=False).problems if p.kind == "schema"]
    assert [(p.message, Path(p.file).name) for p in found] == [
        ("/steps admits nothing (minItems 4 > maxItems 3): no answer can be valid", "output.schema.json")]
    assert not [p for p in check_domain(planted_domain(tmp_path / "kb2"), near_duplicates=False).problems
                if p.kind == "schema"]


def test_check_threshold_and_no_embed(tmp_path):
    path = planted_domain(tmp_path / "kb")
    assert not [p for p in check_domain(path, embedder=HashEmbedder(), threshold=0.999).problems
                if p.kind == "near_duplicate"]
    report = check_domain(path, near_duplicates=False)
    assert not [p for p in report.problems if p.kind == "near_duplicate"]
    assert report.notes == ["near-duplicate questions not checked (--no-embed)"]


def test_check_reports_a_map_that_misses_or_invents_values(tmp_path):
    path = planted_domain(tmp_path / "kb")
    (path / "examples.jsonl").write_text(PLANTED[0] + "\n", encoding="utf-8")
    (path / "domain.yaml").write_text(
        "description: d\noutput_schema: output.schema.json\n"
        "derive:\n  /team: {from: /category, map: {billing: payments, bugs: engineering, other: helpdesk}}\n",
        encoding="utf-8")
    messages = [p.message for p in check_domain(path, near_duplicates=False).problems if p.kind == "derive_map"]
    assert "derive /team: 'bugs' is not a value of /category" in messages
    assert "derive /team: no map entry for 'bug' of /category and no default; the field is left unfilled" in messages
    assert "derive /team: 'helpdesk' is not allowed at /team" in messages


def test_check_cli_table_and_exit_code(cli_project, capsys, fake_embedder, wide):
    planted_domain(cli_project / "knowledge_base")
    code, out, err = run_cli(capsys, "domains", "check", "tickets")
    assert code == 1, err
    assert "tickets: 4 examples, 1 negatives, 7 problem(s)" in out
    assert re.search(r"invalid\s+│\s+knowledge_base/tickets/examples\.jsonl:3\s+│\s+bad-enum", out)
    assert "knowledge_base/tickets/examples.jsonl:4" in out and "knowledge_base/tickets/examples.jsonl:7" in out
    assert "near_duplicate" in out and "uncovered" in out and "derived" in out
    code, out, _ = run_cli(capsys, "domains", "check", "tickets", "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and len(report["problems"]) == 7
    assert report["problems"][0] == {"kind": "invalid", "message": report["problems"][0]["message"],
                                     "file": str(Path("knowledge_base/tickets/examples.jsonl")), "line": 3,
                                     "id": "bad-enum"}


def test_check_a_domain_whose_spec_is_broken_reports_it(cli_project, capsys, fake_embedder):
    path = planted_domain(cli_project / "knowledge_base")
    (path / "domain.yaml").write_text("description: d\noutput_schema: output.schema.json\nground:\n  /x: nowhere\n",
                                      encoding="utf-8")
    code, out, _ = run_cli(capsys, "domains", "check", "tickets", "--json")
    assert code == 1
    [problem] = json.loads(out)["problems"]
    assert problem["kind"] == "domain" and problem["line"] == 4 and "unknown source 'nowhere'" in problem["message"]


def test_check_an_unknown_domain_lists_the_known_ones(cli_project, capsys):
    code, _, err = run_cli(capsys, "domains", "check", "nope")
    assert code == 2 and "unknown domain 'nope'" in err and "claims_intake" in err


@pytest.mark.integration
def test_check_with_minilm_finds_a_paraphrase_with_another_answer(tmp_path):
    path = planted_domain(tmp_path / "kb")
    (path / "examples.jsonl").write_text("\n".join([
        example("a", "I was charged twice for order ORD-12345, please refund me", answer(order_id="ORD-12345")),
        example("b", "Please refund me, I was charged twice for order ORD-12345",
                answer(order_id="ORD-12345", urgent=True)),
        example("c", "The app crashes when I open the settings page", answer("bug", "engineering")),
    ]) + "\n", encoding="utf-8")
    (path / "negatives.jsonl").write_text("", encoding="utf-8")
    near = [p for p in check_domain(path).problems if p.kind == "near_duplicate"]
    assert [(p.id, "b (examples.jsonl:2)" in p.message) for p in near] == [("a", True)]


def test_schema_fields_see_through_refs_and_unions():
    schema = {"$defs": {"A": {"type": "object", "properties": {"kind": {"const": "a"}}},
                        "B": {"type": "object", "properties": {"kind": {"const": "b"}, "n": {"type": "integer"}}}},
              "type": "object", "properties": {"ops": {"type": "array", "items": {"oneOf": [{"$ref": "#/$defs/A"},
                                                                                              {"$ref": "#/$defs/B"}]}}}}
    fields = schema_fields(schema)
    assert fields[("ops", "*", "kind")].enum == ["a", "b"]
    assert fields[("ops", "*", "n")].types == {"integer"}


# -- domains eval -----------------------------------------------------------------------------------------

CLAIM = {"claim_type": "auto", "severity": "low", "channel": "chat", "injury_reported": False,
         "department": "motor_claims", "policy_number": "POL-902215", "amount_claimed": 350}


def test_eval_end_to_end_with_a_scripted_model(cli_project, capsys, monkeypatch, wide):
    """The model always answers the first item's record with the wrong department: baseline and examples
    score it as written; full derives the department from claim_type and gets the first item exact."""
    scripted = json.dumps({**CLAIM, "department": "legal"})
    use_cli_backend(monkeypatch, lambda: FakeLLM(default=scripted))
    dataset = cli_project / "set.jsonl"
    dataset.write_text("\n".join(json.dumps(item) for item in [
        {"id": "scratch", "question": "chat: someone scratched my car, paint shop says 350 dollars, policy POL-902215",
         "expected": CLAIM},
        {"id": "leak", "question": "A pipe burst and flooded my kitchen, the plumber charged $1,200.",
         "expected": {**CLAIM, "claim_type": "home", "severity": "medium", "channel": "email",
                      "department": "property_claims", "policy_number": None, "amount_claimed": 1200}},
    ]) + "\n", encoding="utf-8")
    out_dir = cli_project / "eval-out"
    code, out, err = run_cli(capsys, "domains", "eval", "claims_intake", str(dataset), "--out", str(out_dir))
    assert code == 0, err
    assert {p.name for p in out_dir.iterdir()} >= {"report.md", "chart.png", "results.json"}
    assert (out_dir / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    results = json.loads((out_dir / "results.json").read_text())
    s = results["summaries"]
    assert list(s) == ["baseline", "examples", "full"]
    for mode in ("baseline", "examples"):
        assert s[mode]["valid_rate"] == 1.0 and s[mode]["exact"] == 0.0
        assert s[mode]["per_field"]["department"] == 0.0
    assert s["full"]["per_field"]["department"] == 0.5  # derived: right for the auto claim
    assert s["full"]["exact"] == 0.5 and s["full"]["field_accuracy"] > s["baseline"]["field_accuracy"]
    full_rows = {r["id"]: r for r in results["rows"]["full"]}
    assert '/department: "legal" -> "motor_claims" (derived from /claim_type)' in full_rows["scratch"]["repairs"]
    assert results["meta"]["modes"] == ["baseline", "examples", "full"]

    report = (out_dir / "report.md").read_text()
    assert report.startswith("# claims_intake on set.jsonl")
    assert "| mode | n | valid | field acc | exact |" in report
    assert "**claim_type** (rows: expected, columns: answered)" in report
    assert "- [leak](#item-leak) (fail)" in report  # the failing item, indexed by wrong field
    page = (out_dir / "report.html").read_text()
    assert 'id="fi-item-leak"' in page and "<script" not in page

    header = next(line for line in out.splitlines() if "field acc" in line)
    for column in ("mode", "valid", "field acc", "exact", "department"):
        assert column in header
    full_line = next(line for line in out.splitlines() if re.match(r"\W*full\b", line))
    assert re.search(r"│\s*2\s*│\s*1\.000\s*│\s*\d\.\d{3}\s*│\s*0\.500\s*│", full_line), full_line
    assert f"report: {out_dir / 'report.md'}" in " ".join(out.split())


def test_eval_refuses_an_unknown_mode(cli_project, capsys, monkeypatch):
    use_cli_backend(monkeypatch, lambda: FakeLLM(default=json.dumps(CLAIM)))
    dataset = cli_project / "set.jsonl"
    dataset.write_text(json.dumps({"question": "q", "expected": CLAIM}) + "\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "domains", "eval", "claims_intake", str(dataset), "--modes", "baseline,turbo")
    assert code == 2 and "turbo" in err


def test_with_derive_off_the_examples_show_the_field_the_grammar_asks_for(cli_project, capsys, monkeypatch):
    llm = FakeLLM(default=json.dumps(CLAIM))
    use_cli_backend(monkeypatch, lambda: llm)
    dataset = cli_project / "set.jsonl"
    dataset.write_text(json.dumps({"question": "someone scratched my car, 350 dollars", "expected": CLAIM}) + "\n",
                       encoding="utf-8")
    code, _, err = run_cli(capsys, "domains", "eval", "claims_intake", str(dataset), "--modes", "examples",
                           "--out", str(cli_project / "out"))
    assert code == 0, err
    [request] = llm.requests
    assert "department" in request.json_schema["properties"]  # derive is off: the model must write it
    shown = "\n".join(m["content"] for m in request.messages) + (request.prompt or "")
    assert '"department": "motor_claims"' in shown
