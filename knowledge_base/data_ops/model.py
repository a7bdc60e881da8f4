"""The data_ops output model: a request about a table becomes a JSON action plan.

Validators receive a context with the request's columns (``build_context``) and the request text, so they
can check that every column named is real, that ``task`` follows from the operations and that
``chart_type`` follows from the request. ``repair`` fixes what these rules determine before validation,
and ``grammar_schema`` gives llama.cpp / Ollama a schema that only admits the request's own columns and
the canonical method of each operation type.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from rag_middleware.guide import NO_STEP

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


def _query_columns(query: str) -> list[str]:
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
                return _query_columns(a[0]) if a and isinstance(a[0], str) else []
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


# -- deterministic repair ---------------------------------------------------------------------------------

ASC_WORDS = re.compile(r"\b(ascending|increasing|lowest to highest|smallest to largest|least to most|"
                       r"oldest to newest|earliest to latest|cheapest to|a to z|low to high|"
                       r"(smallest|lowest|cheapest|oldest|earliest|youngest|shortest|fewest) first)\b", re.I)
DESC_WORDS = re.compile(r"\b(descending|decreasing|highest to lowest|largest to smallest|most to least|"
                        r"newest to oldest|latest to earliest|z to a|high to low|reverse|"
                        r"(largest|highest|biggest|most|newest|latest|greatest|best|top|longest|slowest|"
                        r"oldest|most expensive) first|(largest|highest|biggest|newest|latest|greatest|best|"
                        r"most)\b)", re.I)
_ARGLESS = {"remove_duplicates", "remove_empty_rows", "drop_missing", "fill_missing", "sort", "aggregate",
            "rename_column", "drop_column", "convert_type", "describe"}
_KWARGLESS = {"filter_rows", "top_n", "trim_whitespace", "describe"}
_QUOTED = re.compile(r"('[^']*'|\"[^\"]*\")")


def _body(request: str) -> str:
    """The request without its Columns line (column names must not read as instructions)."""
    return "\n".join(line for line in request.splitlines() if not line.lower().startswith("columns:"))


def infer_ascending(request: str) -> bool:
    body = _body(request)
    if ASC_WORDS.search(body):
        return True
    return not DESC_WORDS.search(body)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _column_fixer(columns: list[str]):
    """Map a near-miss column name ('Order Total', 'ordertotal') to the one real column it stands for."""
    by_norm: dict[str, list[str]] = {}
    for c in columns:
        by_norm.setdefault(_norm(c), []).append(c)

    def fix(name: Any) -> Any:
        if not isinstance(name, str) or name in columns:
            return name
        hits = by_norm.get(_norm(name), [])
        if len(hits) == 1:
            return hits[0]
        stripped = [c for c in columns if c.strip() == name.strip()]
        return stripped[0] if len(stripped) == 1 else name

    return fix


def _fix_query(query: str, fix) -> str:
    """Fix column names in a query string, outside its quoted values."""
    parts = _QUOTED.split(query)
    for i in range(0, len(parts), 2):  # even parts are outside quotes
        for name in set(_query_columns(parts[i])):
            fixed = fix(name)
            if fixed != name and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", fixed):
                parts[i] = re.sub(rf"\b{re.escape(name)}\b", fixed, parts[i])
    return "".join(parts)


_VALUE = r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]|-?\d+(?:\.\d+)?|True|False"
_CONDITION = re.compile(rf"\s*(?:(and|or)\s+)?(`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)\s*(==|!=|<=|>=|<|>|not in|in)\s*({_VALUE})\s*")
_NUMBER_WORDS = re.compile(r"\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
                           r"fifty|hundred|thousand|million|billion|dozen|half|quarter)\b|%|\d+\s*[kKmM]\b", re.I)


def _grounded(value: str, body: str) -> bool:
    """Whether a literal of a query is something the request says (a small model invents values)."""
    if value in ("True", "False"):
        return True
    if value[0] in "'\"":
        text = value[1:-1].strip().lower()
        words = re.findall(r"[a-z0-9]{3,}", text)
        return not text or text in body.lower() or (bool(words) and all(w in body.lower() for w in words))
    if _NUMBER_WORDS.search(body):
        return True  # "over five hundred", "10k", "5%": the number is not written as digits
    said = {float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", body)}
    return float(value) in said


def drop_invented_conditions(query: str, request: str) -> tuple[str, list[str]]:
    """Drop the conditions (and list items) of a query whose values the request never mentions, as long as a
    grounded condition remains. Returns (query, what was dropped); a query it cannot parse comes back as is."""
    body = _body(request)
    conditions, pos = [], 0
    while pos < len(query):
        match = _CONDITION.match(query, pos)
        if match is None or match.end() == pos or (conditions and not match.group(1)):
            return query, []
        conditions.append(list(match.groups()))
        pos = match.end()
    if not conditions or not body.strip():
        return query, []
    kept, dropped = [], []
    for joiner, column, op, value in conditions:
        if value.startswith("["):
            items = re.findall(_VALUE, value[1:-1])
            said = [v for v in items if _grounded(v, body)]
            if said and len(said) < len(items):
                dropped += [f"{column} {op} {v}" for v in items if v not in said]
                value = "[" + ", ".join(said) + "]"
            grounded = bool(said)
        else:
            grounded = _grounded(value, body)
        if grounded:
            kept.append((joiner, column, op, value))
        else:
            dropped.append(f"{column} {op} {value}")
    if not kept or not dropped:
        return query, []
    parts = [f"{c} {o} {v}" if i == 0 else f"{j or 'and'} {c} {o} {v}" for i, (j, c, o, v) in enumerate(kept)]
    return " ".join(parts), dropped


def _repair_op(i: int, op: dict[str, Any], fix, request: str, changes: list[str]) -> dict[str, Any]:
    kind = op["type"]
    where = f"operations.{i}.execution_instructions"
    ei = dict(op["execution_instructions"])
    args = list(ei["args"]) if isinstance(ei.get("args"), list) else ei.get("args", [])
    kwargs = dict(ei["kwargs"]) if isinstance(ei.get("kwargs"), dict) else ei.get("kwargs", {})
    if ei.get("method") != METHODS[kind]:
        ei["method"] = METHODS[kind]
        changes.append(f"{where}.method -> {METHODS[kind]}")
    if kind in _ARGLESS and args:
        args = []
        changes.append(f"{where}.args -> []")
    if kind in _KWARGLESS and kwargs:
        kwargs = {}
        changes.append(f"{where}.kwargs -> {{}}")
    if kind == "remove_empty_rows" and kwargs != {"how": "all"}:
        kwargs = {"how": "all"}
        changes.append(f'{where}.kwargs -> {{"how": "all"}}')
    before = json.dumps([args, kwargs], sort_keys=True, default=str)
    if isinstance(kwargs, dict):
        if kind == "drop_missing" and isinstance(kwargs.get("subset"), str):
            kwargs["subset"] = [kwargs["subset"]]
        for key in ("subset", "by") + (("columns",) if kind == "drop_column" else ()):
            if key in kwargs:
                val = kwargs[key]
                # a column listed twice is a small model looping, never a request
                kwargs[key] = list(dict.fromkeys(fix(v) for v in val)) if isinstance(val, list) else fix(val)
        for key in ("agg", "func", "value", "dtype") + (("columns",) if kind == "rename_column" else ()):
            if isinstance(kwargs.get(key), dict):
                kwargs[key] = {fix(k): v for k, v in kwargs[key].items()}
    if isinstance(args, list):
        if kind in ("group_by", "trim_whitespace", "top_n"):
            args = [fix(a) if isinstance(a, str) else a for a in args]
        if kind == "filter_rows" and args and isinstance(args[0], str):
            args = [_fix_query(args[0], fix), *args[1:]]
            query, invented = drop_invented_conditions(args[0], request)
            if invented:
                args = [query, *args[1:]]
                changes.append(f"{where}.args.0: dropped {'; '.join(invented)} (not in the request)")
    if json.dumps([args, kwargs], sort_keys=True, default=str) != before:
        changes.append(f"{where}: column names matched to the Columns line")
    if kind == "top_n" and isinstance(args, list) and len(args) == 2 and isinstance(args[0], str) \
            and isinstance(args[1], int) and not isinstance(args[1], bool):
        args = [args[1], args[0]]
        changes.append(f"{where}.args -> [n, column]")
    if kind == "sort" and isinstance(kwargs, dict) and "by" in kwargs and not isinstance(kwargs.get("ascending"), bool):
        kwargs["ascending"] = infer_ascending(request)
        changes.append(f"operations.{i}: ascending inferred from the request")
    ei["args"], ei["kwargs"] = args, kwargs
    return {**op, "execution_instructions": ei}


def repair_plan(value: Any, context: dict[str, Any]) -> tuple[Any, list[str]]:
    """Fix what the rules determine: methods, argument-free shapes, near-miss column names, argument order
    of top_n, a missing sort direction, task (from the operations) and chart_type (from the request).
    Returns (value, changes); the input is never modified."""
    if not isinstance(value, dict) or not isinstance(value.get("operations"), list):
        return value, []
    columns = list(context.get("columns") or [])
    request = str(context.get("request") or "")
    fix = _column_fixer(columns) if columns else (lambda x: x)
    changes: list[str] = []
    ops = [
        _repair_op(i, op, fix, request, changes)
        if isinstance(op, dict) and op.get("type") in METHODS and isinstance(op.get("execution_instructions"), dict)
        else op
        for i, op in enumerate(value["operations"])
    ]
    unique: list[Any] = []
    for i, op in enumerate(ops):  # the same operation twice is a small model looping, never a request
        if op in unique:
            changes.append(f"operations.{i}: dropped, it repeats an earlier operation")
        else:
            unique.append(op)
    ops = unique
    plan = {**value, "operations": ops}
    types = [op.get("type") for op in ops if isinstance(op, dict)]
    if types and len(types) == len(ops) and all(t in METHODS for t in types):
        task = expected_task(types)
        if plan.get("task") != task:
            changes.append(f"task -> {task}")
            plan["task"] = task
    if request:
        chart = expected_chart(request) or "none"
        if plan.get("chart_type") != chart:
            changes.append(f"chart_type -> {chart}")
            plan["chart_type"] = chart
    return plan, changes


# -- decoding grammar -------------------------------------------------------------------------------------

def mentioned_columns(columns: list[str], request: str) -> list[str]:
    """Columns the request body names, as written or with spaces for underscores ('interest rate')."""
    body = _body(request).lower()
    words = set(re.findall(r"[a-z0-9]{3,}", body))
    named = []
    for c in columns:
        low = c.lower().strip()
        forms = {low, low.replace("_", " ")}
        if any(f and re.search(rf"(?<![a-z0-9_]){re.escape(f)}(?![a-z0-9_])", body) for f in forms):
            named.append(c)
        elif len(low) >= 3 and re.fullmatch(r"[a-z0-9]+", low) and any(_abbreviates(low, w) for w in words):
            named.append(c)  # 'dept' for department, 'qty' for quantity, 'plays' for played
    return named


def _abbreviates(column: str, word: str) -> bool:
    common = len(os.path.commonprefix([column, word]))
    if common >= 4 or common == len(column):
        return True
    if column[0] != word[0]:
        return False
    rest = iter(word)
    return all(ch in rest for ch in column)  # the column's letters, in order, within the word


ID_LIKE = re.compile(r"(^id$|_id$|^id_|Id$|_no$|_code$|_number$)", re.I)
_GROUP_CUE = re.compile(r"\b(?:per|by|each|every|for each|for every|broken down by|grouped by|at each|in each)\s+"
                        r"(?:the\s+|a\s+|an\s+)?([A-Za-z0-9_ ]{2,40})", re.I)


def group_columns(columns: list[str], request: str) -> list[str]:
    """Columns named right after a grouping cue ("per region", "by property_type", "each station")."""
    found = []
    body = _body(request)
    for match in _GROUP_CUE.finditer(body):
        before = body[max(0, match.start() - 30) : match.start()]
        if match.group(0).lower().startswith("by") and re.search(r"\b(sort|sorted|order|rank|arrange)\w*\b[^,;.]*$",
                                                                  before, re.I):
            continue  # "sort stores by sales" names a sort key, not a group
        following = match.group(1).lower()
        for c in columns:
            forms = (c.lower(), c.lower().replace("_", " "))
            if any(following == f or following.startswith(f + " ") for f in forms) and c not in found:
                found.append(c)
    return found


_RANK_WORDS = (r"highest|largest|biggest|greatest|most|top|lowest|smallest|least|fewest|best|worst|longest|"
               r"shortest|oldest|newest|latest|earliest|ascending|descending")


def key_columns(columns: list[str], request: str) -> list[str]:
    """Columns that rank rows: "by lifetime_value", "the largest number of reviews", "top score", "in week
    order". The sort key and the top_n column come from these when the request names any."""
    body = _body(request).lower()
    found: list[str] = []
    for c in sorted(columns, key=len, reverse=True):
        forms = "|".join(re.escape(f) for f in dict.fromkeys((c.lower(), c.lower().replace("_", " "))))
        col = rf"(?:{forms})(?![a-z0-9_])"
        cues = (rf"\b(?:by|on)\s+(?:the\s+|their\s+|its\s+|highest\s+|lowest\s+)?{col}",
                rf"\b(?:{_RANK_WORDS})\s+(?:[a-z]+\s+){{0,3}}?{col}",
                rf"\bin\s+(?:[a-z]+\s+)?{col}\s+order\b",
                rf"(?<![a-z0-9_]){col}\s+(?:ascending|descending|high(?:est)?\s+to\s+low|low(?:est)?\s+to\s+high)")
        if any(re.search(cue, body) for cue in cues) and c not in found:
            found.append(c)
    return [c for c in columns if c in found]


