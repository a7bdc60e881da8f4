"""Used values (domains/used_values.py): a list item value grounded in the field's pattern or a context,
which the examples always give an item when their question writes one, sets the list's minimum."""

from __future__ import annotations

import json

import yaml

from rag_middleware.domains.registry import DomainRegistry
from rag_middleware.request.ask import Switches

PATH = {"type": "object", "properties": {"field": {"enum": ["endpoint"]}, "value": {
    "type": "string", "pattern": "^/[a-z0-9/._-]*$"}}, "required": ["field", "value"], "additionalProperties": False}
STATUS = {"type": "object", "properties": {"field": {"enum": ["status"]}, "value": {
    "type": "integer", "x-ground": "numbers"}}, "required": ["field", "value"], "additionalProperties": False}
SCHEMA = {"type": "object", "properties": {"filters": {"type": "array", "maxItems": 3, "items": {
    "anyOf": [PATH, STATUS]}}}, "required": ["filters"], "additionalProperties": False}


def item(field, value):
    return {"field": field, "value": value}


USED = [
    ("errors on /api/orders", [item("endpoint", "/api/orders")]),
    ("500s on /cart in the last hour", [item("status", 500), item("endpoint", "/cart")]),
    ("traffic for /healthz and /login", [item("endpoint", "/healthz"), item("endpoint", "/login")]),
    ("404 responses", [item("status", 404)]),
]


def domain(tmp_path, examples):
    d = tmp_path / "paths"
    d.mkdir()
    (d / "output.schema.json").write_text(json.dumps(SCHEMA))
    (d / "domain.yaml").write_text(yaml.safe_dump({"description": "d", "output_schema": "output.schema.json"}))
    (d / "examples.jsonl").write_text("\n".join(json.dumps({"id": f"e{i}", "question": q, "answer": {
        "filters": f}}) for i, (q, f) in enumerate(examples)) + "\n")
    return DomainRegistry(tmp_path).get("paths")


def grammar(d, request):
    return d.declarative.grammar(d.validator.json_schema(), request, flags=Switches())


def test_a_path_the_examples_always_use_sets_one_item_per_path(tmp_path):
    d = domain(tmp_path, USED)
    [used] = d.declarative.spec.used
    assert used.path == ("filters", "*", "value") and (used.seen, used.used) == (3, 3)
    schema, notes = grammar(d, "average size of /static/app.js and /static/vendor.js")
    assert schema["properties"]["filters"]["minItems"] == 2
    assert any("at least 2 item(s)" in n and "/static/app.js" in n for n in notes)
    schema, _ = grammar(d, "how many 503s today")  # writes no path: the list may be empty
    assert schema["properties"]["filters"].get("minItems", 0) == 0


def test_a_path_the_examples_leave_out_sets_nothing(tmp_path):
    left_out = [*USED[:2], ("compare /a with /b", []), ("anything under /tmp", []), USED[3]]
    d = domain(tmp_path, left_out)
    assert d.declarative.spec.used == []
    schema, _ = grammar(d, "errors on /api/orders")
    assert schema["properties"]["filters"].get("minItems", 0) == 0


def test_too_few_examples_teach_nothing(tmp_path):
    d = domain(tmp_path, USED[:2])
    assert d.declarative.spec.used == []
