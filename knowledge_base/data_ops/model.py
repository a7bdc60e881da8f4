"""The data_ops output model: a request about a table becomes a JSON action plan.

Validators receive the contexts domain.yaml declares (``columns``: the Columns line) and the request, so
they can check that every column named is real and that each operation's arguments fit its type. What
domain.yaml declares needs no code here: ``task`` is derived from the operations, ``chart_type`` follows
rules on the request, and each clause's operation type is voted. Beside this file: ``repair.py`` fixes
what the operation types determine, ``grammar.py`` gives the decoder each operation's argument shapes over
the request's columns, and ``steps.py`` splits a request into clauses and names the steps lexical cues
decide.
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
_QUERY_WORDS = {"and", "or", "not", "in", "is", "true", "false", "none", "null", "nan"}


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
                elif any(not isinstance(f, str) or f not in AGG_FUNCS for f in agg.values()):
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
                elif any(not isinstance(f, str) or f not in AGG_FUNCS for f in func.values()):
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
        columns = ctx.get("columns") or []
        if columns:
            for i, op in enumerate(self.operations):
                unknown = [c for c in op.columns() if c not in columns]
                if unknown:
                    problems.append(f"operations.{i}: unknown column {', '.join(unknown)}; use one of {', '.join(columns)}")
        if problems:
            raise ValueError("\n".join(problems))
        return self
