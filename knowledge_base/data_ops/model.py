"""The data_ops plugin: a request about a table becomes a JSON action plan for pandas.

domain.yaml declares what needs no code (methods and task derived, chart_type ruled, operation types voted per
clause, sort cue words). The rest is one table, ``OPS``: per operation type its arguments, each an ``Arg`` that
knows its message, check, columns, repair and grammar. The model, the grammar and hooks.py read only OPS.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

AGG_FUNCS = ["count", "max", "mean", "median", "min", "sum"]
_QUERY_WORDS = {"and", "or", "not", "in", "is", "true", "false", "none", "null", "nan"}
_CONDITION = re.compile(r"==|!=|<=|>=|<|>|\bin\b|\.str\.")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ID_LIKE = re.compile(r"(^id$|_id$|^id_|Id$|_no$|_code$|_number$)", re.I)


def query_columns(query: str) -> list[str]:
    outside = re.sub(r"'[^']*'|\"[^\"]*\"", " ", query)
    names = IDENT.findall(re.sub(r"`[^`]+`", " ", outside))
    return re.findall(r"`([^`]+)`", outside) + [t for t in names if t.lower() not in _QUERY_WORDS]


def _as_list(value: Any) -> list[str]:
    return [] if value is None else [str(v) for v in value] if isinstance(value, list) else [str(value)]


@dataclass(frozen=True)
class Arg:
    """``kind``: column, key (one column or several), columns, query, n, flag, const or map ({column: value});
    ``shown`` in messages; ``pool``: the request's columns the grammar admits (``POOLS``: contexts of
    domain.yaml, the first with values wins); ``value``: a const's value, a map's value schema, or how a flag is
    read from the request's contexts."""

    kind: str
    shown: str
    pool: str = "columns"
    value: Any = None
    required: bool = True

    def columns(self, v: Any) -> list[str]:
        if self.kind == "query":
            return query_columns(v) if isinstance(v, str) else []
        if self.kind == "map":
            return [str(k) for k in v] if isinstance(v, dict) else []
        return _as_list(v) if self.kind in ("column", "key", "columns") else []

    def fits(self, v: Any) -> bool:
        return {"column": lambda: isinstance(v, str), "key": lambda: bool(_as_list(v)),
                "columns": lambda: bool(_as_list(v)), "query": lambda: isinstance(v, str) and bool(v.strip()),
                "n": lambda: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                "flag": lambda: isinstance(v, bool), "const": lambda: v == self.value,
                "map": lambda: isinstance(v, dict) and bool(v)}[self.kind]()

    def fix(self, v: Any, fix: Callable[[Any], Any]) -> Any:
        """Near-miss column names matched (a query's in hooks.py); a column listed twice is a small model
        looping; a string where n belongs is the column, written first."""
        if self.kind == "map":
            return {fix(k): x for k, x in v.items()} if isinstance(v, dict) else v
        if isinstance(v, list) and self.kind in ("key", "columns"):
            return list(dict.fromkeys(fix(x) for x in v))
        if isinstance(v, str) and self.kind in ("column", "key", "columns", "n"):
            return [fix(v)] if self.kind == "columns" else fix(v)
        return v

    def schema(self) -> dict[str, Any]:
        """The argument's shape; columns carry the contexts of domain.yaml the core grounds them in (``POOLS``). A
        grounded list holds each column once; a map has no maxProperties (llama.cpp's llguidance drops those)."""
        ground, value = {"x-ground": copy.deepcopy(POOLS.get(self.pool))}, copy.deepcopy(self.value)
        return {"query": {"type": "string", "minLength": 3, "maxLength": 200},
                "columns": {"type": "array", "items": {"type": "string"}, "minItems": 1, **ground},
                "map": {"type": "object", "additionalProperties": value, "minProperties": 1, **ground},
                "n": {"type": "integer", "minimum": 1}, "flag": {"type": "boolean"},
                "const": {"const": self.value}}.get(self.kind, {"type": "string", **ground})


