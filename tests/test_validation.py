"""From raw model text to a validated object: extraction, pydantic and JSON-Schema validation, error lines."""

from __future__ import annotations

import json
import re
from typing import Literal

import pytest
from pydantic import BaseModel, ValidationError, ValidationInfo, field_validator, model_validator

from rag_middleware.domains.validation import (
    MAX_ERRORS,
    ExtractionError,
    JSONSchemaValidator,
    PydanticValidator,
    extract_json,
    summarize_pydantic_errors,
)

# -- extract_json -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('  [1, 2, 3]  ', [1, 2, 3]),
        ('Sure! Here it is: {"a": {"b": [1, 2]}} Hope that helps.', {"a": {"b": [1, 2]}}),
        ('{"a": "}{ ] [ not a bracket"} trailing {"b": 2}', {"a": "}{ ] [ not a bracket"}),
        ('{"a": "quote \\" and } brace"}', {"a": 'quote " and } brace'}),
        ('<think>maybe {"wrong": true}</think>{"right": true}', {"right": True}),
        ('<THINK>\nlong {reasoning\n</THINK>\n{"x": 0}', {"x": 0}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('```\n[1]\n```', [1]),
    ],
)
def test_extract_json(text, expected):
    assert extract_json(text) == expected


def test_fence_is_preferred_over_an_earlier_object():
    text = 'Example: {"draft": 1}\n```json\n{"final": 2}\n```'
    assert extract_json(text) == {"final": 2}


def test_the_last_parseable_fence_wins_over_an_earlier_draft_fence():
    """A draft in one ```json fence and the final answer in a later one: the later block is the answer."""
    text = 'Draft:\n```json\n{"draft": 1}\n```\nCorrected:\n```json\n{"final": 2}\n```\n'
    assert extract_json(text) == {"final": 2}
    # a trailing fence that does not parse (code, prose, a truncated object) is skipped
    text = '```json\n{"final": 2}\n```\nRun it:\n```python\nprint(plan)\n```\n```json\n{"cut": \n```'
    assert extract_json(text) == {"final": 2}


def test_unclosed_think_is_dropped_entirely():
    with pytest.raises(ExtractionError):
        extract_json('<think>I will answer {"a": 1} soon')


def test_invalid_fence_falls_back_to_balanced_span():
    assert extract_json('```json\nnot json\n```\n{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(
    "text",
    [
        '{"task": "sort", "operations": [{"type": "sort"',
        '{"a": [1, 2}',
        '```json\n{"a": 1, "b": {"c": 2}\n```',
        '{"a": {"b": 1}',  # the inner object is balanced, but must not be taken as the answer
    ],
)
def test_truncated_json_is_never_repaired(text):
    with pytest.raises(ExtractionError):
        extract_json(text)


def test_truncated_message_and_missing_message():
    with pytest.raises(ExtractionError, match="incomplete"):
        extract_json('{"a": [1, 2')
    with pytest.raises(ExtractionError, match="no JSON"):
        extract_json("I cannot do that.")
    with pytest.raises(ExtractionError, match=r"invalid JSON: .* line 1 column"):
        extract_json("{'single': 'quotes'}")


# -- summarize_pydantic_errors -----------------------------------------------------------------------------


class Item(BaseModel):
    name: str
    qty: int


class Order(BaseModel):
    kind: Literal["buy", "sell"]
    items: list[Item]
    note: str


def _errors(value) -> list[str]:
    with pytest.raises(ValidationError) as info:
        Order.model_validate(value)
    return summarize_pydantic_errors(info.value)


def test_summary_lines_are_path_colon_message():
    secret = "SECRET-INPUT-" + "x" * 300
    lines = _errors({"kind": "hold", "items": [{"name": "a", "qty": secret}]})
    assert "items.0.qty: Input should be a valid integer, unable to parse string as an integer" in lines
    assert "kind: must be one of 'buy' or 'sell'" in lines
    assert "note: required field is missing" in lines
    for line in lines:
        assert re.match(r"^[\w.]+: \S", line), line  # dotted paths with numeric parts, never items[0]
        assert "http" not in line and "errors.pydantic.dev" not in line
        assert "SECRET-INPUT" not in line and "hold" not in line
        assert len(line) < 200


def test_summary_is_capped_and_deduplicated():
    lines = _errors({"kind": "buy", "items": [{"name": i} for i in range(20)], "note": "n"})
    assert len(lines) == MAX_ERRORS + 1
    assert lines[-1] == f"(and {40 - MAX_ERRORS} more errors)"
    assert len(set(lines)) == len(lines)


def test_summary_root_and_long_messages():
    class Strict(BaseModel):
        x: int

        @field_validator("x")
        @classmethod
        def _long(cls, v: int) -> int:
            raise ValueError("too long " * 50)

    with pytest.raises(ValidationError) as info:
        Strict.model_validate({"x": 1})
    (line,) = summarize_pydantic_errors(info.value)
    assert line.startswith("x: too long too long")  # no "Value error, " prefix
    assert line.endswith("…")
    assert len(line) <= len("x: ") + 160


