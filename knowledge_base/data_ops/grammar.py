"""The decoding grammar for data_ops: a JSON schema that admits only the request's own columns, the canonical
method of each operation type and, with step guidance, the step types voted for each clause."""

from __future__ import annotations

import os
import re
from typing import Any

from .model import AGG_FUNCS, METHODS, Chart, Task, request_body


# -- decoding grammar -------------------------------------------------------------------------------------

def mentioned_columns(columns: list[str], request: str) -> list[str]:
    """Columns the request body names, as written or with spaces for underscores ('interest rate')."""
    body = request_body(request).lower()
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
    body = request_body(request)
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


def _cued_columns(columns: list[str], request: str, cues: list[str]) -> list[str]:
    """The columns that some cue names. Each cue is a regex with ``{col}`` where a column name (as written
    or with spaces for underscores) stands; it runs on the lower-cased request body."""
    forms: dict[str, str] = {}
    for c in columns:
        for form in (c.lower(), c.lower().replace("_", " ")):
            forms.setdefault(form, c)
    if not forms:
        return []
    col = "(?P<col>" + "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)) + ")(?![a-z0-9_])"
    body = request_body(request).lower()
    found = {forms[m.group("col")] for cue in cues for m in re.finditer(cue.replace("{col}", col), body)}
    return [c for c in columns if c in found]


def key_columns(columns: list[str], request: str) -> list[str]:
    """Columns that rank rows: "by lifetime_value", "the largest number of reviews", "top score", "in week
    order". The sort key and the top_n column come from these when the request names any."""
    return _cued_columns(columns, request, [
        r"\b(?:by|on)\s+(?:the\s+|their\s+|its\s+|highest\s+|lowest\s+)?{col}",
        rf"\b(?:{_RANK_WORDS})\s+(?:[a-z]+\s+){{0,3}}?{{col}}",
        r"\bin\s+(?:[a-z]+\s+)?{col}\s+order\b",
        r"(?<![a-z0-9_]){col}\s+(?:ascending|descending|high(?:est)?\s+to\s+low|low(?:est)?\s+to\s+high)",
    ])


_EMPTY_WORD = r"(?:missing|blank|empty|null|nan|absent|unknown)"


def empty_columns(columns: list[str], request: str) -> list[str]:
    """Columns named as empty: "no phone", "missing email", "where discount is blank". The subset of
    drop_missing and the keys of fill_missing come from these when the request names any."""
    return _cued_columns(columns, request, [
        r"\b(?:no|missing|without|lacking|blank|empty|null)\s+(?:a\s+|an\s+|any\s+|the\s+)?{col}",
        r"(?<![a-z0-9_]){col}\s+(?:values?\s+|entries\s+|fields?\s+|cells?\s+)?(?:is|are|was|were)\s+"
        rf"(?:still\s+)?{_EMPTY_WORD}",
        rf"(?<![a-z0-9_]){{col}}\s+(?:values?\s+|entries\s+)?{_EMPTY_WORD}\b",
        rf"\b{_EMPTY_WORD}\s+(?:values?\s+|entries\s+)?(?:in|of|for)\s+(?:the\s+)?{{col}}",
    ])


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
    empties = [c for c in empty_columns(all_columns, str(context.get("request") or "")) if c in columns]
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
