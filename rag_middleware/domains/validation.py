"""Turning raw model text into a validated object: extraction, validation, and concise error summaries."""

from __future__ import annotations

import copy

import json
import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

__all__ = [
    "ExtractionError",
    "JSONSchemaValidator",
    "OutputValidator",
    "PydanticValidator",
    "ValidationOutcome",
    "extract_json",
    "summarize_pydantic_errors",
]

log = logging.getLogger("rag_middleware.domains.validation")
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
MAX_ERRORS = 8
MAX_MESSAGE = 160


class ExtractionError(ValueError):
    pass


def _balanced_span(text: str) -> str | None:
    """The first balanced {...} or [...] in text, respecting JSON strings. None if it never closes."""
    start = next((i for i, ch in enumerate(text) if ch in "{["), None)
    if start is None:
        return None
    stack: list[str] = []
    in_string = False
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack or stack.pop() != ch:
                return None
            if not stack:
                return text[start : i + 1]
    return None


def extract_json(text: str) -> Any:
    """Strip <think>, prefer the last ```json fence that parses, else the first balanced {...}/[...].

    Models often write a draft fence and then the corrected answer in a later one, so fences are tried from
    the last to the first. Never closes brackets."""
    cleaned = _THINK.sub("", text).strip()
    # last fence first: a later block is the model's revision of an earlier draft
    candidates = [fence.group(1).strip() for fence in reversed(list(_FENCE.finditer(cleaned)))]
    span = _balanced_span(cleaned)
    if span is not None:
        candidates.append(span)
    if not candidates:
        if any(ch in cleaned for ch in "{["):
            raise ExtractionError("the JSON is incomplete (unbalanced brackets); answer with the whole object")
        raise ExtractionError("no JSON object found in the answer; answer with one JSON object only")
    last: Exception | None = None
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError as exc:
            last = exc
    raise ExtractionError(f"invalid JSON: {last.msg} at line {last.lineno} column {last.colno}")  # type: ignore[union-attr]


def _short(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= MAX_MESSAGE else value[: MAX_MESSAGE - 1] + "…"


def _path(loc: tuple[Any, ...]) -> str:
    """``operations.0.execution_instructions.method``: the dotted form small models copy back reliably."""
    return ".".join(str(part) for part in loc) or "(root)"


def summarize_pydantic_errors(exc: ValidationError) -> list[str]:
    """``path: message`` lines without URLs or long input values, at most MAX_ERRORS."""
    lines: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] in ("literal_error", "enum"):
            expected = (err.get("ctx") or {}).get("expected")
            msg = f"must be one of {expected}" if expected else msg
        # a model-level validator may report several problems, one "path: message" per line
        for part in msg.split("\n"):
            line = f"{_path(loc)}: {_short(part)}" if loc else _short(part)
            if line not in lines:
                lines.append(line)
    if len(lines) > MAX_ERRORS:
        lines = lines[:MAX_ERRORS] + [f"(and {len(lines) - MAX_ERRORS} more errors)"]
    return lines


class ValidationOutcome(BaseModel):
    ok: bool
    value: Any = None
    errors: list[str] = []
    repairs: list[str] = []  # what a domain's deterministic repair changed before validation


Repair = Callable[[Any, dict[str, Any]], tuple[Any, list[str]]]
Pre = Callable[[Any], tuple[Any, list[str]]]  # the core's declarative fixes, before a domain's own repair
Grammar = Callable[[dict[str, Any]], dict[str, Any]]


class OutputValidator(Protocol):
    def json_schema(self) -> dict[str, Any]: ...

    def grammar_schema(self, request: str, extra: dict[str, Any] | None = None) -> dict[str, Any]: ...

    def validate_text(self, text: str, request: str, *, repair: bool = True,
                      pre: Pre | None = None) -> ValidationOutcome: ...

    def validate_value(self, value: Any, request: str) -> ValidationOutcome: ...


def _checked_text(validator: OutputValidator, text: str, request: str, *, pre: Pre | None = None,
                 repair: Callable[[Any], tuple[Any, list[str]]] | None = None) -> ValidationOutcome:
    """An answer's text checked: its JSON extracted, ``pre`` (the declarative mechanisms) and then the
    domain's ``repair`` applied, each change listed in the outcome's repairs, and the value validated."""
    try:
        value = extract_json(text)
    except ExtractionError as exc:
        return ValidationOutcome(ok=False, errors=[f"(root): {exc}"])
    repairs: list[str] = []
    if pre is not None:
        value, repairs = pre(value)
    if repair is not None:
        value, more = repair(value)
        repairs = repairs + list(more)
    outcome = validator.validate_value(value, request)
    outcome.repairs = repairs
    return outcome