@dataclass(frozen=True)
class Op:
    args: tuple[Arg, ...] = ()
    kwargs: dict[str, Arg] = field(default_factory=dict)
    note: str = ""  # said after the args' shape

    def problems(self, args: list[Any], kwargs: dict[str, Any]) -> list[tuple[str, str]]:
        """(path below execution_instructions, message), the parts that take arguments first."""
        out: list[tuple[bool, str, str]] = []
        if len(args) != len(self.args) or not all(a.fits(v) for a, v in zip(self.args, args, strict=False)):
            out.append((not self.args, "args", f"must be [{', '.join(a.shown for a in self.args)}]{self.note}"))
        elif args and self.args[0].kind == "query" and not _CONDITION.search(args[0]):
            out.append((False, "args", "must be a condition such as \"price < 5\", not just a column"))
        shown = ", ".join(f'"{k}": {a.shown}' for k, a in self.kwargs.items())
        if not all(a.fits(kwargs.get(k)) for k, a in self.kwargs.items() if a.required) or (kwargs and not shown):
            out.append((not self.kwargs, "kwargs", f"must be {{{shown}}}"))
        else:
            out += [(False, f"kwargs.{k}", f"functions must be one of {', '.join(AGG_FUNCS)}")
                    for k, a in self.kwargs.items() if a.value is FUNC and k in kwargs
                    and any(not isinstance(f, str) or f not in AGG_FUNCS for f in kwargs[k].values())]
        return [(where, message) for _, where, message in sorted(out, key=lambda p: p[0])]


FUNC = {"enum": AGG_FUNCS}
KEY = Arg("key", "column", pool="key")
TEXT = {"type": "string", "maxLength": 40, "pattern": r"^[^\n\r]*$"}  # a small model otherwise runs on in a string
OPS: dict[str, Op] = {
    "remove_duplicates": Op(kwargs={"subset": Arg("columns", "[columns]", required=False)}),
    "remove_empty_rows": Op(kwargs={"how": Arg("const", '"all"', value="all")}),
    "drop_missing": Op(kwargs={"subset": Arg("columns", "[column]", pool="empty")}),
    "fill_missing": Op(kwargs={"value": Arg("map", "{column: value}", pool="empty", value={
        "anyOf": [TEXT, {"type": "number"}, {"type": "boolean"}]})}),
    "filter_rows": Op(args=(Arg("query", "one pandas query string", pool="conditional"),)),
    "group_by": Op(args=(Arg("column", "the column to group by", pool="group"),),
                   kwargs={"agg": Arg("map", "{column: function}", pool="valued", value=FUNC)}),
    "sort": Op(kwargs={"by": KEY, "ascending": Arg("flag", "true or false", value=lambda ctx: bool(
        ctx.get("ascending_cues")) or not ctx.get("descending_cues"))}),  # the cue words are domain.yaml's
    "top_n": Op(args=(Arg("n", "n"), KEY), note=" with n a positive integer"),
    "aggregate": Op(kwargs={"func": Arg("map", "{column: function}", pool="valued", value=FUNC)}),
    "rename_column": Op(kwargs={"columns": Arg("map", "{old: new}", value={
        "type": "string", "minLength": 1, "maxLength": 60, "pattern": r"^[A-Za-z0-9_ ]+$"})}),
    "drop_column": Op(kwargs={"columns": Arg("columns", "[columns]")}),
    "convert_type": Op(kwargs={"dtype": Arg("map", "{column: type}", value={
        "enum": ["int", "float", "str", "bool", "datetime64[ns]", "category"]})}),
    "trim_whitespace": Op(args=(Arg("column", "the column"),)),
    "describe": Op(),
}
Task = Literal["clean", "summarize", "filter", "group_by", "formula", "sort", "transform"]
Chart = Literal["bar", "line", "pie", "histogram", "scatter", "none"]


POOLS = {"columns": ["named", "columns"], "key": ["key_columns", "named", "columns"],
         "group": ["group_columns", "named", "columns"], "empty": ["empty_columns", "named", "columns"],
         "valued": ["valued", "ungrouped", "columns"]}


