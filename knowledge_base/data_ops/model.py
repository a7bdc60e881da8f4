"""The data_ops output model: a request about a table becomes a JSON action plan.

Validators receive a context with the request's columns (``build_context``) and the request text, so they
can check that every column named is real, that ``task`` follows from the operations and that
``chart_type`` follows from the request. Beside this file: ``repair.py`` fixes what these rules determine
before validation, ``grammar.py`` gives llama.cpp / Ollama a schema that only admits the request's own
columns and the canonical method of each operation type, and ``steps.py`` splits a request into the
clauses that step guidance labels. They import from here as ``from .model import ...``: the middleware
loads a domain's files as one package.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

Task = Literal["clean", "summarize", "filter", "group_by", "formula", "sort", "transform"]
Chart = Literal["bar", "line", "pie", "histogram", "scatter", "none"]
OpType = Literal[
    "remove_duplicates", "remove_empty_rows", "drop_missing", "fill_missing", "filter_rows", "group_by", "sort",
    "top_n", "aggregate", "rename_column", "drop_column", "convert_type", "trim_whitespace", "describe",
]

METHODS: dict[str, str] = {
    "remove_duplicates": "pandas.DataFrame.drop_duplicates",
    "remove_empty_rows": "pandas.DataFrame.dropna",
    "drop_missing": "pandas.DataFrame.dropna",
    "fill_missing": "pandas.DataFrame.fillna",
    "filter_rows": "pandas.DataFrame.query",
    "group_by": "pandas.DataFrame.groupby",
    "sort": "pandas.DataFrame.sort_values",
    "top_n": "pandas.DataFrame.nlargest",
    "aggregate": "pandas.DataFrame.agg",
    "rename_column": "pandas.DataFrame.rename",
    "drop_column": "pandas.DataFrame.drop",
    "convert_type": "pandas.DataFrame.astype",
    "trim_whitespace": "pandas.Series.str.strip",
    "describe": "pandas.DataFrame.describe",
}
AGG_FUNCS = {"sum", "mean", "median", "min", "max", "count"}
CHART_WORDS = re.compile(r"\b(chart|plot|graph|visual\w*|dashboard|histogram|pie|scatter)\b", re.I)
NAMED_CHART = re.compile(r"\b(bar|line|pie|scatter|histogram)[\s-]*(?:chart|plot|graph|diagram|visual)s?\b", re.I)
STANDALONE_CHART = re.compile(r"\b(histogram|pie|scatter)s?\b", re.I)
_QUERY_WORDS = {"and", "or", "not", "in", "is", "true", "false", "none", "null", "nan"}


def build_context(request: str) -> dict[str, Any]:
    """The facts validators may use: the columns on the first ``Columns:`` line, and the request text."""
    columns: list[str] = []
    for line in request.splitlines():
        if line.lower().startswith("columns:"):
            columns = [c.strip() for c in line.split(":", 1)[1].split(",") if c.strip()]
            break
    return {"columns": columns, "request": request}


def expected_task(types: list[str]) -> str:
    present = set(types)
    if "group_by" in present:
        return "group_by"
    if "aggregate" in present:
        return "formula"
    if present & {"sort", "top_n"}:
        return "sort"
    if "filter_rows" in present:
        return "filter"
    if "describe" in present:
        return "summarize"
    if present & {"rename_column", "drop_column", "convert_type"}:
        return "transform"
    return "clean"


def expected_chart(request: str) -> str | None:
    """The chart type a request implies, or None when it does not ask for one.

    A type named next to a chart word ("line chart", "scatter plot") wins; then a type that is a chart by
    itself ("histogram", "pie"); otherwise an unnamed chart or a dashboard gives bar. "line items" is not a
    line chart."""
    text = request.split("\n", 1)[1] if request.lower().startswith("columns:") and "\n" in request else request
    if not CHART_WORDS.search(text):
        return None
    named = NAMED_CHART.search(text)
    if named:
        return named.group(1).lower()
    alone = STANDALONE_CHART.search(text)
    return alone.group(1).lower() if alone else "bar"


class ExecutionInstructions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)


def query_columns(query: str) -> list[str]:
    without_strings = re.sub(r"'[^']*'|\"[^\"]*\"", " ", query)
    backticked = re.findall(r"`([^`]+)`", without_strings)
    rest = re.sub(r"`[^`]+`", " ", without_strings)
    names = [t for t in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", rest) if t.lower() not in _QUERY_WORDS]
    return backticked + names


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _keys(value: Any) -> list[str]:
    return [str(k) for k in value] if isinstance(value, dict) else []


class Operation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: OpType
    execution_instructions: ExecutionInstructions

    def columns(self) -> list[str]:
        """Every column this operation names."""
        a, kw = self.execution_instructions.args, self.execution_instructions.kwargs
        match self.type:
            case "remove_duplicates" | "drop_missing":
                return _as_list(kw.get("subset"))
            case "fill_missing":
                return _keys(kw.get("value"))
            case "filter_rows":
                return query_columns(a[0]) if a and isinstance(a[0], str) else []
            case "group_by":
                return _as_list(a[0] if a else None) + _keys(kw.get("agg"))
            case "sort":
                return _as_list(kw.get("by"))
            case "top_n":
                return _as_list(a[1]) if len(a) > 1 else []
            case "aggregate":
                return _keys(kw.get("func"))
            case "rename_column":
                return _keys(kw.get("columns"))
            case "drop_column":
                return _as_list(kw.get("columns"))
            case "convert_type":
                return _keys(kw.get("dtype"))
            case "trim_whitespace":
                return _as_list(a[0] if a else None)
        return []

    def shape_problems(self) -> list[tuple[str, str]]:
        """(path below execution_instructions, message) for arguments that do not fit the operation type."""
        ei = self.execution_instructions
        a, kw = ei.args, ei.kwargs
        out: list[tuple[str, str]] = []
        if ei.method != METHODS[self.type]:
            out.append(("method", f"must be {METHODS[self.type]} for {self.type}"))
        match self.type:
            case "remove_empty_rows":
                if kw != {"how": "all"}:
                    out.append(("kwargs", 'must be {"how": "all"}'))
            case "drop_missing":
                if not _as_list(kw.get("subset")):
                    out.append(("kwargs", 'must be {"subset": [column]}'))
            case "fill_missing":
                if not isinstance(kw.get("value"), dict) or not kw["value"]:
                    out.append(("kwargs", 'must be {"value": {column: value}}'))
            case "filter_rows":
                if len(a) != 1 or not isinstance(a[0], str) or not a[0].strip():
                    out.append(("args", "must be [one pandas query string]"))
                elif not re.search(r"==|!=|<=|>=|<|>|\bin\b|\.str\.", a[0]):
                    out.append(("args", "must be a condition such as \"price < 5\", not just a column"))
            case "group_by":
                agg = kw.get("agg")
                if len(a) != 1 or not isinstance(a[0], str):
                    out.append(("args", "must be [the column to group by]"))
                if not isinstance(agg, dict) or not agg:
                    out.append(("kwargs", 'must be {"agg": {column: function}}'))
                elif any(f not in AGG_FUNCS for f in agg.values()):
                    out.append(("kwargs.agg", f"functions must be one of {', '.join(sorted(AGG_FUNCS))}"))
            case "sort":
                if "by" not in kw or not isinstance(kw.get("ascending"), bool):
                    out.append(("kwargs", 'must be {"by": column, "ascending": true or false}'))
            case "top_n":
                if len(a) != 2 or not isinstance(a[0], int) or isinstance(a[0], bool) or a[0] < 1:
                    out.append(("args", "must be [n, column] with n a positive integer"))
            case "aggregate":
                func = kw.get("func")
                if not isinstance(func, dict) or not func:
                    out.append(("kwargs", 'must be {"func": {column: function}}'))
                elif any(f not in AGG_FUNCS for f in func.values()):
                    out.append(("kwargs.func", f"functions must be one of {', '.join(sorted(AGG_FUNCS))}"))
            case "rename_column":
                if not isinstance(kw.get("columns"), dict) or not kw["columns"]:
                    out.append(("kwargs", 'must be {"columns": {old: new}}'))
            case "drop_column":
                if not _as_list(kw.get("columns")):
                    out.append(("kwargs", 'must be {"columns": [columns]}'))
            case "convert_type":
                if not isinstance(kw.get("dtype"), dict) or not kw["dtype"]:
                    out.append(("kwargs", 'must be {"dtype": {column: type}}'))
            case "trim_whitespace":
                if len(a) != 1 or not isinstance(a[0], str):
                    out.append(("args", "must be [the column]"))
            case "describe" | "remove_duplicates":
                pass
        if self.type in ("remove_duplicates", "remove_empty_rows", "drop_missing", "fill_missing", "sort",
                         "aggregate", "rename_column", "drop_column", "convert_type", "describe") and a:
            out.append(("args", "must be []"))
        if self.type in ("filter_rows", "top_n", "trim_whitespace", "describe") and kw:
            out.append(("kwargs", "must be {}"))
        return out


class ActionPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: Task
    chart_type: Chart
    operations: list[Operation] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ActionPlan:
        """Every rule at once, one ``path: message`` line per problem (short enough for a 270M model)."""
        ctx = info.context or {}
        problems: list[str] = []
        for i, op in enumerate(self.operations):
            for where, message in op.shape_problems():
                problems.append(f"operations.{i}.execution_instructions.{where}: {message}")
        want = expected_task([op.type for op in self.operations])
        if self.task != want:
            problems.append(f"task: must be {want} for these operations")
        columns = ctx.get("columns") or []
        if columns:
            for i, op in enumerate(self.operations):
                unknown = [c for c in op.columns() if c not in columns]
                if unknown:
                    problems.append(f"operations.{i}: unknown column {', '.join(unknown)}; use one of {', '.join(columns)}")
        request = ctx.get("request")
        if request:
            chart = expected_chart(request) or "none"
            if self.chart_type != chart:
                problems.append(f"chart_type: must be {chart} for this request")
        if problems:
            raise ValueError("\n".join(problems))
        return self


def request_body(request: str) -> str:
    """The request without its Columns line (column names must not read as instructions)."""
    return "\n".join(line for line in request.splitlines() if not line.lower().startswith("columns:"))