class PydanticValidator:
    """Validates with a pydantic model.

    - ``context_builder(request)`` gives validators extra facts (such as the request's columns);
    - ``repair(value, context)`` fixes what rules can derive, before validation, and says what it changed;
    - ``grammar(context)`` gives a request-specific JSON schema for the decoding grammar (such as an enum of
      the request's columns); the default is the model's own schema.
    """

    def __init__(self, model: type[BaseModel], context_builder: Callable[[str], dict[str, Any]] | None = None,
                 *, repair: Repair | None = None, grammar: Grammar | None = None,
                 declared: Callable[[str], dict[str, Any]] | None = None) -> None:
        self.model = model
        self.context_builder = context_builder
        self.declared = declared  # the contexts domain.yaml declares, seen by validators and hooks too
        self.repair = repair
        self.grammar = grammar
        self._schema: dict[str, Any] | None = None

    def json_schema(self) -> dict[str, Any]:
        """The model's JSON schema, generated once (pydantic takes ~2 ms) and copied out so callers may edit it."""
        if self._schema is None:
            self._schema = self.model.model_json_schema()
        return copy.deepcopy(self._schema)

    def grammar_schema(self, request: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.grammar({**self.context(request), **(extra or {})}) if self.grammar else self.json_schema()

    def context(self, request: str) -> dict[str, Any]:
        ctx: dict[str, Any] = {"request": request, **(self.declared(request) if self.declared else {})}
        if self.context_builder:
            ctx.update(self.context_builder(request))
        return ctx

    def validate_value(self, value: Any, request: str) -> ValidationOutcome:
        try:
            obj = self.model.model_validate(value, context=self.context(request))
        except ValidationError as exc:
            return ValidationOutcome(ok=False, errors=summarize_pydantic_errors(exc))
        except Exception as exc:  # noqa: BLE001 - a domain's validator that crashes on an odd answer
            log.warning("the %s validator raised %s on an answer; counted as invalid", self.model.__name__,
                        type(exc).__name__, exc_info=True)
            return ValidationOutcome(ok=False, errors=[f"(root): the answer does not fit the output model "
                                                       f"({type(exc).__name__}: {_short(str(exc))})"])
        return ValidationOutcome(ok=True, value=obj.model_dump(mode="json"))

    def validate_text(self, text: str, request: str, *, repair: bool = True,
                      pre: Pre | None = None) -> ValidationOutcome:
        hook = self.repair if repair else None
        return _checked_text(self, text, request, pre=pre,
                            repair=None if hook is None else lambda value: hook(value, self.context(request)))


class JSONSchemaValidator:
    def __init__(self, schema: dict[str, Any]) -> None:
        from jsonschema import Draft202012Validator

        Draft202012Validator.check_schema(schema)
        self.schema = schema
        self._validator = Draft202012Validator(schema)

    def json_schema(self) -> dict[str, Any]:
        return self.schema

    def grammar_schema(self, request: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.schema

    @staticmethod
    def _closest(errors: list[Any]) -> list[Any]:
        """For anyOf/oneOf failures, the errors of the branch that came closest (fewest errors), so the model
        hears 'field: must be one of [...]' instead of 'is not valid under any of the given schemas'."""
        out = []
        for err in errors:
            if err.validator in ("anyOf", "oneOf") and err.context:
                branches: dict[Any, list[Any]] = {}
                for sub in err.context:
                    branches.setdefault(sub.relative_schema_path[0], []).append(sub)
                out.extend(JSONSchemaValidator._closest(min(branches.values(), key=len)))
            else:
                out.append(err)
        return out

    def validate_value(self, value: Any, request: str) -> ValidationOutcome:
        errors = sorted(self._closest(list(self._validator.iter_errors(value))), key=lambda e: list(e.absolute_path))
        if not errors:
            return ValidationOutcome(ok=True, value=value)
        lines = []
        for err in errors[:MAX_ERRORS]:
            msg = err.message
            if err.validator == "required":
                msg = f"required field is missing ({msg.split(' is a required')[0]})"
            elif err.validator == "enum":
                msg = f"must be one of {err.validator_value}"
            lines.append(f"{_path(tuple(err.absolute_path))}: {_short(msg)}")
        if len(errors) > MAX_ERRORS:
            lines.append(f"(and {len(errors) - MAX_ERRORS} more errors)")
        return ValidationOutcome(ok=False, errors=lines)

    def validate_text(self, text: str, request: str, *, repair: bool = True,
                      pre: Pre | None = None) -> ValidationOutcome:
        return _checked_text(self, text, request, pre=pre)  # no repair hook: a JSON Schema domain is data only
