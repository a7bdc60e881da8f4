"""Mechanisms read off the curated examples, for a domain that declares none (``infer: false`` turns it off).

What a domain author would declare, the examples often already show:

- a field that is a fixed function of an enum field in every example (``team`` of ``category``), with every
  value of that enum covered, is **derived** by that map;
- a number field whose values are written in the questions (as digits, words, or through time units the
  field's name or description gives: ``window_minutes``, "in days") is **grounded** in the request's numbers;
- a free string field whose values are copied from the questions is **grounded** in the request's words;
- an ordered enum field that a number field of the same answer lifts in every example ("at least medium
  from 1,000") gets that **floor** (domains/floors.py);
- a nullable field grounded in the request's numbers or words that the examples set whenever the request
  holds a candidate for it is **set when found**: null is then admitted only when nothing is found;
- every other enum or boolean field, at the top level or in an object (``/sort/order``), not in a list item,
  is **voted** on by the nearest examples (a confident vote narrows the grammar; an unsure one changes nothing),
  and so is whether an optional top-level object (a sort, an aggregate) is set or null.

Declared sections always win; each inference is listed (``domains check`` and the load notes show them).
"""

from __future__ import annotations

import re
from typing import Any

from . import grounding
from .floors import infer_floors
from .paths import Path, enum_values, values_at
from .spec import DeclarativeSpec, DeriveSpec, GroundSpec, VoteSpec

__all__ = ["found_here", "infer", "set_when_found", "time_units"]

_MINUTES = {"second": 1 / 60, "minute": 1, "hour": 60, "day": 1440, "week": 10080, "month": 43200, "year": 525600}
_UNIT_IN_NAME = re.compile(r"(?:^|_|\b)(sec(?:ond)?|min(?:ute)?|h(?:ou)?r|day|week|month|year)s?(?:$|_|\b)", re.I)
_ALIASES = {"sec": "second", "min": "minute", "hr": "hour", "hour": "hour"}
MIN_SEEN = 3  # values needed before a grounding is inferred
MIN_SHARE = 0.9  # of the seen values that must come from the question
FOUND_MIN = 5  # examples holding a candidate before a grounded field is set when found


def time_units(name: str, description: str = "") -> dict[str, float] | None:
    """Unit words -> factor, in the unit the field's name (or its description: "in minutes") gives."""
    match = _UNIT_IN_NAME.search(name) or re.search(r"\bin (seconds|minutes|hours|days|weeks|months|years)\b",
                                                    description, re.I)
    if not match:
        return None
    unit = match.group(1).lower().rstrip("s")
    unit = _ALIASES.get(unit, unit)
    base = _MINUTES.get(unit)
    if base is None:
        return None
    table = {u: f / base for u, f in _MINUTES.items() if f / base >= 1 or u == unit}
    table.update({"min": table.get("minute", 0), "hr": table.get("hour", 0), "sec": table.get("second", 0)})
    return {u: f for u, f in table.items() if f}


def _leaves(node: dict[str, Any], path: Path, out: list[tuple[Path, dict[str, Any]]]) -> None:
    """(path, schema) of every scalar field, through objects, arrays and unions."""
    branches = [node, *[b for k in ("anyOf", "oneOf") for b in node.get(k, []) or [] if isinstance(b, dict)]]
    scalar = False
    for b in branches:
        for name, child in (b.get("properties") or {}).items():
            if isinstance(child, dict):
                _leaves(child, path + (name,), out)
        if isinstance(b.get("items"), dict):
            _leaves(b["items"], path + ("*",), out)
        t = b.get("type")
        types = set(t) if isinstance(t, list) else {t}
        if types & {"string", "integer", "number", "boolean"} or "enum" in b or "const" in b:
            scalar = True
    if scalar and path and all(p != path for p, _ in out):
        out.append((path, node))


