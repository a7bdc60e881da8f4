"""The declarative mechanisms at work: the grammar narrowed per request, and the answer made consistent.

``Declarative.grammar`` takes the schema that would go to the decoder and narrows it for one request:
grounded fields admit only values from the request (or its context), derived fields disappear (the model is
never asked for them), and confident votes restrict their fields. ``Declarative.post`` runs on the parsed
answer before validation: hardening (near misses snapped, repeats and duplicates dropped, lists bounded),
then derived fields filled. Each change is reported as one line for the attempt's ``repairs``.
"""

from __future__ import annotations

import copy
import difflib
import json
from functools import cached_property
from typing import Any, Protocol

from . import grounding
from .floors import lift
from .infer import found_here
from .annotations import ground_annotations, iter_sources
from .implied_labels import imply
from .named_values import unnamed
from .value_phrases import phrase_values
from .narrowing import (annotated, apply_votes, drop_shape, ground_node, narrowed_copy, no_items, nullable, restrict,
                        strip_annotations, types_of)
from .paths import (MISSING, Path, inline_refs, parent_objects, schema_nodes, schema_words, set_at, show_path,
                    values_at)
from .satisfiable import guarded
from .spec import BUILTIN_SOURCES, DeclarativeSpec
from .spent import numeric_annotations, spend_anchored, spend_settled
from .sure_items import SureValues, add_sure, in_request_order, require_items
from .used_values import raise_minimum, used_values, written

__all__ = ["Declarative", "Flags", "show_path"]


class Flags(Protocol):
    """Which mechanisms are on (assembly.Switches has these)."""

    ground: bool
    derive: bool
    vote: bool
    harden: bool


def _pattern(node: dict[str, Any]) -> str | None:
    for branch in [node, *(node.get("anyOf") or []), *(node.get("oneOf") or [])]:
        if isinstance(branch, dict) and isinstance(branch.get("pattern"), str):
            return branch["pattern"]
    return None