def query_pattern(columns: list[str]) -> str:
    """A regex for pandas query strings over these columns: comparisons joined by and/or, values quoted
    strings, numbers or lists, columns with spaces in backticks."""
    names = "|".join(re.escape(c) if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", c) else re.escape(f"`{c}`")
                     for c in sorted(columns, key=len, reverse=True))
    value = r"(?:'[^'\\]{0,40}'|-?[0-9]{1,12}(?:\.[0-9]{1,6})?|True|False)"
    values = rf"\[{value}(?:, {value}){{0,9}}\]"
    cond = rf"(?:{names}) (?:==|!=|<=|>=|<|>) {value}|(?:{names}) (?:not in|in) {values}"
    return rf"^(?:{cond})(?: (?:and|or) (?:{cond})){{0,3}}$"


def grammar_schema(context: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema for the decoding grammar: the request's own columns only, the canonical method of each
    operation type, and the argument shapes of the vocabulary. Semantics are still checked by ActionPlan."""
    all_columns = list(context.get("columns") or [])
    # the columns the request names: a small model otherwise reaches for the first column it sees
    named = mentioned_columns(all_columns, str(context.get("request") or ""))
    columns = named or all_columns
    col: dict[str, Any] = {"enum": columns} if columns else {"type": "string"}
    # at most one entry per column: a small model otherwise repeats one name until num_predict runs out
    cols = {"type": "array", "items": col, "minItems": 1, "maxItems": max(1, len(columns))}
    func = {"enum": sorted(AGG_FUNCS)}

    def by_column(value: dict[str, Any], *, keys: list[str] | None = None) -> dict[str, Any]:
        keys = keys if keys is not None else columns
        if not keys:
            return {"type": "object", "additionalProperties": value, "minProperties": 1}
        # no maxProperties: llama.cpp's llguidance then drops the whole grammar without a word
        return {"type": "object", "properties": {c: value for c in keys}, "additionalProperties": False,
                "minProperties": 1}

    # the column after "per", "by", "each" is the group; the other named columns are what is aggregated; an
    # aggregated column may go unnamed ("count tickets per status" counts some column): then any but the group
    groups = [c for c in group_columns(all_columns, str(context.get("request") or "")) if c in columns]
    keys = [c for c in key_columns(all_columns, str(context.get("request") or "")) if c in columns]
    key_col: dict[str, Any] = {"enum": keys} if keys else col
    group_col: dict[str, Any] = {"enum": groups} if groups else col
    valued = [c for c in named if c not in groups]
    agg_keys = valued or [c for c in all_columns if c not in groups] or all_columns
    # conditions often name a value ("for Paris"), not the column: any column, but an identifier only if named
    conditional = named + [c for c in all_columns if c not in named and not ID_LIKE.search(c)]
    query = {"type": "string", "minLength": 3, "maxLength": 200}
    if columns:
        query["pattern"] = query_pattern(conditional or all_columns)

    def obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
        return {"type": "object", "properties": props, "required": list(props) if required is None else required,
                "additionalProperties": False}

    empty_args = {"type": "array", "maxItems": 0}
    # bounded, single-line strings: a small model otherwise runs on inside a string until num_predict
    short_text = {"type": "string", "maxLength": 40, "pattern": r"^[^\n\r]*$"}
    empty_kwargs = obj({})
    shapes: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "remove_duplicates": (empty_args, obj({"subset": cols}, required=[])),
        "remove_empty_rows": (empty_args, obj({"how": {"const": "all"}})),
        "drop_missing": (empty_args, obj({"subset": cols})),
        "fill_missing": (empty_args, obj({"value": by_column({"anyOf": [short_text, {"type": "number"},
                                                                         {"type": "boolean"}]})})),
        "filter_rows": ({"type": "array", "prefixItems": [query], "items": False, "minItems": 1}, empty_kwargs),
        "group_by": ({"type": "array", "prefixItems": [group_col], "items": False, "minItems": 1},
                     obj({"agg": by_column(func, keys=agg_keys)})),
        "sort": (empty_args, obj({"by": key_col, "ascending": {"type": "boolean"}})),
        "top_n": ({"type": "array", "prefixItems": [{"type": "integer", "minimum": 1}, key_col], "items": False,
                   "minItems": 2}, empty_kwargs),
        "aggregate": (empty_args, obj({"func": by_column(func, keys=agg_keys)})),
        "rename_column": (empty_args, obj({"columns": by_column(
            {"type": "string", "minLength": 1, "maxLength": 60, "pattern": r"^[A-Za-z0-9_ ]+$"})})),
        "drop_column": (empty_args, obj({"columns": cols})),
        "convert_type": (empty_args, obj({"dtype": by_column(
            {"enum": ["int", "float", "str", "bool", "datetime64[ns]", "category"]})})),
        "trim_whitespace": ({"type": "array", "prefixItems": [col], "items": False, "minItems": 1}, empty_kwargs),
        "describe": (empty_args, empty_kwargs),
    }
    operations = [
        obj({"type": {"const": kind},
             "execution_instructions": obj({"method": {"const": METHODS[kind]}, "args": args, "kwargs": kwargs})})
        for kind, (args, kwargs) in shapes.items()
    ]
    by_kind = dict(zip(shapes, operations))
    steps = [[k for k in allowed if k in by_kind] for allowed in (context.get("steps") or [])]
    if steps and all(steps):  # step guidance: position i may only be one of the types voted for clause i
        ops_schema = {"type": "array", "prefixItems": [{"anyOf": [by_kind[k] for k in allowed]} for allowed in steps],
                      "items": False, "minItems": len(steps), "maxItems": len(steps)}
    else:
        ops_schema = {"type": "array", "items": {"anyOf": operations}, "minItems": 1, "maxItems": 6}
    return obj({
        "task": {"enum": list(Task.__args__)},
        "chart_type": {"enum": list(Chart.__args__)},
        "operations": ops_schema,
    })


# -- step guidance ----------------------------------------------------------------------------------------

_VERBS = (r"remove|drop|delete|discard|purge|clear|eliminate|dedupe|deduplicate|keep|filter|restrict|exclude|"
          r"limit|show|display|list|sort|order|arrange|rank|fill|replace|impute|put|set|use|rename|call|relabel|"
          r"convert|cast|change|make|turn|treat|trim|strip|clean|tidy|group|sum|total|count|average|compute|"
          r"calculate|find|give|get|pick|take|select|describe|summari[sz]e|plot|draw|chart|visuali[sz]e|add|tell|"
          r"return|only|finish|end|run|what|which|how")
_STEP_BREAK = re.compile(rf"\s*(?:;|\.\s+|\?\s+|!\s+|\n|:\s+(?=(?:what|which|how|who|then|now)\b)|,?\s+(?:and\s+)?then\s+|,?\s+afterwards,?\s+|"
                         r",?\s+after that,?\s+|,?\s+followed by\s+|,?\s+next,?\s+|,?\s+finally,?\s+|"
                         rf",\s+(?=(?:{_VERBS})\b)|,?\s+and\s+(?=(?:{_VERBS})\b))", re.I)


_CHART_PHRASE = re.compile(
    r"(?:,?\s*(?:and\s+)?\b(?:as|in|on|into|with|via|using|for)\s+(?:a|an|the|my|our)?\s*"
    r"(?:[\w-]+\s+){0,3}?(?:chart|graph|plot|histogram|dashboard|visual\w*|pie)\b(?:\s+please)?"
    r"|,?\s*(?:and\s+)?(?:plotted|charted|graphed|visuali[sz]ed|drawn)\b(?:\s+as\s+(?:a|an)\s+(?:[\w-]+\s+){0,2}"
    r"(?:chart|graph|plot))?)", re.I)
_ABBREVIATIONS = re.compile(r"\b(i\.e|e\.g|etc|vs)\.", re.I)


_SUBORDINATE = re.compile(r"^(?:where|wherever|if|when|whenever|in rows where|for rows where|for any rows? where)\b",
                          re.I)


def split_steps(request: str) -> list[str]:
    """The clauses of a request, one per step it asks for. The Columns line is not a step, a chart phrase
    attached to a clause ("... as a bar chart") is not a step of its own, and a leading condition ("where
    attendance is blank, put 0") belongs to the clause it conditions."""
    body = _ABBREVIATIONS.sub(lambda m: m.group(1), _body(request)).strip().rstrip(".!?")
    out: list[str] = []
    pending = ""
    for part in _STEP_BREAK.split(body):
        clause = _CHART_PHRASE.sub("", part or "").strip(" ,.:")
        if not clause:
            continue
        if pending:
            clause, pending = f"{pending}, {clause}", ""
        if _SUBORDINATE.match(clause) and not out and "," not in clause:
            pending = clause
            continue
        out.append(clause)
    if pending:
        out.append(pending)
    return out


def step_labels(answer: dict[str, Any]) -> list[str]:
    return [op["type"] for op in answer.get("operations", [])]


_EMPTY = re.compile(r"\b(missing|blank|empty|null|nan|no value|without|lacking|no)\b", re.I)
_WHOLE_ROW = re.compile(r"\b(completely|entirely|fully|whatsoever|every (single )?(field|cell|value|column)|"
                        r"all (the )?(values|cells|fields|columns)|nothing (at all|in (it|them)))\b", re.I)
_FILL = re.compile(r"\b(fill|impute|default|replace|put|set|becomes?|should (get|be)|use)\b", re.I)
_REMOVE = re.compile(r"\b(drop|remove|delete|discard|throw (away|out)|exclude|skip|get rid|take out|purge|"
                     r"eliminate|lose)\b", re.I)
_COLUMN_WORD = re.compile(r"\b(columns?|fields?)\b", re.I)
_COUNT = r"(?:\d+|two|three|four|five|six|seven|eight|nine|ten|twelve|fifteen|twenty|fifty|hundred)"
_RANKED_N = re.compile(rf"\b(top|best|highest|largest|biggest|most|greatest|lowest|smallest|worst)\b.*\b{_COUNT}\b|"
                       rf"\b{_COUNT}\b.*\b(top|best|highest|largest|biggest|most|greatest|lowest|smallest|worst)\b|"
                       rf"\btop\s+{_COUNT}\b", re.I)
_PER_GROUP = re.compile(r"\b(each|per|for every|for all the|broken down by|grouped by|by)\b", re.I)
_AGG_WORD = re.compile(r"\b(sum|total|average|mean|median|count|how many|number of|max(?:imum)?|min(?:imum)?|"
                       r"highest|lowest|largest|smallest|coldest|hottest|best|worst|biggest|most|least)\b", re.I)
_WHOLE_TABLE = re.compile(r"\b(overall|entire|whole|all rows|every row|across (all|every|the)|in total|altogether|"
                          r"grand total)\b", re.I)
_SORT_WORD = re.compile(r"\b(sort|order|arrange|rank)\b", re.I)
_WHICH_COLUMN = re.compile(r"^(?:please\s+)?(?:use|using|with|from|based on|on)\s+(?:the\s+)?[\w ]{1,40}?"
                           r"(?:\s+(?:column|field))?$", re.I)
_DESCRIBE = re.compile(r"\b(describe|descriptive|summary statistics|summary stats|quartiles?|percentiles?|"
                       r"spread)\b", re.I)
_PADDING = re.compile(r"\b(whitespace|white space|padding|padded|leading (?:and trailing )?(?:blanks?|spaces?)|"
                      r"trailing (?:blanks?|spaces?)|strip|trim)\b", re.I)
_PERIODIC = re.compile(r"\b(hourly|daily|weekly|monthly|quarterly|yearly|annual|annually)\b", re.I)
_ROW_WORD = re.compile(r"\b(rows?|records?|entries|lines?|duplicates?|duplicated|repeated|copies)\b", re.I)
_COMPARISON = re.compile(r"\b(above|below|over|under|more than|less than|greater than|fewer than|at least|at most|"
                         r"older than|newer than|younger than|higher than|lower than|exceed\w*|between)\s+"
                         r"[$\u20ac\u00a3]?-?\d", re.I)
_ONLY = re.compile(r"^(?:only|just)\b|\bonly$", re.I)
_HAS_VALUE = re.compile(r"\b(have|has|having|with (?:a|an|any)|filled|present|non-?empty|not empty)\b", re.I)


def step_rule(clause: str, request: str) -> list[str] | None:
    """Lexical cues strong enough to name a step outright; None leaves the clause to the similarity vote."""
    columns = build_context(request)["columns"]
    lowered = clause.lower()
    names_column = any(re.search(rf"\b{re.escape(c.lower())}\b", lowered) for c in columns)
    if _WHICH_COLUMN.match(clause) and names_column:
        return [NO_STEP]  # "use the fee column" says which column, it asks for nothing new
    if _DESCRIBE.search(clause):
        return ["describe"]
    if _PADDING.search(clause):
        return ["trim_whitespace"]
    empty = _EMPTY.search(clause)
    if empty and _FILL.search(clause):
        return ["fill_missing"]
    if empty and _WHOLE_ROW.search(clause):
        return ["remove_empty_rows"]
    if _REMOVE.search(clause) and _COLUMN_WORD.search(clause) and not empty:
        return ["drop_column"]
    if _REMOVE.search(clause) and empty and names_column:
        return ["drop_missing"]
    if _RANKED_N.search(clause) and not _PER_GROUP.search(clause.replace(" by ", " ")):
        return ["top_n"]
    if _PER_GROUP.search(clause) and _AGG_WORD.search(clause) and not _WHOLE_TABLE.search(clause) \
            and not _SORT_WORD.search(clause):
        return ["group_by"]
    if _PERIODIC.search(clause) and _AGG_WORD.search(clause) and not _SORT_WORD.search(clause):
        return ["group_by"]  # "monthly mean of output" groups by the period
    if not empty and any(re.match(rf"^(?:please\s+)?(?:{_REMOVE.pattern[2:-2]})\s+(?:out\s+|the\s+)?"
                                  rf"{re.escape(c.lower())}(?:\s+(?:column|field))?(?:\s+(?:first|too|as well))?$",
                                  lowered) for c in columns):
        return ["drop_column"]  # "take out nurse_count": the whole clause is a removal of one named column
    if (_COMPARISON.search(clause) or (_ONLY.search(clause) and not _HAS_VALUE.search(clause))) \
            and not _AGG_WORD.search(clause) and not _SORT_WORD.search(clause) and not _REMOVE.search(clause) \
            and not empty:
        return ["filter_rows"]  # "schools above 500 students only", "delayed by more than 30 minutes"
    return None
