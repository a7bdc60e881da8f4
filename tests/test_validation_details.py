"""domains/validation.py in detail: the bracket scanner, extraction messages, the wording of pydantic and JSON
schema errors for the model, the validators' hooks (repair, pre, grammar, context) and a crashing validator.
Fast: part of the mutation target's test set for validation.py."""

from __future__ import annotations

import datetime as dt
import enum
import logging
from typing import Annotated

import jsonschema
import pytest
from pydantic import AfterValidator, BaseModel, ValidationError, field_validator

from rag_middleware.domains.validation import (
    MAX_MESSAGE,
    ExtractionError,
    JSONSchemaValidator,
    PydanticValidator,
    extract_json,
    summarize_pydantic_errors,
)

# -- extraction ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ('Xtra words: {"a": 1}', {"a": 1}),  # text before the object, an X in it
    ('oops} {"x": 1}', {"x": 1}),  # a closer before the object is not part of it
    ('it"s here: {"x": 1}', {"x": 1}),  # a quote before the object does not open a string
    ('{"a": 1}, and more', {"a": 1}),  # the span ends at its own closing bracket
    ('{"": 1}', {"": 1}),  # an empty string key: the quote after the opening quote closes it
    ('{"a": "x\\\\"}', {"a": "x\\"}),  # an escaped backslash does not escape the closing quote
    ('{"a": "<think>x</think>"}', {"a": ""}),  # think blocks go, even inside a string
])
def test_the_balanced_span(text, value):
    assert extract_json(text) == value


def test_extraction_messages_say_what_is_wrong():
    with pytest.raises(ExtractionError) as info:
        extract_json('{"a": [1, 2}')
    assert str(info.value) == "the JSON is incomplete (unbalanced brackets); answer with the whole object"
    with pytest.raises(ExtractionError) as info:
        extract_json("no JSON here, X marks the spot")
    assert str(info.value) == "no JSON object found in the answer; answer with one JSON object only"
    with pytest.raises(ExtractionError,
                       match="^invalid JSON: Expecting property name enclosed in double quotes at line 1 column 2$"):
        extract_json("{X}")  # balanced, but not JSON (an X is no bracket)


# -- pydantic errors -------------------------------------------------------------------------------------------


class Colour(enum.Enum):
    red = "red"
    blue = "blue"


def _fail(v):
    raise ValueError("bad")


class Shapes(BaseModel):
    colour: Colour
    size: int
    a: Annotated[int, AfterValidator(_fail)] | Annotated[list, AfterValidator(_fail)] = 0

    @field_validator("size")
    @classmethod
    def positive(cls, v: int) -> int:
        assert v > 0, "size must be positive"
        return v


def _lines(data) -> list[str]:
    with pytest.raises(ValidationError) as info:
        Shapes.model_validate(data)
    return summarize_pydantic_errors(info.value)


def test_pydantic_errors_are_worded_for_the_model():
    lines = _lines({"colour": "green", "size": -1, "a": 1})
    assert lines[0] == "colour: must be one of 'red' or 'blue'"
    assert lines[1] == "size: size must be positive"  # "Assertion failed, " dropped
    assert lines[2] == "size: assert -1 > 0"  # one line per line of the message
    assert lines[3:] == ["a: bad", "a: Input should be a valid list"]  # union branch tags dropped from the path
    assert not any("function-" in line for line in lines)


def test_a_message_of_exactly_the_limit_is_not_cut():
    class One(BaseModel):
        a: str

        @field_validator("a")
        @classmethod
        def check(cls, v: str) -> str:
            raise ValueError(v)

    for n, cut in ((MAX_MESSAGE, False), (MAX_MESSAGE + 1, True)):
        with pytest.raises(ValidationError) as info:
            One.model_validate({"a": "y" * n})
        [line] = summarize_pydantic_errors(info.value)
        assert line.endswith("…") is cut and len(line) == len("a: ") + MAX_MESSAGE


# -- the pydantic validator ------------------------------------------------------------------------------------


class Event(BaseModel):
    name: str
    day: dt.date
    tags: list[str] = []


def test_values_come_back_as_json_types():
    outcome = PydanticValidator(Event).validate_text('{"name": "x", "day": "2024-05-01"}', "q")
    assert outcome.ok and outcome.value == {"name": "x", "day": "2024-05-01", "tags": []}