class Plan(BaseModel):
    steps: list[Item]
    total: int

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        problems = []
        if self.total != sum(i.qty for i in self.steps):
            problems.append(f"total: must be {sum(i.qty for i in self.steps)}")
        problems += [f"steps.{n}.name: must not be empty" for n, i in enumerate(self.steps) if not i.name]
        if problems:
            raise ValueError("\n".join(problems))
        return self


def test_a_model_validator_reports_one_line_per_problem_without_a_root_prefix():
    with pytest.raises(ValidationError) as info:
        Plan.model_validate({"steps": [{"name": "a", "qty": 1}, {"name": "", "qty": 2}], "total": 5})
    assert summarize_pydantic_errors(info.value) == ["total: must be 3", "steps.1.name: must not be empty"]


def test_model_validator_lines_count_towards_the_cap():
    steps = [{"name": "", "qty": 1} for _ in range(MAX_ERRORS + 3)]
    with pytest.raises(ValidationError) as info:
        Plan.model_validate({"steps": steps, "total": 0})
    lines = summarize_pydantic_errors(info.value)
    assert lines[0] == f"total: must be {MAX_ERRORS + 3}"
    assert lines[1:MAX_ERRORS] == [f"steps.{n}.name: must not be empty" for n in range(MAX_ERRORS - 1)]
    assert lines[-1] == "(and 4 more errors)" and len(lines) == MAX_ERRORS + 1


def test_value_error_prefix_is_stripped():
    class Checked(BaseModel):
        a: int
        b: int

        @field_validator("a", "b")
        @classmethod
        def _even(cls, v: int) -> int:
            if v % 2:
                raise ValueError("must be even")
            return v

    with pytest.raises(ValidationError) as info:
        Checked.model_validate({"a": 1, "b": 3})
    assert summarize_pydantic_errors(info.value) == ["a: must be even", "b: must be even"]


# -- validators -------------------------------------------------------------------------------------------


class NeedsColumns(BaseModel):
    column: str

    @field_validator("column")
    @classmethod
    def _known(cls, v: str, info: ValidationInfo) -> str:
        columns = (info.context or {}).get("columns")
        if columns is None:
            raise ValueError("no context given")
        if v not in columns:
            raise ValueError(f"unknown column {v!r}; columns are {columns}")
        return v


def test_pydantic_validator_passes_a_context_built_from_the_request():
    seen: list[str] = []

    def builder(request: str) -> dict:
        seen.append(request)
        return {"columns": request.split(",")}

    v = PydanticValidator(NeedsColumns, builder)
    ok = v.validate_value({"column": "b"}, "a,b")
    assert ok.ok and ok.value == {"column": "b"}
    bad = v.validate_value({"column": "z"}, "a,b")
    assert not bad.ok
    (line,) = bad.errors
    assert line == "column: unknown column 'z'; columns are ['a', 'b']"
    assert seen == ["a,b", "a,b"]

    assert v.validate_text('answer: {"column": "a"}', "a,b").value == {"column": "a"}
    truncated = v.validate_text('{"column": "a"', "a,b")
    assert not truncated.ok and truncated.errors[0].startswith("(root): ")

    no_context = PydanticValidator(NeedsColumns).validate_value({"column": "a"}, "a,b")
    assert not no_context.ok and "no context given" in no_context.errors[0]
    assert PydanticValidator(NeedsColumns).json_schema()["required"] == ["column"]


SCHEMA = {
    "type": "object",
    "required": ["title", "tags"],
    "additionalProperties": False,
    "properties": {
        "title": {"type": "string"},
        "level": {"enum": ["low", "high"]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}


def test_jsonschema_validator_reports_path_and_message():
    v = JSONSchemaValidator(SCHEMA)
    good = {"title": "t", "tags": ["a"], "level": "low"}
    assert v.validate_value(good, "").ok
    assert v.validate_text(f"```json\n{json.dumps(good)}\n```", "").value == good

    bad = v.validate_value({"tags": ["a", 3], "level": "mid"}, "")
    assert not bad.ok
    assert "tags.1: 3 is not of type 'string'" in bad.errors
    assert "level: must be one of ['low', 'high']" in bad.errors
    assert "(root): required field is missing ('title')" in bad.errors
    assert all(": " in e for e in bad.errors)

    text = v.validate_text("no json here", "")
    assert not text.ok and text.errors[0].startswith("(root): no JSON")


def test_jsonschema_validator_rejects_an_invalid_schema():
    from jsonschema.exceptions import SchemaError

    with pytest.raises(SchemaError):
        JSONSchemaValidator({"type": "not-a-type"})


def test_a_validator_that_crashes_makes_the_answer_invalid_not_the_request(caplog):
    from pydantic import BaseModel, model_validator

    from rag_middleware.domains.validation import PydanticValidator

    class Fragile(BaseModel):
        tags: dict

        @model_validator(mode="after")
        def _check(self):
            set(self.tags.values())  # TypeError on an unhashable value
            return self

    outcome = PydanticValidator(Fragile).validate_value({"tags": {"a": {"b": 1}}}, "q")
    assert not outcome.ok
    assert outcome.errors[0].startswith("(root): the answer does not fit the output model (TypeError")
    assert "Fragile validator raised TypeError" in caplog.text