def _types(node: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for b in [node, *[b for k in ("anyOf", "oneOf") for b in node.get(k, []) or [] if isinstance(b, dict)]]:
        t = b.get("type")
        out |= set(t) if isinstance(t, list) else {t} if isinstance(t, str) else set()
        if "enum" in b:
            out |= {"enum"}
            out |= {type(v).__name__ for v in b["enum"]}
    return out


def infer(spec: DeclarativeSpec, schema: dict[str, Any], examples: list[tuple[str, Any]]) -> list[str]:
    """Add what the examples show to ``spec`` (in place) and say what was added."""
    notes: list[str] = []
    if not schema or not examples:
        return notes
    leaves: list[tuple[Path, dict[str, Any]]] = []
    _leaves(schema, (), leaves)
    declared = set(spec.ground) | set(spec.derive) | set(spec.vote) | set(spec.units)
    top = [(p, n) for p, n in leaves if len(p) == 1 and p not in declared]
    _derive(spec, top, examples, notes)
    for path, node in leaves:
        if path in declared or path in spec.derive:
            continue
        types = _types(node)
        if "enum" in types or "pattern" in node or "boolean" in types and not (types & {"string", "integer", "number"}):
            continue
        seen: list[tuple[str, Any]] = [(q, v) for q, a in examples for v in values_at(a, path) if v is not None]
        if len(seen) < MIN_SEEN:
            continue
        if types & {"integer", "number"} and not types & {"string"}:
            units = time_units(path[-1], str(node.get("description", "")))
            hits = sum(v in grounding.numbers_in(q) or (bool(units) and v in grounding.quantities(q, units or {}))
                       for q, v in seen if isinstance(v, (int, float)))
            if hits >= MIN_SHARE * len(seen):
                spec.ground[path] = GroundSpec(source="numbers")
                if units and any(v in grounding.quantities(q, units) for q, v in seen):
                    spec.units[path] = units
                notes.append(f"/{'/'.join(path)}: grounded in the request's numbers"
                             + (" (time units)" if path in spec.units else ""))
        elif "string" in types:
            hits = sum(isinstance(v, str) and v.lower() in q.lower() for q, v in seen)
            if hits >= MIN_SHARE * len(seen):
                spec.ground[path] = GroundSpec(source="words")
                notes.append(f"/{'/'.join(path)}: grounded in the request's words")
    _presence(spec, schema, examples, declared, notes)
    numbers = [p for p, g in spec.ground.items() if g.source == "numbers" and len(p) == 1 and p not in spec.units]
    fields = [(p, n) for p, n in leaves if len(p) == 1 and p not in spec.derive and p not in spec.ground]
    for path, floor in infer_floors(fields, numbers, examples).items():
        spec.floor[path] = floor
        notes.append(f"/{path[0]}: {floor.describe()} (the examples show the number lifting it)")
    # enum fields of objects (not of list items, which have no one value per answer) are voted on as well
    nested = [(p, n) for p, n in leaves if len(p) > 1 and "*" not in p and p not in declared]
    for path, node in top + nested:
        if path in spec.derive or path in spec.ground:
            continue
        values = enum_values(node)
        types = _types(node)
        if (len(values) >= 2 and all(isinstance(v, str) for v in values if v is not None)) or \
                types <= {"boolean", "null"} and "boolean" in types:
            spec.vote[path] = VoteSpec(k=7, margin=0.7)
            notes.append(f"/{'/'.join(path)}: voted by the nearest examples")
    return notes


def _presence(spec: DeclarativeSpec, schema: dict[str, Any], examples: list[tuple[str, Any]], declared: set[Path],
              notes: list[str]) -> None:
    """An optional top-level object (a sort, an aggregate) that the examples both set and leave null: whether
    it is set is voted on."""
    for name, node in (schema.get("properties") or {}).items():
        path = (name,)
        if not isinstance(node, dict) or path in declared or not {"object", "null"} <= _types(node):
            continue
        found = [v for _, a in examples for v in values_at(a, path)]
        if None in found and any(isinstance(v, dict) for v in found):
            spec.vote[path] = VoteSpec(k=7, margin=0.7, presence=True)
            notes.append(f"/{name}: whether it is set voted by the nearest examples")


def _derive(spec: DeclarativeSpec, top: list[tuple[Path, dict[str, Any]]], examples: list[tuple[str, Any]],
            notes: list[str]) -> None:
    enums = {p: found for p, n in top
             if len(found := enum_values(n)) >= 3 and all(isinstance(v, str) for v in found)}
    order = [p for p, _ in top]
    for target, node in top:
        if "boolean" in _types(node) or _types(node) & {"integer", "number"}:
            continue
        for source, values in enums.items():
            # a later field follows from an earlier one (of a one-to-one pair, the later is derived)
            if order.index(source) >= order.index(target) or source in spec.derive:
                continue
            mapping: dict[str, Any] = {}
            counts: dict[str, int] = {}
            consistent = True
            for _, answer in examples:
                if not isinstance(answer, dict) or source[0] not in answer or target[0] not in answer:
                    consistent = False
                    break
                key, value = answer[source[0]], answer[target[0]]
                if not isinstance(key, str) or mapping.setdefault(key, value) != value:
                    consistent = False
                    break
                counts[key] = counts.get(key, 0) + 1
            if not consistent or set(mapping) != set(values) or min(counts.values()) < 2:
                continue
            if len(set(map(str, mapping.values()))) < 2 or all(k == v for k, v in mapping.items()):
                continue
            spec.derive[target] = DeriveSpec.model_validate({"from": "/" + source[0], "map": mapping})
            notes.append(f"/{target[0]}: derived from /{source[0]} (the examples follow one map)")
            break


def set_when_found(spec: DeclarativeSpec, pairs: list[tuple[str, Any]]) -> dict[Path, tuple[int, int]]:
    """The top-level fields grounded in the request's numbers or words (the words' shapes applied) whose
    examples (``(request body, answer)``) are set in at least MIN_SHARE of those holding a candidate, at least
    FOUND_MIN of them: ``{path: (holding a candidate, set)}``. Words count only where their shape tells names
    apart (``found_here``)."""
    out = {}
    for path, ground in spec.ground.items():
        if len(path) != 1 or ground.source not in ("numbers", "words"):
            continue
        found = done = 0
        for body, answer in pairs:
            if not found_here(spec, path, body):
                continue
            values = grounding.candidates(ground.source, request=body, body=body, context={},
                                          units=spec.units.get(path), pattern=None, only_mentioned=False) or []
            if ground.source == "words":
                values = [v for v in values if spec.shape[path].admits(v, body)]
            if values and isinstance(answer, dict) and path[0] in answer:
                found += 1
                done += answer[path[0]] is not None
        if found >= FOUND_MIN and done >= MIN_SHARE * found:
            out[path] = (found, done)
    return out


def found_here(spec: DeclarativeSpec, path: Path, body: str) -> bool:
    """Whether a candidate found in this request says the field is set: always for numbers; for words, only
    where the field's shape tells names apart (a request in lower case throughout has every word a candidate)."""
    ground = spec.ground.get(path)
    if ground is None or ground.source != "words":
        return True
    shape = spec.shape.get(path)
    return shape is not None and shape.names(body)