class Declarative:
    """One domain's declarative mechanisms. ``schema``: the domain's full output schema (for enums and
    patterns); ``None`` for a free-text domain. ``reader``: one of the same spec whose read contexts it shares."""

    def __init__(self, spec: DeclarativeSpec, schema: dict[str, Any] | None, *, reader: Declarative | None = None):
        self.spec = spec
        self.schema = inline_refs(schema) if schema else {}
        self.patterns: dict[Path, str] = {}  # pattern-bound strings, grounded in the request by default
        self._pattern_paths(self.schema, ())
        for path in self.spec.ground:
            self.patterns.pop(path, None)
        self._enums: dict[Path, list[Any]] = {}
        self._contexts: dict[str, dict[str, list[str]]] = {} if reader is None else reader._contexts
        self.numbers = any(types_of(n) & {"integer", "number"} for n in _numeric_nodes(self.schema))
        self.annotated = bool(annotated(self.schema))
        self.units = spec.unit_words
        # the schema's own words (field names, labels) are no request's values: "by host" names no host
        self.vocabulary = frozenset(form for word in schema_words(self.schema)
                                    for form in (word.lower(), word.lower().replace("_", " ")))

    @cached_property
    def _numeric_annotations(self) -> list[Path]:
        return numeric_annotations(self.schema)  # the schema's, read once: it does not change between requests

    def unknown_sources(self) -> list[str]:
        """The ``x-ground`` sources of the schema that name neither a built-in source nor a declared context."""
        known = set(BUILTIN_SOURCES) | set(self.spec.context)
        found = list(iter_sources(self.schema))
        return sorted({str(s) for s in found if s not in known})

    def _pattern_paths(self, node: Any, path: Path) -> None:
        if not isinstance(node, dict):
            return
        pattern = _pattern(node)
        if pattern is not None and "string" in types_of(node):
            self.patterns.setdefault(path, pattern)
        for key in ("anyOf", "oneOf", "allOf"):
            for branch in node.get(key, []) or []:
                self._pattern_paths(branch, path)
        for name, child in (node.get("properties") or {}).items():
            self._pattern_paths(child, path + (name,))
        for key in ("items", "additionalProperties"):
            self._pattern_paths(node.get(key), path + ("*",))
        for child in node.get("prefixItems", []) or []:
            self._pattern_paths(child, path + ("*",))

    @property
    def active(self) -> bool:
        s = self.spec
        return bool(s.ground or s.derive or s.vote or self.patterns or s.harden.max_items or self.numbers
                    or self.annotated)

    # -- context --------------------------------------------------------------------------------------

    def mentions(self, body: str) -> str:
        """``body`` as the labels it names are read from: the words naming a grounded value's kind blanked."""
        return unnamed(body, self.spec.named.values()) if self.spec.named else body

    def vote_labels(self) -> dict[Path, list[Any]]:
        """Each voted field's string labels, from the schema."""
        return {path: self.enum_at(path) for path in self.spec.vote} if self.schema is not None else {}

    def context(self, request: str) -> dict[str, list[str]]:
        """The declared contexts of one request. One request asks for them several times (votes, clause rules,
        the grammar, hardening), so the last few are kept; each caller gets its own lists."""
        found = self._contexts.get(request)
        if found is None:
            found = grounding.build_context(request, self.spec.context)
            if len(self._contexts) >= 64:
                self._contexts.pop(next(iter(self._contexts)))
            self._contexts[request] = found
        return {name: list(values) for name, values in found.items()}

    # -- the grammar ----------------------------------------------------------------------------------

    def grammar(self, base: dict[str, Any], request: str, *, flags: Flags, votes: list[dict[str, Any]] | None = None,
                steps: list[list[str]] | None = None,
                steps_path: Path | None = None) -> tuple[dict[str, Any], list[str]]:
        """The narrowed grammar and one note per decision (for ``--explain``)."""
        notes: list[str] = []
        if not (self.active or steps):
            return (strip_annotations(base) if annotated(base) else base), notes
        schema = inline_refs(base)
        if flags.derive:
            self._unask_derived(schema, notes)
        sure: SureValues = {}
        if flags.ground:
            self._ground(schema, request, notes, sure, unfound={v["path"] for v in votes or [] if v.get("unfound")})
            for vote in [v for v in votes or [] if v.get("leftover")]:  # numbers no other field takes: items
                add_sure(sure, tuple(vote["path"].strip("/").split("/")), vote["leftover"])
        body = grounding.request_body(request, self.spec.context)
        if flags.vote:
            apply_votes(schema, votes or [], notes)
            if flags.ground:
                spend_anchored(self.spec, schema, votes or [], notes)
                spend_settled(self.spec, schema, self._numeric_annotations, body, notes)
        if steps and steps_path:
            self._per_position(schema, steps_path, steps, notes)
        if sure:  # after the votes and the spent numbers (a value they took is no item), and one position per clause
            require_items(schema, sure, body, notes)
        self._bound(schema, harden=getattr(flags, "harden", True))
        # grounding took every annotation off as it read it; with grounding off they are still there
        schema = guarded(schema if flags.ground else strip_annotations(schema),
                         lambda: strip_annotations(inline_refs(base)), notes)
        return schema, list(dict.fromkeys(notes))

    def _unask_derived(self, schema: dict[str, Any], notes: list[str]) -> None:
        """Derived fields leave the grammar: the core fills them in after generation."""
        for path in self.spec.derive:
            for parent in parent_objects(schema, path):
                parent["properties"].pop(path[-1], None)
                if isinstance(parent.get("required"), list) and path[-1] in parent["required"]:
                    parent["required"] = [r for r in parent["required"] if r != path[-1]]
            notes.append(f"{show_path(path)}: derived after generation, not asked")

    def _bound(self, schema: dict[str, Any], *, harden: bool) -> None:
        """When hardening: bounds on numbers, and on list lengths (``harden.max_items``)."""
        if not harden:
            return
        for node in _numeric_nodes(schema):  # a small model otherwise runs on in digits to num_predict
            if "enum" not in node and "const" not in node:
                node.setdefault("maximum", NUMBER_BOUND)
                node.setdefault("minimum", -NUMBER_BOUND)
        if self.spec.harden.max_items:
            for node in _arrays(schema):
                cap = min(node.get("maxItems", self.spec.harden.max_items), self.spec.harden.max_items)
                node["maxItems"] = cap
                # a planned list longer than the bound keeps its first positions: minItems above maxItems is a
                # grammar llama.cpp cannot compile, and drops without a word (the answer is then unconstrained)
                node["minItems"] = min(node.get("minItems", 0), cap)
                if isinstance(node.get("prefixItems"), list) and len(node["prefixItems"]) > cap:
                    node["prefixItems"] = node["prefixItems"][:cap]

    def _ground(self, schema: dict[str, Any], request: str, notes: list[str], sure: SureValues, *,
                unfound: set[str] = frozenset()) -> None:
        """Ground the request's values (in place); the values surely list items of their own go to ``sure``."""
        body = grounding.request_body(request, self.spec.context)
        ctx = self.context(request)
        spent = self.vocabulary | grounding.unit_bound(body, self.units)  # another field's, or the schema's
        targets = [(p, g.source, g.mentioned) for p, g in self.spec.ground.items()]
        targets += [(p, "request", False) for p in self.patterns]
        for path, source, only_mentioned in targets:
            for node in schema_nodes(schema, path):
                may_be_null = nullable(node)
                values = grounding.candidates(source, request=request, body=body, context=ctx,
                                              units=self.spec.units.get(path), pattern=_pattern(node),
                                              only_mentioned=only_mentioned, spent=spent)
                if values is None:
                    continue
                types = types_of(node)
                if "integer" in types and "number" not in types and source == "numbers":
                    values = [v for v in values if isinstance(v, int)]
                if "enum" in node:
                    values = [v for v in values if v in node["enum"]]
                if source == "words" and path in self.spec.shape:  # the examples' values are names: no "newest"
                    values = [v for v in values if self.spec.shape[path].admits(v, body)]
                if not values and not may_be_null:
                    star = path.index("*") if "*" in path else -1
                    # a list that may be empty loses the item shape that needs the value (all of them: no item)
                    if star >= 0 and no_items(schema_nodes(schema, path[:star]), dry=True) and drop_shape(
                            schema_nodes(schema, path[: star + 1]), node):
                        notes.append(f"{show_path(path[:star])}: no item of a shape whose {show_path(path[star + 1:])}"
                                     " has nothing in the request to ground it")
                        continue
                    if star >= 0 and no_items(schema_nodes(schema, path[:star])):
                        notes.append(f"{show_path(path[: path.index('*')])}: no item (nothing in the request to "
                                     f"ground {show_path(path)})")
                        break
                    notes.append(f"{show_path(path)}: nothing in the request to ground it; left open")
                    continue
                # a code the request writes in the field's own pattern is that field's value: no null then; nor
                # for a field the examples set whenever the request holds a candidate (infer.set_when_found)
                found = path in self.spec.found and show_path(path) not in unfound and found_here(self.spec, path, body)
                ground_node(node, values, may_be_null and not (values and (source == "request" or found)),
                            numeric=source == "numbers")
                notes.append(f"{show_path(path)}: grounded in {source}: {values[:12]}")
        named = ground_annotations(schema, lambda source, node: grounding.candidates(
            source, request=request, body=body, context=ctx, units=None, pattern=_pattern(node),
            only_mentioned=False, spent=spent), lambda path, v: path not in self.spec.shape or self.spec.shape[
            path].admits(v, body), notes, named=self.spec.named, body=body)
        phrased = phrase_values(schema, body, self.spec.phrased, notes, self.spec.numbered)
        imply(schema, self.spec.implied, notes)
        used = written(self.spec.used, request, self.spec)
        notes += raise_minimum(schema, used)
        for found in (named, phrased, used_values(used)):
            for path, values in found.items():
                add_sure(sure, path, values)

    @staticmethod
    def _per_position(schema: dict[str, Any], path: Path, steps: list[list[str]], notes: list[str]) -> None:
        """Position i of the list at ``path[:star]`` admits only the labels voted for clause i."""
        star = path.index("*")
        inner = path[star + 1 :]
        for array in schema_nodes(schema, path[:star]):
            prefix = array.get("prefixItems")
            if isinstance(prefix, list) and len(prefix) == len(steps):
                items = prefix
            elif isinstance(array.get("items"), dict):
                items = [array["items"]] * len(steps)
            else:
                continue
            out = []
            for item, allowed in zip(items, steps, strict=True):  # each position gets its own copy
                if inner and schema_nodes(item, inner):
                    new = narrowed_copy(item, inner, allowed)
                else:
                    new = restrict(copy.deepcopy(item), allowed)
                if new is None:
                    return
                out.append(new)
            array.update({"prefixItems": out, "items": False, "minItems": len(out), "maxItems": len(out)})
            notes.append(f"{show_path(path)}: one position per clause, {steps}")

    # -- the answer -----------------------------------------------------------------------------------

    def post(self, value: Any, request: str, *, flags: Flags) -> tuple[Any, list[str]]:
        repairs: list[str] = []
        if not isinstance(value, (dict, list)):
            return value, repairs
        value = copy.deepcopy(value)
        if flags.harden:
            h = self.spec.harden
            if h.drop_repeats or h.dedupe_lists or h.max_items:
                value = _lists(value, (), h.drop_repeats, h.dedupe_lists, h.max_items, repairs)
            if h.snap_enums:
                self._snap(value, request, repairs, ground=flags.ground)
            if h.drop_repeats and flags.ground:
                self._one_use(value, repairs)
        if flags.ground and self.spec.ordered:  # sure items come first in the grammar: back in the request's order
            in_request_order(value, self.spec.ordered, grounding.request_body(request, self.spec.context), repairs)
        if flags.vote:
            self._ruled(value, request, repairs)
        if flags.derive:
            for path, spec in self.spec.derive.items():
                self._derive(value, path, spec, repairs)
            if getattr(flags, "floors", True):  # a floor's examples may sit below it: the load check skips it
                lift(value, self.spec.floor, repairs)
        return value, repairs

    def _ruled(self, value: Any, request: str, repairs: list[str]) -> None:
        """A declared vote rule that matches the request decides the value outright, also when a backend
        ignored the grammar."""
        from .rule_match import decide_by_rule

        ruled = [(p, s) for p, s in self.spec.vote.items() if s.rules and not s.per_clause]
        if not ruled or not isinstance(value, dict):
            return
        body = grounding.request_body(request, self.spec.context)
        context = self.context(request)
        for path, spec in ruled:
            decided = decide_by_rule(spec, body, context)
            if decided is None or len(path) != 1:
                continue
            if value.get(path[0], MISSING) != decided[1]:
                old = value.get(path[0], MISSING)
                value[path[0]] = decided[1]
                repairs.append(f"{show_path(path)}: {'missing' if old is MISSING else json.dumps(old)} -> "
                               f"{json.dumps(decided[1])} (rule {decided[0]!r})")

    def _one_use(self, value: Any, repairs: list[str]) -> None:
        """A number the request states once is one item's value: of two list items that carry the same
        grounded number at the same place, the later one is a small model repeating itself and is dropped."""
        for path, spec in self.spec.ground.items():
            if spec.source != "numbers" or "*" not in path:
                continue
            star = path.index("*")
            inner = path[star + 1 :]
            for array, where in _with_paths(value, path[:star]):
                if not isinstance(array, list) or not inner:
                    continue
                seen: set[str] = set()
                kept = []
                for i, item in enumerate(array):
                    found = values_at(item, inner)
                    key = json.dumps(found[0]) if len(found) == 1 and isinstance(found[0], (int, float)) else None
                    if key is not None and key in seen:
                        repairs.append(f"{show_path(where + (str(i),))}: dropped, it reuses the number {key} "
                                       "an earlier item took")
                        continue
                    if key is not None:
                        seen.add(key)
                    kept.append(item)
                array[:] = kept

    def enum_at(self, path: Path) -> list[Any]:
        """The string values (enum, const) the schema allows at a path, in every branch."""
        if path not in self._enums:
            found: list[Any] = []
            for node in schema_nodes(self.schema, path):
                for branch in [node, *[b for k in ("anyOf", "oneOf") for b in node.get(k, []) or []]]:
                    if isinstance(branch, dict):
                        found += [v for v in branch.get("enum", []) if isinstance(v, str)]
                        if isinstance(branch.get("const"), str):
                            found.append(branch["const"])
            self._enums[path] = list(dict.fromkeys(found))
        return self._enums[path]

    def _snap(self, value: Any, request: str, repairs: list[str], *, ground: bool) -> None:
        ctx = self.context(request) if ground else {}
        for concrete, generic, current in _strings(value, (), ()):
            allowed = self.enum_at(generic)
            spec = self.spec.ground.get(generic)
            if ground and spec is not None and spec.source in ctx:
                allowed = allowed or ctx[spec.source]
            if not allowed or current in allowed:
                continue
            lower = {a.lower(): a for a in allowed}
            best = (lower.get(current.lower().strip())
                    or next(iter(difflib.get_close_matches(current, allowed, 1, 0.75)), None))
            if best is not None:
                set_at(value, concrete, lambda _old, b=best: b)
                repairs.append(f"{show_path(concrete)}: {current!r} -> {best!r} (nearest allowed value)")

    @staticmethod
    def _derive(value: Any, path: Path, spec: Any, repairs: list[str]) -> None:
        """Fill ``path`` from ``spec.source``. Where both run through the same list (``/items/*/team`` from
        ``/items/*/category``), each item is derived from its own source value."""
        source = tuple(spec.source.strip("/").split("/"))
        parent_path = path[:-1]
        common = 0
        while common < min(len(source), len(parent_path)) and source[common] == parent_path[common]:
            common += 1
        scope = parent_path[:common] if "*" in parent_path[:common] else ()
        for item, item_where in _with_paths(value, scope):
            sources = values_at(item, source[len(scope):])
            found, derived = spec.derive(sources)
            if not found:
                continue
            for parent, where in _with_paths(item, parent_path[len(scope):], item_where):
                if not isinstance(parent, dict):
                    continue
                old = parent.get(path[-1], MISSING)
                if old is MISSING or old != derived:
                    parent[path[-1]] = derived
                    shown = "missing" if old is MISSING else json.dumps(old)
                    repairs.append(f"{show_path(where + (path[-1],))}: {shown} -> {json.dumps(derived)} "
                                   f"(derived from {spec.source})")

    # -- what the model is shown ----------------------------------------------------------------------

    def for_display(self, answer: Any, *, owned: bool = False) -> Any:
        """An answer without derived fields (never asked, so never shown); an ``owned`` one is edited in place."""
        if not self.spec.derive or not isinstance(answer, (dict, list)):
            return answer
        shown = answer if owned else copy.deepcopy(answer)
        for path in self.spec.derive:
            set_at(shown, path, lambda _old: MISSING)
        return shown

    def display_schema(self, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is None or not (self.spec.derive or annotated(schema)):
            return schema
        shown = strip_annotations(inline_refs(schema))
        for path in self.spec.derive:
            for parent in parent_objects(shown, path):
                parent["properties"].pop(path[-1], None)
                if isinstance(parent.get("required"), list):
                    parent["required"] = [r for r in parent["required"] if r != path[-1]]
        return shown


NUMBER_BOUND = 10**12 - 1  # numbers the grammar admits: at most 12 digits


def _nodes(node: Any, keep: Any) -> list[dict[str, Any]]:
    """Every schema node (union branches included, at any depth) for which ``keep(node)`` is true."""
    out = []
    if isinstance(node, dict):
        if keep(node):
            out.append(node)
        for v in node.values():
            out += _nodes(v, keep)
    elif isinstance(node, list):
        for v in node:
            out += _nodes(v, keep)
    return out


def _is_numeric(node: dict[str, Any]) -> bool:
    t = node.get("type")
    return t in ("integer", "number") or (isinstance(t, list) and bool({"integer", "number"} & set(t))
                                          and not {"string", "object", "array", "boolean"} & set(t))


def _numeric_nodes(node: Any) -> list[dict[str, Any]]:
    return _nodes(node, _is_numeric)


def _arrays(node: Any) -> list[dict[str, Any]]:
    return _nodes(node, lambda n: n.get("type") == "array" or "items" in n or "prefixItems" in n)


def _lists(value: Any, where: Path, repeats: bool, dedupe: bool, cap: int | None, repairs: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v, where + (str(k),), repeats, dedupe, cap, repairs) for k, v in value.items()}
    if not isinstance(value, list):
        return value
    items = [_lists(v, where + (str(i),), repeats, dedupe, cap, repairs) for i, v in enumerate(value)]
    out: list[Any] = []
    keys: list[str] = []
    for item in items:
        key = json.dumps(item, sort_keys=True)
        if repeats and keys and keys[-1] == key:
            repairs.append(f"{show_path(where)}: a repeated item dropped")
            continue
        if dedupe and key in keys and not isinstance(item, (dict, list)):
            repairs.append(f"{show_path(where)}: duplicate {item!r} dropped")
            continue
        out.append(item)
        keys.append(key)
    if cap and len(out) > cap:
        repairs.append(f"{show_path(where)}: {len(out)} items cut to {cap}")
        out = out[:cap]
    return out


def _strings(value: Any, concrete: Path, generic: Path) -> list[tuple[Path, Path, str]]:
    """(concrete path, wildcard path, text) of every string in the answer."""
    if isinstance(value, str):
        return [(concrete, generic, value)] if concrete else []
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _strings(v, concrete + (str(k),), generic + (str(k),))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _strings(v, concrete + (str(i),), generic + ("*",))
    return out


def _with_paths(value: Any, path: Path, where: Path = ()) -> list[tuple[Any, Path]]:
    if not path:
        return [(value, where)]
    part, rest = path[0], path[1:]
    out: list[tuple[Any, Path]] = []
    if part == "*" and isinstance(value, list):
        pairs = list(enumerate(value))
    elif part == "*":
        pairs = list(value.items()) if isinstance(value, dict) else []
    elif isinstance(value, dict) and part in value:
        pairs = [(part, value[part])]
    else:
        pairs = []
    for key, child in pairs:
        out += _with_paths(child, rest, where + (str(key),))
    return out
