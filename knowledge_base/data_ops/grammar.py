"""The decoding grammar for data_ops: a JSON schema that admits only the request's own columns, the canonical
method of each operation type and, with step guidance, the step types voted for each clause."""

from __future__ import annotations

import re
from typing import Any

from .model import AGG_FUNCS, METHODS, Chart, Task


# The request's columns come from domain.yaml's contexts: ``columns`` (the Columns line), ``named`` (those the
# request names), ``group_columns``, ``key_columns`` and ``empty_columns`` (those a cue names).

ID_LIKE = re.compile(r"(^id$|_id$|^id_|Id$|_no$|_code$|_number$)", re.I)


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
    named = list(context.get("named") or [])
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
    groups = [c for c in context.get("group_columns") or [] if c in columns]
    keys = [c for c in context.get("key_columns") or [] if c in columns]
    key_col: dict[str, Any] = {"enum": keys} if keys else col
    empties = [c for c in context.get("empty_columns") or [] if c in columns]
    empty_cols = {"type": "array", "items": {"enum": empties}, "minItems": 1, "maxItems": len(empties)} \
        if empties else cols
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
        "drop_missing": (empty_args, obj({"subset": empty_cols})),
        "fill_missing": (empty_args, obj({"value": by_column({"anyOf": [short_text, {"type": "number"},
                                                                         {"type": "boolean"}]},
                                                             keys=empties or None)})),
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
