"""Used values: list items the request's own values call for.

Some values take a form only they take: a request path matching the field's ``pattern`` (``/api/v2/orders``),
a value of a declared context. Where a list item's value is grounded so and the examples, whenever their
question writes such a value, always give it an item (at least USED_MIN such questions, USED_SHARE of them
with every value used), a request that writes N such values gets a list of at least N items. A small model
otherwise leaves a path it was asked about out ("average response size for /static/bundle.js" with no filter).
Each such value is also surely an item of its own: sure_items.py gives it a position of its own in the list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import grounding
from .annotations import annotated_paths
from .paths import Path, last_star, schema_nodes, values_at

__all__ = ["USED_MIN", "USED_SHARE", "UsedSource", "raise_minimum", "used_sources", "used_values", "written"]

USED_MIN = 3  # example questions writing such a value before "always used" is learnt
USED_SHARE = 0.9  # of them that must use every value they write


@dataclass(frozen=True)
class UsedSource:
    path: Path  # the value's path (``*`` for the list's items)
    source: str  # "request" (the field's own pattern) or a declared context
    pattern: str | None
    seen: int  # example questions that write such a value
    used: int  # of them, those whose answer gives every such value an item


def _values(source: str, pattern: str | None, request: str, spec: Any) -> list[Any]:
    body = grounding.request_body(request, spec.context)
    context = grounding.build_context(request, spec.context) if source != "request" else {}
    found = grounding.candidates(source, request=request, body=body, context=context, units=None,
                                 pattern=pattern, only_mentioned=False) or []
    return list(dict.fromkeys(v for v in found if isinstance(v, str)))


def grounded(declarative: Any) -> list[tuple[Path, str, str | None]]:
    """A domain's (mechanisms.Declarative) grounded list item values: path, source and pattern."""
    out = [(path, "request", pattern) for path, pattern in declarative.patterns.items()]
    out += [(path, g.source, None) for path, g in declarative.spec.ground.items()]
    for item in annotated_paths(declarative.schema):
        pattern = item.node.get("pattern") if isinstance(item.node.get("pattern"), str) else None
        out += [(item.path, source, pattern) for source in item.sources[:1]]
    return list(dict.fromkeys(out))


def used_sources(declarative: Any, examples: list[tuple[str, Any]]) -> list[UsedSource]:
    """Of a domain's grounded list item values, those the ``examples`` (question, answer) always use."""
    spec, out = declarative.spec, []
    for path, source, pattern in grounded(declarative):
        if "*" not in path or source in ("numbers", "words"):
            continue
        seen = used = 0
        for question, answer in examples:
            values = _values(source, pattern, question, spec)
            if values:
                seen += 1
                given = values_at(answer, path)
                used += all(v in given for v in values)
        if seen >= USED_MIN and used >= USED_SHARE * seen:
            out.append(UsedSource(path, source, pattern, seen, used))
    return out


def written(used: list[UsedSource], request: str, spec: Any) -> list[tuple[UsedSource, list[Any]]]:
    """Each used source with the values the request writes of it (read once per request)."""
    return [(entry, _values(entry.source, entry.pattern, request, spec)) for entry in used]


def used_values(found: list[tuple[UsedSource, list[Any]]]) -> dict[Path, list[Any]]:
    """Per value path, the used values the request writes (``written``; each surely an item: sure_items.py)."""
    out: dict[Path, list[Any]] = {}
    for entry, values in found:
        if values:
            kept = out.setdefault(entry.path, [])
            kept += [v for v in values if v not in kept]
    return out


def raise_minimum(schema: dict[str, Any], found: list[tuple[UsedSource, list[Any]]]) -> list[str]:
    """At least one item per used value the request writes (``written``), in each list that can hold that many."""
    needed: dict[Path, list[Any]] = {}
    for entry, values in found:
        star = last_star(entry.path)
        if values and len(values) > len(needed.get(entry.path[:star], [])):
            needed[entry.path[:star]] = values
    notes = []
    for path, values in needed.items():
        count = len(values)
        for array in schema_nodes(schema, path):
            if array.get("type") == "array" and array.get("maxItems", count) >= count \
                    and array.get("minItems", 0) < count and "prefixItems" not in array:
                array["minItems"] = count
                notes.append(f"/{'/'.join(path)}: at least {count} item(s): the used values {values[:4]}")
    return notes
