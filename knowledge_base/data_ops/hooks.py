"""The data_ops repair hook: a plan repaired by the table in model.py, after the core derived the method and
the task (domain.yaml splits the request into clauses and labels them)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .model import IDENT, OPS, query_columns

_QUOTED = re.compile(r"('[^']*'|\"[^\"]*\")")
_VALUE = r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]|-?\d+(?:\.\d+)?|True|False"
_CONDITION = re.compile(rf"\s*(?:(and|or)\s+)?(`[^`]+`|{IDENT.pattern})\s*(==|!=|<=|>=|<|>|not in|in)\s*({_VALUE})\s*")
_NUMBER_WORDS = re.compile(r"\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
                           r"fifty|hundred|thousand|million|billion|dozen|half|quarter)\b|%|\d+\s*[kKmM]\b", re.I)


def _fixer(columns: list[str]) -> Callable[[Any], Any]:
    """Map a near-miss column name ('Order Total', 'ordertotal', ' region') to the one real column it means."""
    def norm(name: str) -> str:
        return re.sub(r"[^a-z0-9]", "", name.lower())

    def fix(name: Any) -> Any:
        if not isinstance(name, str) or name in columns:
            return name
        for hits in ([c for c in columns if norm(c) == norm(name)], [c for c in columns if c.strip() == name.strip()]):
            if len(hits) == 1:
                return hits[0]
        return name

    return fix


def _fix_query(query: str, fix: Callable[[Any], Any]) -> str:
    """Fix column names in a query string, outside its quoted values."""
    parts = _QUOTED.split(query)
    for i in range(0, len(parts), 2):  # even parts are outside quotes
        for name in set(query_columns(parts[i])):
            if (fixed := fix(name)) != name and IDENT.fullmatch(fixed):
                parts[i] = re.sub(rf"\b{re.escape(name)}\b", fixed, parts[i])
    return "".join(parts)


def _grounded(value: str, body: str) -> bool:
    """Whether a literal of a query is something the request says (a small model invents values)."""
    if value in ("True", "False"):
        return True
    if value[0] in "'\"":
        text, lowered = value[1:-1].strip().lower(), body.lower()
        words = re.findall(r"[a-z0-9]{3,}", text)
        return not text or text in lowered or (bool(words) and all(w in lowered for w in words))
    if _NUMBER_WORDS.search(body):
        return True  # "over five hundred", "10k", "5%": the number is not written as digits
    return float(value) in {float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", body)}


def drop_invented_conditions(query: str, request: str) -> tuple[str, list[str]]:
    """Drop the conditions (and list items) of a query whose values the request never mentions, as long as a
    grounded condition remains. Returns (query, what was dropped); a query it cannot parse comes back as is."""
    body = "\n".join(line for line in request.splitlines() if not line.lower().startswith("columns:"))
    conditions, pos = [], 0
    while pos < len(query):
        match = _CONDITION.match(query, pos)
        if match is None or match.end() == pos or (conditions and not match.group(1)):
            return query, []
        conditions.append(match.groups())
        pos = match.end()
    kept, dropped = [], []
    for joiner, column, op, value in conditions if body.strip() else []:
        items = re.findall(_VALUE, value[1:-1]) if value.startswith("[") else [value]
        said = [v for v in items if _grounded(v, body)]
        dropped += [f"{column} {op} {v}" for v in items if v not in said] if said else [f"{column} {op} {value}"]
        if said:
            kept.append(f"{joiner or 'and'} {column} {op} {value if said == items else '[' + ', '.join(said) + ']'}")
    return (" ".join(kept).split(" ", 1)[1], dropped) if kept and dropped else (query, [])


def _repair_op(i: int, op: dict[str, Any], fix: Callable[[Any], Any], context: dict[str, Any],
               changes: list[str]) -> Any:
    spec, where, ei = OPS[op["type"]], f"operations.{i}.execution_instructions", op["execution_instructions"]
    args, kwargs = ei.get("args", []), ei.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return op  # validation says what is wrong
    consts = {k: a.value for k, a in spec.kwargs.items() if a.kind == "const"}
    for name, fixed, want in (("args", not spec.args, []), ("kwargs", not spec.kwargs, {}),
                              ("kwargs", bool(consts) and len(consts) == len(spec.kwargs), consts)):
        if fixed and (args if name == "args" else kwargs) != want:  # what the type takes no part in, or fixes
            args, kwargs = ([], kwargs) if name == "args" else (args, dict(want))
            changes.append(f"{where}.{name} -> {json.dumps(want)}")
    before = json.dumps([args, kwargs], sort_keys=True, default=str)
    kwargs = {k: spec.kwargs[k].fix(v, fix) if k in spec.kwargs else v for k, v in kwargs.items()}
    args = [a.fix(v, fix) for a, v in zip(spec.args, args, strict=False)] + args[len(spec.args):]
    if spec.args and spec.args[0].kind == "query" and args and isinstance(args[0], str):
        args[0], invented = drop_invented_conditions(_fix_query(args[0], fix), str(context.get("request") or ""))
        changes += [f"{where}.args.0: dropped {'; '.join(invented)} (not in the request)"] if invented else []
    if json.dumps([args, kwargs], sort_keys=True, default=str) != before:
        changes.append(f"{where}: column names matched to the Columns line")
    if [a.kind for a in spec.args] == ["n", "key"] and len(args) == 2 and isinstance(args[0], str) \
            and isinstance(args[1], int) and not isinstance(args[1], bool):
        args = [args[1], args[0]]
        changes.append(f"{where}.args -> [n, column]")
    for k, a in spec.kwargs.items():  # a flag left out, when the rest is there, is read off the request
        if a.kind == "flag" and not isinstance(kwargs.get(k), bool) and set(spec.kwargs) - {k} <= set(kwargs):
            kwargs[k] = a.value(context)
            changes.append(f"operations.{i}: {k} inferred from the request")
    return {**op, "execution_instructions": {**ei, "args": args, "kwargs": kwargs}}


def repair_plan(value: Any, context: dict[str, Any]) -> tuple[Any, list[str]]:
    """Fix what the operation types determine: argument-free shapes, near-miss column names, the argument
    order of top_n, a missing sort direction, conditions the request never states, an operation repeated.
    Returns (value, changes); the input is never modified."""
    if not isinstance(value, dict) or not isinstance(value.get("operations"), list):
        return value, []
    fix, changes, ops = _fixer(list(context.get("columns") or [])), [], []
    for i, op in enumerate(value["operations"]):
        if isinstance(op, dict) and op.get("type") in OPS and isinstance(op.get("execution_instructions"), dict):
            op = _repair_op(i, op, fix, context, changes)
        if op in ops:  # the same operation twice is a small model looping, never a request
            changes.append(f"operations.{i}: dropped, it repeats an earlier operation")
        else:
            ops.append(op)
    return {**value, "operations": ops}, changes