def test_repair_pre_context_and_grammar_hooks():
    seen = {}

    def repair(value, context):
        seen["repair"] = context
        return {**value, "name": value["name"].strip()}, ["name stripped"]

    def pre(value):
        return {**value, "day": "2024-01-02"}, ["day set"]

    def grammar(context):
        seen["grammar"] = context
        return {"grammar": True}

    v = PydanticValidator(Event, lambda request: {"built": request.upper()}, repair=repair, grammar=grammar,
                          declared=lambda request: {"declared": [request]})
    outcome = v.validate_text('{"name": "  x  ", "day": "bad"}', "req", pre=pre)
    assert outcome.ok and outcome.value["name"] == "x" and outcome.value["day"] == "2024-01-02"
    assert outcome.repairs == ["day set", "name stripped"]
    assert seen["repair"] == {"request": "req", "declared": ["req"], "built": "REQ"}
    assert v.context("r") == {"request": "r", "declared": ["r"], "built": "R"}
    assert v.grammar_schema("req", extra={"steps": [["a"]]}) == {"grammar": True}
    assert seen["grammar"] == {"request": "req", "declared": ["req"], "built": "REQ", "steps": [["a"]]}
    v.grammar_schema("req")
    assert "steps" not in seen["grammar"]
    off = v.validate_text('{"name": "  x  ", "day": "2024-01-02"}', "req", repair=False)
    assert off.ok and off.value["name"] == "  x  " and off.repairs == []
    plain = PydanticValidator(Event)
    assert plain.grammar_schema("req") == plain.json_schema() == Event.model_json_schema()
    assert plain.context("r") == {"request": "r"}
    assert plain.validate_text('{"name": "x", "day": "2024-01-02"}', "r").repairs == []


def test_the_schema_is_copied_out():
    v = PydanticValidator(Event)
    first = v.json_schema()
    first["properties"]["name"]["type"] = "integer"
    first["required"].append("nope")
    assert v.json_schema() == Event.model_json_schema()


def test_a_crashing_validator_is_an_invalid_answer_and_logged(caplog):
    class Crashy(BaseModel):
        a: int

        @field_validator("a")
        @classmethod
        def boom(cls, v):
            raise RuntimeError("kaput")

    caplog.set_level(logging.WARNING, logger="rag_middleware.domains.validation")
    outcome = PydanticValidator(Crashy).validate_value({"a": 1}, "q")
    assert not outcome.ok
    assert outcome.errors == ["(root): the answer does not fit the output model (RuntimeError: kaput)"]
    [record] = caplog.records
    assert record.getMessage() == "the Crashy validator raised RuntimeError on an answer; counted as invalid"
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


# -- the JSON schema validator ---------------------------------------------------------------------------------

BRANCHES = [
    {"type": "object", "properties": {"a": {"enum": ["x", "y"]}}, "required": ["a"]},
    {"type": "object", "required": ["b", "c", "d"]},
]


@pytest.mark.parametrize("key", ["anyOf", "oneOf"])
def test_a_union_reports_the_closest_branch(key):
    v = JSONSchemaValidator({key: BRANCHES})
    outcome = v.validate_value({"a": "z"}, "q")
    assert outcome.errors == ["a: must be one of ['x', 'y']"]
    nested = JSONSchemaValidator({"type": "object", "properties": {"p": {key: BRANCHES}}})
    assert nested.validate_value({"p": {"a": "z"}}, "q").errors == ["p.a: must be one of ['x', 'y']"]


def test_json_schema_messages_schema_and_hooks():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
              "required": ["b"]}
    v = JSONSchemaValidator(schema)
    assert v.json_schema() == schema and v.grammar_schema("q", {"steps": []}) == schema
    assert v.validate_value({"a": 1}, "q").errors == ["(root): required field is missing ('b')"]
    assert v.validate_value({"a": "s", "b": "t"}, "q").errors == ["a: 's' is not of type 'integer'"]
    outcome = v.validate_text('{"a": 1}', "q", pre=lambda value: ({**value, "b": "filled"}, ["b filled"]))
    assert outcome.ok and outcome.value == {"a": 1, "b": "filled"} and outcome.repairs == ["b filled"]
    assert v.validate_text('{"a": 1, "b": "x"}', "q").repairs == []
    assert v.validate_text("nothing", "q").errors == [
        "(root): no JSON object found in the answer; answer with one JSON object only"]
    with pytest.raises(jsonschema.exceptions.SchemaError):
        JSONSchemaValidator({"type": "no such type"})