def query_pattern(columns: list[str]) -> str:
    """pandas queries over these columns: comparisons joined by and/or; values quoted, numbers or lists."""
    names = "|".join(re.escape(c if IDENT.fullmatch(c) else f"`{c}`") for c in sorted(columns, key=len, reverse=True))
    value = r"(?:'[^'\\]{0,40}'|-?[0-9]{1,12}(?:\.[0-9]{1,6})?|True|False)"
    cond = rf"(?:{names}) (?:==|!=|<=|>=|<|>) {value}|(?:{names}) (?:not in|in) \[{value}(?:, {value}){{0,9}}\]"
    return rf"^(?:{cond})(?: (?:and|or) (?:{cond})){{0,3}}$"


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props) if required is None else required,
            "additionalProperties": False}


def grammar_schema(context: dict[str, Any]) -> dict[str, Any]:
    """The decoding grammar: each operation type with its arguments' shapes (the core grounds the annotated
    columns, drops the derived fields and gives each position its clause's types); a condition is a pandas
    query over the columns the request names first, then any but an unnamed identifier."""
    named, every = list(context.get("named") or []), list(context.get("columns") or [])
    conditional = named + [c for c in every if c not in named and not ID_LIKE.search(c)] or every

    def branch(kind: str, op: Op) -> dict[str, Any]:
        shapes = [a.schema() for a in op.args]
        if conditional and op.args and op.args[0].kind == "query":
            shapes[0] = {**shapes[0], "pattern": query_pattern(conditional)}
        args = ({"type": "array", "prefixItems": shapes, "items": False, "minItems": len(op.args)} if op.args
                else {"type": "array", "maxItems": 0})
        kwargs = _obj({k: a.schema() for k, a in op.kwargs.items()}, [k for k, a in op.kwargs.items() if a.required])
        return _obj({"type": {"const": kind}, "execution_instructions": _obj(
            {"method": {"type": "string", "maxLength": 60}, "args": args, "kwargs": kwargs})})

    return _obj({  # built new each call, module-level values copied: the caller may edit it
        "task": {"enum": list(Task.__args__)}, "chart_type": {"enum": list(Chart.__args__)},
        "operations": {"type": "array", "items": {"anyOf": [branch(k, op) for k, op in OPS.items()]},
                       "minItems": 1, "maxItems": 6}})


def _typed(schema: dict[str, Any], _cls: Any = None) -> None:
    """The model's own schema has the argument shapes and column annotations too (the grammar has them with
    the hooks off), without patterns (the core would ground a string with a pattern in the request)."""
    def plain(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: plain(v) for k, v in node.items() if k != "pattern"}
        return [plain(v) for v in node] if isinstance(node, list) else node

    schema.pop("$defs", None)
    schema.update(plain(grammar_schema({})))


class ExecutionInstructions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class Operation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal[tuple(OPS)]  # type: ignore[valid-type]
    execution_instructions: ExecutionInstructions

    def columns(self) -> list[str]:
        """Every column this operation names."""
        ei, op = self.execution_instructions, OPS[self.type]
        return [c for a, v in zip(op.args, ei.args, strict=False) for c in a.columns(v)] + [
            c for k, a in op.kwargs.items() for c in a.columns(ei.kwargs.get(k))]


class ActionPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_typed)
    task: Task
    chart_type: Chart
    operations: list[Operation] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ActionPlan:
        """Every problem at once, one short ``path: message`` line each (a 270M model reads them)."""
        columns = (info.context or {}).get("columns") or []
        problems = [f"operations.{i}.execution_instructions.{where}: {message}" for i, op in enumerate(self.operations)
                    for where, message in OPS[op.type].problems(op.execution_instructions.args,
                                                                op.execution_instructions.kwargs)]
        problems += [f"operations.{i}: unknown column {', '.join(unknown)}; use one of {', '.join(columns)}"
                     for i, op in enumerate(self.operations) if columns
                     and (unknown := [c for c in op.columns() if c not in columns])]
        if problems:
            raise ValueError("\n".join(problems))
        return self
