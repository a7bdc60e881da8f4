"""Domains load from knowledge_base/ and every mistake in them is reported with its file and line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rag_middleware.request.ask import Switches
from rag_middleware.domains import DomainRegistry
from rag_middleware.errors import DomainError, UnknownDomainError
from rag_middleware.domains.validation import JSONSchemaValidator, PydanticValidator

SHIPPED = ["assistant", "claims_intake", "data_ops", "listing_search", "shop_query"]


def kb(project: Path) -> Path:
    return project / "knowledge_base"


def load(project: Path, name: str):
    return DomainRegistry(kb(project)).get(name)


def append_line(path: Path, line: str) -> int:
    """Append a line to a jsonl file and return its line number."""
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text += "\n"
    text += line + "\n"
    path.write_text(text, encoding="utf-8")
    return len(text.splitlines())


def test_shipped_domains_load(project):
    registry = DomainRegistry(kb(project))
    assert registry.names() == SHIPPED
    data_ops = registry.get("data_ops")
    assert isinstance(data_ops.validator, PydanticValidator)
    assert data_ops.validator.model.__name__ == "ActionPlan"
    assert not data_ops.free_text
    assert data_ops.schema_json["title"] == "ActionPlan"
    assert data_ops.examples and data_ops.negatives
    assert all(isinstance(e.answer, dict) and "task" in e.answer for e in data_ops.examples)
    assert data_ops.spec.selection["k"] == 6

    assistant = registry.get("assistant")
    assert assistant.validator is None and assistant.free_text
    assert assistant.schema_json is None
    assert all(isinstance(e.answer, str) for e in assistant.examples)
    assert assistant.answer_text("plain words") == "plain words"
    assert data_ops.answer_text({"a": 1}) == '{"a": 1}'
    claims = registry.get("claims_intake")  # a stored answer: derived fields hidden, kept for the next hit
    stored = '{"claim_type": "pet", "department": "medical_claims"}'
    assert claims.answer_text(stored) == '{"claim_type": "pet"}' == claims.answer_text(stored)
    assert claims.answer_text(stored, hide_derived=False) == '{"claim_type": "pet", "department": "medical_claims"}'
    assert claims.answer_text("not json") == "not json"
    assert registry.get("data_ops") is data_ops  # cached
    assert [d.name for d in registry.load_all()] == SHIPPED

    shop = registry.get("shop_query")
    assert isinstance(shop.validator, JSONSchemaValidator) and not shop.free_text
    # with the mechanisms off the grammar is the schema; on, the filter values the examples copy from their
    # questions are grounded in the request's words (inferred, shop_query declares nothing)
    off = Switches(ground=False, derive=False, vote=False, harden=False)
    assert shop.grammar_schema("How many orders?", flags=off) == shop.schema_json
    notes: list[str] = []
    shop.grammar_schema("How many electronics products are left?", notes=notes)
    assert any(n.startswith("/filter/category: grounded in words: ") and "'electronics'" in n for n in notes)


def test_unknown_domain_lists_known_ones(project):
    with pytest.raises(UnknownDomainError) as info:
        DomainRegistry(kb(project)).get("nope")
    assert "'nope'" in str(info.value)
    assert ", ".join(SHIPPED) in str(info.value)
    assert info.value.known == SHIPPED
    assert info.value.http_status == 404
    with pytest.raises(UnknownDomainError):
        DomainRegistry(kb(project)).get("")


def test_malformed_json_line_names_file_and_line(project):
    line = append_line(kb(project) / "data_ops" / "examples.jsonl", '{"id": "broken", "question": ')
    with pytest.raises(DomainError, match=rf"examples\.jsonl:{line}: invalid JSON") as info:
        load(project, "data_ops")
    assert info.value.line == line
    assert info.value.path.endswith("examples.jsonl")


def test_bad_curated_answer_names_file_and_line(project):
    path = kb(project) / "data_ops" / "examples.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    target = 3
    data = json.loads(lines[target - 1])
    right_task = data["answer"]["task"]
    assert right_task != "filter"
    data["answer"]["task"] = "filter"  # does not follow from the operations
    lines[target - 1] = json.dumps(data)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DomainError) as info:
        load(project, "data_ops")
    message = str(info.value)
    assert f"examples.jsonl:{target}:" in message
    assert data["id"] in message
    assert message.endswith(f'answer disagrees with domain.yaml: /task: "filter" -> "{right_task}" '
                            "(derived from /operations/*/type)")


def test_bad_negative_right_answer_names_file_and_line(project):
    path = kb(project) / "data_ops" / "negatives.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    data = json.loads(lines[1])
    data["right"]["chart_type"] = "pie"
    lines[1] = json.dumps(data)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DomainError, match=r"negatives\.jsonl:2: .*right disagrees with domain\.yaml: "
                                          r'/chart_type: "pie" -> "(none|bar|line|histogram|scatter)" \(rule '):
        load(project, "data_ops")


def test_duplicate_example_id(project):
    path = kb(project) / "assistant" / "examples.jsonl"
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    line = append_line(path, json.dumps({"id": first["id"], "question": "Another?", "answer": "Yes."}))
    with pytest.raises(DomainError, match=rf"examples\.jsonl:{line}: duplicate id '{first['id']}' \(first on line 1\)"):
        load(project, "assistant")


def test_example_missing_field_names_line(project):
    line = append_line(kb(project) / "assistant" / "examples.jsonl", json.dumps({"id": "x", "answer": "y"}))
    with pytest.raises(DomainError, match=rf"examples\.jsonl:{line}: question"):
        load(project, "assistant")


def test_unknown_key_in_domain_yaml_names_its_line(project):
    spec = kb(project) / "assistant" / "domain.yaml"
    text = spec.read_text(encoding="utf-8")
    line = len(text.splitlines()) + 1
    spec.write_text(text + "temprature: 0.5\n", encoding="utf-8")
    with pytest.raises(DomainError) as info:
        load(project, "assistant")
    assert f"domain.yaml:{line}:" in str(info.value)
    assert "temprature" in str(info.value)


def test_unknown_option_names_options_line(project):
    spec = kb(project) / "assistant" / "domain.yaml"
    lines = spec.read_text(encoding="utf-8").splitlines()
    options_line = next(i for i, text in enumerate(lines, start=1) if text.startswith("options:"))
    lines.insert(options_line, "  warp_speed: 9")
    spec.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DomainError, match=rf"domain\.yaml:{options_line}: options: unknown option\(s\) warp_speed"):
        load(project, "assistant")


def test_yaml_syntax_error_names_file_and_line(project):
    spec = kb(project) / "assistant" / "domain.yaml"
    spec.write_text("description: fine\noptions:\n  temperature: [0.1\nrules: []\n", encoding="utf-8")
    with pytest.raises(DomainError, match=r"YAML syntax error") as info:
        load(project, "assistant")
    assert info.value.path.endswith("domain.yaml")
    assert isinstance(info.value.line, int) and 3 <= info.value.line <= 4
    assert re.search(r"domain\.yaml:\d+: ", str(info.value))


@pytest.mark.parametrize(
    ("ref", "model_source", "pattern"),
    [
        ("missing.py:Plan", None, r"file missing\.py not found"),
        ("model.py:Plan", "this is not python(\n", r"cannot import model\.py: SyntaxError"),
        ("model.py:Plan", "import no_such_module_xyz\n", r"cannot import model\.py: ModuleNotFoundError"),
        ("model.py:Nope", "from pydantic import BaseModel\nclass Plan(BaseModel):\n    x: int\n", r"has no 'Nope'"),
        ("no_such_pkg_xyz.mod:Plan", None, r"cannot import no_such_pkg_xyz\.mod"),
        ("model.py:Plan", "Plan = 42\n", r"is not a pydantic model"),
    ],
)
def test_output_model_that_does_not_import(tmp_path, ref, model_source, pattern):
    root = tmp_path / "kb"
    domain = root / "broken"
    domain.mkdir(parents=True)
    (domain / "domain.yaml").write_text(f"description: a broken domain\n\noutput_model: {ref}\n", encoding="utf-8")
    if model_source is not None:
        (domain / "model.py").write_text(model_source, encoding="utf-8")
    with pytest.raises(DomainError, match=pattern) as info:
        DomainRegistry(root).get("broken")
    assert info.value.path.endswith("domain.yaml")
    assert info.value.line == 3


def test_fixed_output_model_loads_in_a_fresh_registry(tmp_path):
    """After a broken model.py is fixed, loading the domain again must import the fixed file."""
    root = tmp_path / "kb"
    domain = root / "fixme"
    domain.mkdir(parents=True)
    (domain / "domain.yaml").write_text("description: d\noutput_model: model.py:Plan\n", encoding="utf-8")
    (domain / "model.py").write_text("this is not python(\n", encoding="utf-8")
    with pytest.raises(DomainError, match="SyntaxError"):
        DomainRegistry(root).get("fixme")
    (domain / "model.py").write_text("from pydantic import BaseModel\nclass Plan(BaseModel):\n    x: int\n",
                                     encoding="utf-8")
    loaded = DomainRegistry(root).get("fixme")
    assert loaded.validator.validate_value({"x": 1}, "").ok


def test_a_domains_files_import_each_other_and_edits_are_picked_up(tmp_path):
    """Hooks may live in several files of the domain dir, importing shared names with ``from .model``."""
    domain = tmp_path / "kb" / "split"
    domain.mkdir(parents=True)
    (domain / "domain.yaml").write_text("description: d\noutput_model: model.py:Plan\nrepair: fixes.py:repair\n",
                                        encoding="utf-8")
    (domain / "model.py").write_text("from pydantic import BaseModel\nLIMIT = 3\nclass Plan(BaseModel):\n    x: int\n",
                                     encoding="utf-8")
    (domain / "fixes.py").write_text("from .model import LIMIT\n\ndef repair(value, context):\n"
                                     "    return {'x': min(value['x'], LIMIT)}, ['capped']\n", encoding="utf-8")
    outcome = DomainRegistry(tmp_path / "kb").get("split").validator.validate_text('{"x": 9}', "")
    assert outcome.ok and outcome.value == {"x": 3} and outcome.repairs == ["capped"]
    (domain / "model.py").write_text((domain / "model.py").read_text().replace("LIMIT = 3", "LIMIT = 5"))
    outcome = DomainRegistry(tmp_path / "kb").get("split").validator.validate_text('{"x": 9}', "")
    assert outcome.value == {"x": 5}


SCHEMA = {
    "type": "object",
    "required": ["city", "days"],
    "additionalProperties": False,
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
}


def _schema_domain(root: Path, examples: list[dict]) -> None:
    domain = root / "trips"
    domain.mkdir(parents=True)
    (domain / "output.schema.json").write_text(json.dumps(SCHEMA), encoding="utf-8")
    (domain / "domain.yaml").write_text("description: Plan a trip.\noutput_schema: output.schema.json\n",
                                        encoding="utf-8")
    (domain / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples), encoding="utf-8")


def test_json_schema_domain_validates_answers(tmp_path):
    root = tmp_path / "kb"
    _schema_domain(root, [{"id": "paris", "question": "Two days in Paris", "answer": {"city": "Paris", "days": 2}}])
    domain = DomainRegistry(root).get("trips")
    assert isinstance(domain.validator, JSONSchemaValidator)
    assert domain.schema_json == SCHEMA
    assert not domain.free_text
    assert domain.examples[0].answer == {"city": "Paris", "days": 2}
    assert domain.validator.validate_text('{"city": "Rome", "days": 3}', "").ok
    bad = domain.validator.validate_value({"city": "Rome", "days": 0}, "")
    assert not bad.ok and bad.errors[0].startswith("days: ")


def test_json_schema_domain_rejects_a_bad_curated_answer(tmp_path):
    root = tmp_path / "kb"
    _schema_domain(root, [
        {"id": "ok", "question": "Two days in Paris", "answer": {"city": "Paris", "days": 2}},
        {"id": "bad", "question": "Rome", "answer": {"city": "Rome"}},
    ])
    with pytest.raises(DomainError, match=r"examples\.jsonl:2: bad: answer fails the output model: .*days"):
        DomainRegistry(root).get("trips")


def test_json_schema_file_problems(tmp_path):
    root = tmp_path / "kb"
    _schema_domain(root, [])
    schema_file = root / "trips" / "output.schema.json"
    schema_file.write_text('{\n  "type": "object",\n  oops\n}\n', encoding="utf-8")
    with pytest.raises(DomainError, match=r"output\.schema\.json:3: invalid JSON"):
        DomainRegistry(root).get("trips")
    schema_file.unlink()
    with pytest.raises(DomainError, match=r"domain\.yaml:2: output_schema file output\.schema\.json not found"):
        DomainRegistry(root).get("trips")


# -- repair and grammar hooks -----------------------------------------------------------------------------


def test_data_ops_wires_repair_and_grammar_hooks(project):
    data_ops = load(project, "data_ops")
    assert data_ops.validator.repair.__name__ == "repair_plan"
    assert data_ops.validator.grammar.__name__ == "grammar_schema"
    grammar = data_ops.grammar_schema("Columns: price, qty\nSort by price.")
    assert grammar != data_ops.schema_json
    sort = next(b for b in grammar["properties"]["operations"]["items"]["anyOf"]
                if b["properties"]["type"] == {"const": "sort"})
    # the request names price: the grammar offers only the named column (none named: all of them)
    assert sort["properties"]["execution_instructions"]["properties"]["kwargs"]["properties"]["by"] == {
        "enum": ["price"]}
    unnamed = data_ops.grammar_schema("Columns: price, qty\nSort it.")["properties"]["operations"]["items"]["anyOf"]
    by = [o for o in unnamed if o["properties"]["type"] == {"const": "sort"}][0]
    assert by["properties"]["execution_instructions"]["properties"]["kwargs"]["properties"]["by"] == {
        "enum": ["price", "qty"]}
    # the hooks are the domain's: validate_text repairs, validate_value and repair=False do not; the declared
    # mechanisms (task derived from the operations) run before the hook when validation passes them as pre
    text = json.dumps({"task": "clean", "chart_type": "none", "operations": [{
        "type": "sort", "execution_instructions": {
            "method": "pandas.DataFrame.sort_values", "args": ["price"],
            "kwargs": {"by": "price", "ascending": True}}}]})
    request = "Columns: price, qty\nSort by price."
    repaired = data_ops.validator.validate_text(text, request, pre=data_ops.post(None, request))
    assert repaired.ok and repaired.value["task"] == "sort"
    assert repaired.repairs == ['/task: "clean" -> "sort" (derived from /operations/*/type)',
                                "operations.0.execution_instructions.args -> []"]
    strict = data_ops.validator.validate_text(text, request, repair=False)
    assert not strict.ok and strict.errors == ["operations.0.execution_instructions.args: must be []"]
    assert strict.repairs == []
    assert data_ops.validator.validate_value(json.loads(text), request).errors == strict.errors


def test_pydantic_domain_without_a_grammar_hook_uses_the_model_schema(tmp_path):
    root = tmp_path / "kb"
    domain = root / "plain"
    domain.mkdir(parents=True)
    (domain / "domain.yaml").write_text("description: d\noutput_model: model.py:Plan\n", encoding="utf-8")
    (domain / "model.py").write_text("from pydantic import BaseModel\nclass Plan(BaseModel):\n    x: int\n",
                                     encoding="utf-8")
    loaded = DomainRegistry(root).get("plain")
    grammar = loaded.grammar_schema("anything")
    # the model's own schema; hardening bounds its numbers to 12 digits (a small model loops on digits)
    bound = 10**12 - 1
    assert grammar["properties"]["x"] == {**loaded.schema_json["properties"]["x"], "maximum": bound, "minimum": -bound}
    assert {k: v for k, v in grammar.items() if k != "properties"} == {
        k: v for k, v in loaded.schema_json.items() if k != "properties"}
    assert loaded.validator.validate_text('{"x": 1}', "").repairs == []


@pytest.mark.parametrize("hook", ["repair", "grammar", "context_builder"])
def test_hooks_need_a_pydantic_output_model(tmp_path, hook):
    root = tmp_path / "kb"
    _schema_domain(root, [])
    spec = root / "trips" / "domain.yaml"
    spec.write_text(spec.read_text(encoding="utf-8") + f"{hook}: model.py:fn\n", encoding="utf-8")
    with pytest.raises(DomainError, match=r"domain\.yaml:3: repair, grammar and context_builder need a pydantic "
                                          r"output_model"):
        DomainRegistry(root).get("trips")


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("repair: model.py:NOT_CALLABLE", r"domain\.yaml:3: repair model\.py:NOT_CALLABLE is not callable"),
        ("grammar: model.py:missing", r"domain\.yaml:3: grammar: model\.py has no 'missing'"),
    ],
)
def test_bad_hook_reference_names_its_line(tmp_path, line, pattern):
    root = tmp_path / "kb"
    domain = root / "hooked"
    domain.mkdir(parents=True)
    (domain / "domain.yaml").write_text(f"description: d\noutput_model: model.py:Plan\n{line}\n", encoding="utf-8")
    (domain / "model.py").write_text(
        "from pydantic import BaseModel\nNOT_CALLABLE = 3\nclass Plan(BaseModel):\n    x: int\n", encoding="utf-8")
    with pytest.raises(DomainError, match=pattern):
        DomainRegistry(root).get("hooked")
