"""Deterministic repair of data_ops plans: what the rules determine is fixed before validation."""

from __future__ import annotations

import json
import re
from typing import Any

from .model import METHODS, query_columns


# -- deterministic repair ---------------------------------------------------------------------------------
# task (derived from the operations) and chart_type (rules on the request) are declared in domain.yaml.


def request_body(request: str) -> str:
    """The request without its Columns line (column names must not read as instructions)."""
    return "\n".join(line for line in request.splitlines() if not line.lower().startswith("columns:"))

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




def infer_ascending(request: str) -> bool:
    body = request_body(request)
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
        for name in set(query_columns(parts[i])):
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
    body = request_body(request)
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
    """Fix what the operation types determine: methods, argument-free shapes, near-miss column names, the
    argument order of top_n, a missing sort direction, conditions the request never states. Returns
    (value, changes); the input is never modified."""
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
    return {**value, "operations": ops}, changes
