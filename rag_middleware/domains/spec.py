"""The declarative sections of ``domain.yaml``: what the core does for a domain with no code.

```yaml
context:                      # named lists of strings taken from the request, before retrieval
  columns: {line: '^Columns:\\s*(.*)$', split: ','}
ground:                       # values the grammar admits only from the context or the request itself
  /operations/*/args/*: columns           # a context by name (``{from: columns, mentioned: true}``: only
                                          #  the values the request's text names, when it names any)
  /order_id: request          # a string with a pattern: only matches found in the request, or null
  /limit: numbers             # a number the request states (digits or words), or null
  /city: words                # a word or phrase written in the request (a capitalised run, a quote), or null
units:                        # quantities in words become numbers: "the last day" -> 1440
  /since_minutes: {minute: 1, hour: 60, day: 1440, week: 10080}
derive:                       # filled after generation; the model is never asked
  /team: {from: /category, map: {billing: payments, bug: engineering}, default: support}
  /task: {from: /operations/*/type, precedence: [{any: [group_by], value: group_by}], default: clean}
vote:                         # neighbours (curated + reviewed) vote; a confident margin narrows the grammar
  /category: {k: 7, margin: 0.6}
  /operations/*/type: {per_clause: true, rules: [{pattern: '\\bchart\\b', label: none}]}
harden: [snap_enums, dedupe_lists, drop_repeats, {max_items: 6}]
```
A string field with a ``pattern`` in the output schema is grounded in the request without being listed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .narrowing import types_of
from .paths import Path, enum_values, parse_path, schema_nodes

__all__ = ["ContextSpec", "DeclarativeSpec", "DeriveSpec", "GroundSpec", "HardenSpec", "RuleSpec", "SplitSpec",
           "VoteSpec", "against_schema"]

BUILTIN_SOURCES = ("request", "numbers", "words")
DEFAULT_HARDEN = ["snap_enums", "dedupe_lists", "drop_repeats"]


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regex: {exc}") from None
    return value


class ContextSpec(BaseModel):
    """A list of strings from the request: the first line matching ``line`` (its ``value`` group, else group
    1, else the whole match), or every match of ``regex``; then split on ``split`` and stripped. Or a subset
    of another context (``from``): the values the request's text names (``mentioned``), those a cue
    names (``cues``: regexes where ``{value}`` stands for a value, run on the lower-cased request), or
    those not in other contexts (``without``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    line: str | None = None
    regex: str | None = None
    split: str | None = None
    source: str | None = Field(None, alias="from")
    mentioned: bool = False
    cues: list[str] = Field(default_factory=list)
    without: list[str] = Field(default_factory=list)

    _check = field_validator("line", "regex")(classmethod(lambda cls, v: _regex(v)))

    @field_validator("cues")
    @classmethod
    def _cues(cls, value: list[str]) -> list[str]:
        for cue in value:
            if "{value}" not in cue:
                raise ValueError(f"a cue needs {{value}} where a value stands: {cue!r}")
            _regex(cue.replace("{value}", "(?P<value>x)"))
        return value

    @model_validator(mode="after")
    def _one(self) -> ContextSpec:
        if sum(x is not None for x in (self.line, self.regex, self.source)) != 1:
            raise ValueError("give one of line, regex or from")
        if self.source is None and (self.mentioned or self.cues or self.without):
            raise ValueError("mentioned, cues and without pick from another context: give from")
        if self.source is not None and not (self.mentioned or self.cues or self.without):
            raise ValueError("a context from another one needs mentioned, cues or without")
        return self


class GroundSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    source: str = Field(alias="from")
    mentioned: bool = False  # a context: only the values the request's text names (all when it names none)


class RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pattern: str
    label: str  # a string value as it is; true, false and null as JSON (YAML's unquoted ones are read so)

    _check = field_validator("pattern")(classmethod(lambda cls, v: _regex(v)))

    @field_validator("label", mode="before")
    @classmethod
    def _json_scalar(cls, value: Any) -> Any:
        return value if isinstance(value, str) else json.dumps(value) if value is None or isinstance(
            value, (bool, int, float)) else value


class SplitSpec(BaseModel):
    """A clause splitter as data: the request (without its context lines) is cut where ``breaks`` matches (the
    core's joints when not given); ``drop`` is removed from each clause (a phrase that is no step of its own);
    a first clause that opens with ``lead`` and has no comma (a leading condition) joins the clause after it."""

    model_config = ConfigDict(extra="forbid")
    breaks: str | None = None
    drop: str | None = None
    lead: str | None = None

    _check = field_validator("breaks", "drop", "lead")(classmethod(lambda cls, v: _regex(v)))


class VoteSpec(BaseModel):
    """Neighbours vote on the value at a path, weighted by similarity; a confident vote narrows the grammar.

    ``decide``: the share of the vote a winner needs to be admitted alone. ``margin``: the share the admitted
    values must hold together (else the best ``max_labels``; else no narrowing). ``per_clause``: each clause of
    the request is labelled by the nearest labelled clauses (from the examples' clauses, an optional ``bank``
    file and ``rules``), and position i of the list admits clause i's labels."""

    model_config = ConfigDict(extra="forbid")
    k: int = Field(7, ge=1, le=50)
    margin: float = Field(0.6, gt=0.0, le=1.0)
    max_labels: int = Field(2, ge=1, le=5)
    decide: float = Field(0.55, gt=0.0, le=1.0, description="a winner holding this share of the vote is admitted "
                          "alone, even on a field judged unreliable, unless such winners were wrong more often than "
                          "right on the examples (1.0: only unanimous votes)")
    min_similarity: float = Field(0.3, ge=-1.0, le=1.0)
    temperature: float = Field(0.1, gt=0.0, le=10.0, description="similarity softness: lower trusts the nearest more")
    per_clause: bool = False
    presence: bool = False  # vote on whether the field is set or null (an optional object), not on its value
    rules: list[RuleSpec] = Field(default_factory=list)
    bank: str | None = None  # per_clause: a jsonl of {text, label}
    split: str | SplitSpec | None = None  # per_clause: {breaks, drop, lead} regexes, or file.py:function(request)
    #                                        -> clauses (the core splitter otherwise)
    rule: str | None = None  # per_clause: file.py:function(clause, request) -> labels or None


class DeriveSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    source: str = Field(alias="from")
    map: dict[str, Any] | None = None
    precedence: list[dict[str, Any]] | None = None  # [{any: [values], value: X}], the first that matches wins
    default: Any = None
    has_default: bool = False

    @model_validator(mode="before")
    @classmethod
    def _default_given(cls, data: Any) -> Any:
        if isinstance(data, dict) and "default" in data:
            data = {**data, "has_default": True}
        return data

    @model_validator(mode="after")
    def _one(self) -> DeriveSpec:
        parse_path(self.source)
        if (self.map is None) == (self.precedence is None):
            raise ValueError("give map or precedence")
        for rule in self.precedence or []:
            if set(rule) != {"any", "value"} or not isinstance(rule["any"], list):
                raise ValueError("each precedence rule is {any: [values], value: X}")
        return self

    def derive(self, sources: list[Any]) -> tuple[bool, Any]:
        """(found, value) for the source values found in an answer."""
        if self.map is not None:
            for source in sources:
                key = str(source).lower() if isinstance(source, bool) else str(source)
                if key in self.map:
                    return True, self.map[key]
        else:
            present = set(map(str, sources))
            for rule in self.precedence or []:
                if present & set(map(str, rule["any"])):
                    return True, rule["value"]
        return (True, self.default) if self.has_default else (False, None)


class HardenSpec(BaseModel):
    snap_enums: bool = False
    dedupe_lists: bool = False
    drop_repeats: bool = False
    max_items: int | None = None

    @classmethod
    def parse(cls, items: list[Any]) -> HardenSpec:
        out: dict[str, Any] = {}
        for item in items:
            if isinstance(item, str) and item in ("snap_enums", "dedupe_lists", "drop_repeats"):
                out[item] = True
            elif isinstance(item, dict) and set(item) == {"max_items"} and isinstance(item["max_items"], int) \
                    and item["max_items"] >= 1:
                out["max_items"] = item["max_items"]
            else:
                raise ValueError(f"harden: unknown hardening {item!r}: use snap_enums, dedupe_lists, drop_repeats "
                                 "or {max_items: N}")
        return cls(**out)


class DeclarativeSpec(BaseModel):
    """The parsed declarative sections, paths already split."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    context: dict[str, ContextSpec] = Field(default_factory=dict)
    ground: dict[Path, GroundSpec] = Field(default_factory=dict)
    units: dict[Path, dict[str, float]] = Field(default_factory=dict)
    derive: dict[Path, DeriveSpec] = Field(default_factory=dict)
    vote: dict[Path, VoteSpec] = Field(default_factory=dict)
    harden: HardenSpec = HardenSpec()
    floor: dict[Path, Any] = Field(default_factory=dict)  # read off the examples only (domains/floors.py)
    shape: dict[Path, Any] = Field(default_factory=dict)  # of word-grounded fields, from the examples (word_shapes.py)
    named: dict[Path, Any] = Field(default_factory=dict)  # words naming a value's label (named_values.py)
    phrased: dict[Path, Any] = Field(default_factory=dict)  # phrases deciding an item's label (value_phrases.py)
    implied: dict[Path, Any] = Field(default_factory=dict)  # an item's label the other implies (implied_labels.py)
    numbered: dict[Path, Any] = Field(default_factory=dict)  # label words beside an item's number (number_labels.py)
    ordered: dict[Path, str] = Field(default_factory=dict)  # lists kept in the question's order (sure_items.py)
    used: list[Any] = Field(default_factory=list)  # list item values the examples always use (used_values.py)
    leftover: dict[Path, Any] = Field(default_factory=dict)  # numbers no other field takes (leftover_numbers.py)

    @property
    def unit_words(self) -> dict[str, float]:
        """Every units field's unit words with their factors, together."""
        return {word: factor for found in self.units.values() for word, factor in found.items()}
    # grounded fields the examples set whenever the request holds a candidate: (such examples, of them set)
    found: dict[Path, tuple[int, int]] = Field(default_factory=dict)

    @classmethod
    def from_sections(cls, *, context: dict[str, Any], ground: dict[str, Any], units: dict[str, Any],
                      derive: dict[str, Any], vote: dict[str, Any], harden: list[Any] | None) -> DeclarativeSpec:
        """Raises ValueError naming the section and key that is wrong."""
        out = cls(harden=HardenSpec.parse(DEFAULT_HARDEN if harden is None else harden))
        for name, raw in context.items():
            if name in BUILTIN_SOURCES:
                raise ValueError(f"context.{name}: {name} is built in; choose another name")
            out.context[name] = _parse(ContextSpec, raw, f"context.{name}")
            for other in [out.context[name].source, *out.context[name].without]:
                if other is not None and other not in out.context:
                    raise ValueError(f"context.{name}: {other!r} names no context declared before it")
        for key, raw in ground.items():
            spec = _parse(GroundSpec, {"from": raw} if isinstance(raw, str) else raw, f"ground.{key}")
            if spec.source not in BUILTIN_SOURCES and spec.source not in out.context:
                raise ValueError(f"ground.{key}: unknown source {spec.source!r} (use request, numbers, words or a "
                                 f"context: {', '.join(out.context) or 'none declared'})")
            out.ground[_path(key, "ground")] = spec
        for key, raw in units.items():
            if not isinstance(raw, dict) or not raw or not all(isinstance(v, (int, float)) for v in raw.values()):
                raise ValueError(f"units.{key}: give {{unit word: factor}}, e.g. {{hour: 60, day: 1440}}")
            path = _path(key, "units")
            out.units[path] = {str(k).lower(): float(v) for k, v in raw.items()}
            out.ground.setdefault(path, GroundSpec(source="numbers"))
        for key, raw in derive.items():
            out.derive[_path(key, "derive")] = _parse(DeriveSpec, raw, f"derive.{key}")
        for key, raw in vote.items():
            out.vote[_path(key, "vote")] = _parse(VoteSpec, raw or {}, f"vote.{key}")
        return out


def _path(key: str, section: str) -> Path:
    try:
        return parse_path(key)
    except ValueError as exc:
        raise ValueError(f"{section}: {exc}") from None


def _parse(model: type[BaseModel], raw: Any, where: str) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{where}{'.' + loc if loc else ''}: {err['msg'].removeprefix('Value error, ')}") from None


def against_schema(spec: DeclarativeSpec, schema: dict[str, Any]) -> list[tuple[str, str]]:
    """What domain.yaml declares that the output schema cannot hold, as ``(where, message)`` (``where`` is the
    section and its key, ``vote./level``, for the line): a path no field
    has (a typo would otherwise pass, and inference quietly cover the real field), units on a field that takes
    no number, a derive map's source that is no field, a vote rule's label the field does not allow.
    ``schema`` is an ``inline_refs`` copy."""
    found: list[tuple[str, str]] = []

    def nodes(path: Path, section: str) -> list[dict[str, Any]]:
        got = schema_nodes(schema, path)
        if not got:
            found.append((f"{section}./{'/'.join(path)}",
                          f"{section}: /{'/'.join(path)} is not a field of the output schema"))
        return got

    for section, paths in (("ground", [p for p in spec.ground if p not in spec.units]), ("units", spec.units),
                           ("vote", spec.vote)):
        for path in paths:
            got = nodes(path, section)
            if section == "units" and got and not any(types_of(n) & {"integer", "number"} for n in got):
                found.append((f"units./{'/'.join(path)}",
                              f"units: /{'/'.join(path)} takes no number, so no unit can convert to it"))
            if section == "vote" and got and (allowed := _labels(got)):
                for rule in spec.vote[path].rules:
                    if rule.label not in allowed:
                        found.append((f"vote./{'/'.join(path)}", f"vote: /{'/'.join(path)} rule label "
                                      f"{rule.label!r} is not one of {', '.join(allowed)}"))
    for path, derive in spec.derive.items():
        nodes(path, "derive")
        try:
            source = parse_path(derive.source)
        except ValueError:
            continue
        if not schema_nodes(schema, source):
            found.append((f"derive./{'/'.join(path)}", f"derive: /{'/'.join(path)} is derived from "
                          f"{derive.source}, which is not a field of the output schema"))
    return found


def _labels(nodes: list[dict[str, Any]]) -> list[str]:
    """The labels a vote rule may give a field: its enum values (non-strings as JSON), true and false for a
    boolean, null where it is nullable; empty for a field of open values (any string is a label then)."""
    out: list[str] = []
    for node in nodes:
        values = enum_values(node)
        types = types_of(node)
        if not values and not types & {"boolean"}:
            return []
        values += [True, False] if "boolean" in types else []
        values += [None] if "null" in types else []
        out += [v if isinstance(v, str) else json.dumps(v) for v in values]
    return list(dict.fromkeys(out))
