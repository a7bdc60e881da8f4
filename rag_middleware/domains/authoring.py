"""``domains check``: what is wrong with a domain's data before any model is asked, and the walk over an
output schema's fields that it (and ``domains new``, :mod:`rag_middleware.domains.scaffolding`) reads.

``check`` reports every problem, not the first: examples (and negatives' ``right``) that fail the output
model, with file and line; enum values no example answers (per branch where a union's branches share
values); near-duplicate questions with different answers (by embedding cosine); derived fields that
disagree with their map, and maps that miss or invent values.
It works on a domain the loader refuses because of a bad example: the validator is built from the spec.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from pydantic import BaseModel, ValidationError

from ..errors import DomainError, EmbeddingError, RagMiddlewareError, UnknownDomainError
from .domain_files import load_object
from .loader import CuratedExample, CuratedNegative, DomainSpec, load_domain
from .mechanisms import Declarative
from .paths import MISSING, Path as FieldPath, inline_refs, parse_path, values_at
from .satisfiable import shown, unsatisfiable
from .spec import DeclarativeSpec

__all__ = ["Branch", "CheckReport", "Problem", "SchemaField", "alternatives", "check_domain", "make_embedder",
           "schema_fields"]

# -- the schema's fields ------------------------------------------------------------------------------------

@dataclass(eq=False)
class Branch:
    """One branch of a union (``anyOf`` / ``oneOf``) at ``path``. A value there belongs to the branch when it
    validates against it (a value that fits several branches belongs to each)."""
    path: FieldPath
    keyword: str  # anyOf | oneOf
    index: int
    schema: dict[str, Any]
    name: str = ""  # how an author knows it: 'where field is "endpoint"', 'in Refund', 'in "a condition on..."'
    root: dict[str, Any] = field(default_factory=dict, repr=False)  # the schema's $schema and definitions
    _validator: Any = field(default=None, init=False, repr=False)

    def shown(self, *, at: bool = False) -> str:
        index = f"{self.keyword}[{self.index}]" + (f" at /{'/'.join(self.path)}" if at else "")
        return f"{self.name} ({index})" if self.name else f"in {index}"

    def fits(self, value: Any) -> bool:
        if self._validator is None:
            cls = validator_for(self.root, default=Draft202012Validator)
            self._validator = cls({**{k: v for k, v in self.root.items() if k != "$schema"}, **self.schema})
        try:
            return bool(self._validator.is_valid(value))
        except Exception:  # noqa: BLE001 - a reference it cannot resolve: count the value, as for a merged field
            return True


@dataclass
class SchemaField:
    path: FieldPath
    enum: list[Any] = field(default_factory=list)  # enum and const values, from every branch
    types: set[str] = field(default_factory=set)
    pattern: str | None = None
    max_items: int | None = None
    # the enum values each chain of enclosing union branches gives (outermost first; () outside any union)
    sources: list[tuple[tuple[Branch, ...], list[Any]]] = field(default_factory=list, repr=False, compare=False)
    # the unions of object shapes (two or more branches with properties) at this path, in schema order
    shapes: list[list[Branch]] = field(default_factory=list, repr=False, compare=False)

    @property
    def shown(self) -> str:
        return "/" + "/".join(self.path)


def _literals(node: Any) -> list[Any]:
    if not isinstance(node, dict):
        return []
    return list(node.get("enum") or []) + ([node["const"]] if "const" in node else [])


def alternatives(values: list[Any]) -> str:
    """``"a"``, ``"a" or "b"``, ``"a", "b" or "c"``."""
    shown = [json.dumps(v, ensure_ascii=False) for v in values]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def _names(branches: list[Any]) -> list[str]:
    """How an author knows each branch of a union: the values it gives a field that tells the object shapes
    apart (every shape gives it as const or enum, no value in two shapes), else its title, else the start of
    its description ("" when it has neither)."""
    names = []
    for b in branches:
        title = b.get("title") if isinstance(b, dict) else None
        text = " ".join(b["description"].split()) if isinstance(b, dict) and isinstance(
            b.get("description"), str) else ""
        names.append(f"in {title.strip()}" if isinstance(title, str) and title.strip() else
                     f'in "{text if len(text) <= 48 else text[:45].rstrip() + "..."}"' if text else "")
    shapes = [i for i, b in enumerate(branches) if isinstance(b, dict) and isinstance(b.get("properties"), dict)]
    for prop in branches[shapes[0]]["properties"] if len(shapes) > 1 else {}:
        given = [_literals(branches[i]["properties"].get(prop)) for i in shapes]
        keys = [json.dumps(v) for values in given for v in values]
        if all(given) and len(keys) == len(set(keys)):
            for i, values in zip(shapes, given, strict=True):
                names[i] = f"where {prop} is {alternatives(values)}"
            break
    return names


def schema_fields(schema: dict[str, Any] | None, at: FieldPath = ()) -> dict[FieldPath, SchemaField]:
    """Every field path of a schema (``*`` for list items), with what its branches say. ``at``: the path the
    schema's root stands at (a branch's own fields)."""
    out: dict[FieldPath, SchemaField] = {}
    if not schema:
        return out
    root = inline_refs(schema)
    dialect = {k: root[k] for k in ("$schema", "$defs", "definitions") if k in root}

    def walk(node: Any, path: FieldPath, within: tuple[Branch, ...]) -> None:
        if not isinstance(node, dict):
            return
        info = out.setdefault(path, SchemaField(path))
        values = _literals(node)
        info.enum += [v for v in values if v not in info.enum]
        if values:  # the branches of a union at this very path are this field's own alternatives
            info.sources.append((tuple(b for b in within if b.path != path), values))
        t = node.get("type")
        info.types |= set(t) if isinstance(t, list) else {t} if isinstance(t, str) else set()
        if isinstance(node.get("pattern"), str):
            info.pattern = info.pattern or node["pattern"]
        if isinstance(node.get("maxItems"), int):
            info.max_items = node["maxItems"]
        for key in ("anyOf", "oneOf"):
            branches = node.get(key) or []
            names = _names(branches)
            made = [Branch(path, key, i, b, names[i], dialect) for i, b in enumerate(branches) if isinstance(b, dict)]
            if sum(isinstance(b.schema.get("properties"), dict) for b in made) > 1:
                info.shapes.append(made)
            for branch in made:
                walk(branch.schema, path, within + (branch,))
        for branch in node.get("allOf") or []:
            walk(branch, path, within)
        for name, child in (node.get("properties") or {}).items():
            walk(child, path + (name,), within)
        for key in ("items", "additionalProperties"):
            walk(node.get(key), path + ("*",), within)
        for child in node.get("prefixItems") or []:
            walk(child, path + ("*",), within)

    walk(root, tuple(at), ())
    return out


# -- domains check ----------------------------------------------------------------------------------------

@dataclass
class Problem:
    kind: str  # domain | schema | invalid | empty | uncovered | near_duplicate | derived | derive_map
    message: str
    file: str = ""
    line: int | None = None
    id: str = ""

    @property
    def where(self) -> str:  # file:line
        return f"{self.file}:{self.line}" if self.file and self.line else self.file


@dataclass
class CheckReport:
    domain: str
    path: Path
    examples: int = 0
    negatives: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "path": str(self.path), "ok": self.ok, "examples": self.examples,
                "negatives": self.negatives, "problems": [asdict(p) for p in self.problems], "notes": self.notes}


@dataclass
class _Item:
    file: str
    line: int
    id: str
    question: str
    answer: Any


def make_embedder() -> Any:
    """The embedder for near-duplicate questions, on the configured runtime (tests replace this function)."""
    from ..config import EmbeddingSettings, load_settings
    from ..errors import ConfigError
    from ..memory.onnx_embedding import make_embedder as build

    try:
        runtime = load_settings().embedding.runtime
    except ConfigError:  # a bad settings file is reported where settings are used; this check is about domains
        runtime = EmbeddingSettings().runtime
    return build("all-MiniLM-L6-v2", runtime=runtime)


def _problem(exc: DomainError, kind: str = "domain") -> Problem:
    text = str(exc)
    for prefix in (f"{exc.path}:{exc.line}: ", f"{exc.path}: "):
        text = text.removeprefix(prefix)
    return Problem(kind, text, exc.path or "", exc.line)


def _parts(path: Path) -> tuple[Any, DeclarativeSpec]:
    """The validator and declarative spec of a domain, built from domain.yaml without reading its examples."""
    spec_path = path / "domain.yaml"
    raw = yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {}
    spec = DomainSpec.model_validate(raw)
    decl = DeclarativeSpec.from_sections(context=spec.context, ground=spec.ground, units=spec.units,
                                         derive=spec.derive, vote=spec.vote, harden=spec.harden)
    from .validation import JSONSchemaValidator, PydanticValidator

    if spec.output_model:
        def load(ref: str, what: str) -> Any:
            return load_object(ref, path, what=what, spec_path=spec_path, line=None)

        declared = (lambda r: Declarative(decl, None).context(r)) if decl.context else None
        return PydanticValidator(load(spec.output_model, "output_model"),
                                 load(spec.context_builder, "context_builder") if spec.context_builder else None,
                                 repair=load(spec.repair, "repair") if spec.repair else None,
                                 declared=declared), decl
    if spec.output_schema:
        return JSONSchemaValidator(json.loads((path / spec.output_schema).read_text(encoding="utf-8"))), decl
    return None, decl


def _read(file: Path, model: type[BaseModel], fields: tuple[str, ...], validator: Any,
          problems: list[Problem]) -> list[_Item]:
    """The valid items of a jsonl file; every bad line becomes a problem."""
    items: list[_Item] = []
    if not file.exists():
        return items
    seen: dict[str, int] = {}

    def bad(line: int, msg: str, id_: str = "") -> None:
        problems.append(Problem("invalid", msg, str(file), line, id_))

    for n, raw in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("//"):
            continue
        try:
            item = model.model_validate(json.loads(raw))
        except json.JSONDecodeError as exc:
            bad(n, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except ValidationError as exc:
            bad(n, "; ".join(f"{'.'.join(map(str, e['loc'])) or '(line)'}: {e['msg']}"
                             for e in exc.errors(include_url=False)))
            continue
        ident, question, value = item.id, item.question, getattr(item, fields[0])  # type: ignore[attr-defined]
        if ident in seen:
            bad(n, f"duplicate id (first on line {seen[ident]})", ident)
            continue
        seen[ident] = n
        outcome = validator.validate_value(value, question) if validator is not None else None
        if outcome is not None and not outcome.ok:
            bad(n, f"{fields[0]} fails the output model: " + "; ".join(outcome.errors), ident)
            continue
        items.append(_Item(str(file), n, ident, question, outcome.value if outcome is not None else value))
    return items


def _apart(info: SchemaField) -> list[tuple[tuple[Branch, ...], list[Any]]]:
    """The enum values to check, with the union branches an example's value must sit in to cover them. A field
    whose union branches share a value (``eq`` in two shapes of a filter) is checked per branch: an example
    that answers the value in one shape does not show it in another. Any other field: all values, anywhere."""
    groups: dict[tuple[Branch, ...], list[Any]] = {}
    for within, values in info.sources:
        kept = groups.setdefault(within, [])
        kept += [v for v in values if v not in kept]
    keys = [json.dumps(v) for values in groups.values() for v in values]
    return list(groups.items()) if len(groups) > 1 and len(keys) > len(set(keys)) else [((), info.enum)]


def _values_within(value: Any, at: FieldPath, path: FieldPath, within: tuple[Branch, ...]) -> list[Any]:
    """The values at ``path`` of ``value`` (which stands at ``at``) inside parts that fit every branch of
    ``within`` (outermost first)."""
    if not within:
        return values_at(value, path[len(at):])
    branch, rest = within[0], within[1:]
    return [v for part in values_at(value, branch.path[len(at):]) if branch.fits(part)
            for v in _values_within(part, branch.path, path, rest)]


def _uncovered(examples: list[_Item], fields: dict[FieldPath, SchemaField], decl: DeclarativeSpec,
               file: str) -> list[Problem]:
    out = []
    for path, info in fields.items():
        if not info.enum or not path or path in decl.derive:
            continue
        for within, enum in _apart(info):
            seen = {json.dumps(v) for e in examples for v in _values_within(e.answer, (), path, within)}
            missing = [v for v in enum if json.dumps(v) not in seen]
            if missing:
                where = " ".join([info.shown, *(b.shown(at=len(within) > 1) for b in within)])
                out.append(Problem("uncovered", f"{where}: no example answers {', '.join(map(json.dumps, missing))} "
                                                f"({len(enum) - len(missing)} of {len(enum)} values covered)", file))
    return out


def _near_duplicates(items: list[_Item], embedder: Any, threshold: float) -> list[Problem]:
    from ..memory.embedding import normalize

    if len(items) < 2:
        return []
    vectors = normalize(embedder.encode([i.question for i in items]))
    sims = vectors @ vectors.T
    out = []
    for a in range(len(items)):
        for b in range(a + 1, len(items)):
            x, y = items[a], items[b]
            if sims[a, b] < threshold or canonical(x.answer) == canonical(y.answer):
                continue
            if isinstance(x.answer, dict) and isinstance(y.answer, dict):
                keys = [k for k in dict.fromkeys([*x.answer, *y.answer])
                        if canonical(x.answer.get(k)) != canonical(y.answer.get(k))]
                diff = "; ".join(f"{k} {json.dumps(x.answer.get(k))} vs {json.dumps(y.answer.get(k))}" for k in keys)
            else:
                diff = f"{json.dumps(x.answer)} vs {json.dumps(y.answer)}"
            out.append(Problem("near_duplicate",
                               f"{x.id} and {y.id} ({Path(y.file).name}:{y.line}) ask nearly the same "
                               f"(cosine {float(sims[a, b]):.3f}) but answer differently: {diff}",
                               x.file, x.line, x.id))
    return out


def canonical(value: Any) -> Any:
    """Equal answers compare equal: objects by key, lists as multisets (as ``domains eval`` scores them)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), canonical(v)) for k, v in value.items()))
    return ("[]", tuple(sorted(map(canonical, value), key=repr))) if isinstance(value, list) else value


def _concrete(value: Any, path: FieldPath, where: FieldPath = ()) -> list[tuple[Any, FieldPath]]:
    if not path:
        return [(value, where)]
    part, rest = path[0], path[1:]
    if part == "*" and isinstance(value, list):
        pairs = list(enumerate(value))
    elif part == "*":
        pairs = list(value.items()) if isinstance(value, dict) else []
    else:
        pairs = [(part, value[part])] if isinstance(value, dict) and part in value else []
    return [hit for key, child in pairs for hit in _concrete(child, rest, where + (str(key),))]


def _derived(items: list[_Item], fields: dict[FieldPath, SchemaField], decl: DeclarativeSpec,
             spec_file: str) -> list[Problem]:
    out: list[Problem] = []
    for path, spec in decl.derive.items():
        shown, source = "/" + "/".join(path), parse_path(spec.source)
        src_enum = fields.get(source, SchemaField(source)).enum
        own_enum = fields.get(path, SchemaField(path)).enum
        keys = list(spec.map or {}) + [str(v) for r in spec.precedence or [] for v in r["any"]]
        if src_enum:
            known = {v if isinstance(v, str) else json.dumps(v) for v in src_enum}
            out += [Problem("derive_map", f"derive {shown}: {k!r} is not a value of {spec.source}", spec_file)
                    for k in keys if k not in known]
            if spec.map is not None and not spec.has_default:
                out += [Problem("derive_map", f"derive {shown}: no map entry for {v!r} of {spec.source} and no "
                                              "default; the field is left unfilled", spec_file)
                        for v in src_enum if v is not None and (v if isinstance(v, str) else json.dumps(v)) not in keys]
        if own_enum:
            targets = list((spec.map or {}).values()) + [r["value"] for r in spec.precedence or []]
            targets += [spec.default] if spec.has_default else []
            bad = {json.dumps(t): t for t in targets if t not in own_enum}
            out += [Problem("derive_map", f"derive {shown}: {t!r} is not allowed at {shown}", spec_file)
                    for t in bad.values()]
        # each item of the nearest list both paths run through is derived from its own source values (as the
        # core fills it, Declarative._derive): /operations/*/execution_instructions/method from that operation's
        # /operations/*/type, never from the first operation's; with no shared list, from all of them
        parent_path = path[:-1]
        common = next((i for i, (a, b) in enumerate(zip(parent_path, source, strict=False)) if a != b),
                      min(len(parent_path), len(source)))
        scope = parent_path[: max((i + 1 for i in range(common) if parent_path[i] == "*"), default=0)]
        for item in items:
            for node, node_at in _concrete(item.answer, scope):
                found, value = spec.derive(values_at(node, source[len(scope):]))
                if not found:
                    continue
                for parent, where in _concrete(node, parent_path[len(scope):], node_at):
                    old = parent.get(path[-1], MISSING) if isinstance(parent, dict) else value  # not an object: skip
                    if old is MISSING or old != value:
                        at = "/" + "/".join(where + (path[-1],))
                        was = "missing" if old is MISSING else json.dumps(old)
                        out.append(Problem("derived", f"{at} is {was} but its map from {spec.source} gives "
                                                      f"{json.dumps(value)}", item.file, item.line, item.id))
    return out


def _gloss_notes(domain: Any) -> list[str]:
    """What the descriptions' and rules' words decide (glosses.GlossRule, phrases.PhraseRule), as judged on the
    examples: an author sees which wording the examples bear out."""
    out = []
    for path, rule in domain.gloss_rules.items():
        default = f", default {rule.default} right {rule.default_right} of {rule.defaulted}" if rule.default else ""
        judged = f"right {rule.right} of {rule.decided} (leave-one-out){default}"
        spec = domain.declarative.spec.vote.get(path)
        what = "whether it is set" if rule.presence or (spec is not None and spec.presence) else "its label"
        how = "".join([f", the highest of {' < '.join(rule.ranks)} winning" if rule.ranks else "",
                       f", number ranges {', '.join(t for t, _, _ in rule.ranges)}" if rule.ranges else ""])
        out.append(f"/{'/'.join(path)}: gloss words decide {what}{how}: {judged}; "
                   + ("used" if rule.reliable else "used to break the neighbours' ties (below 90% with the default)"
                      if rule.tiebreak else "not used (fewer than 3, or below 80% for the words)"))
    for bank in domain.anchors:
        for path, rule in bank.phrases.items():
            out.append(f"{bank.anchor.shown}/*/{'/'.join(path)}: gloss phrases beside a number: right {rule.right} "
                       f"of {rule.decided} (leave-one-out); " + ("used" if rule.reliable else "not used"))
    spec = domain.declarative.spec
    for path, named in spec.named.items():
        if named.like is not None and named.like.values:
            judged = named.like.judged
            out.append(f"/{'/'.join(path)}: an identifier like one kind's example values takes that kind: right "
                       f"{judged['right']} of {judged['typed']} (leave-one-out); "
                       + ("used" if named.like.trusted else "not used (fewer than 2, or below 80%)"))
    out += [f"/{'/'.join(path)}: a number no other field takes is an item: {used} of {seen} examples; used"
            for path, (seen, used) in spec.leftover.items()]
    return out


def check_domain(path: Path, *, embedder: Any = None, threshold: float = 0.9,
                 near_duplicates: bool = True) -> CheckReport:
    """Every problem of the domain at ``path``. ``embedder``: for near duplicates (default: MiniLM)."""
    path = Path(path)
    if not (path / "domain.yaml").is_file():
        root = path.parent
        known = sorted(p.name for p in root.iterdir() if (p / "domain.yaml").is_file()) if root.is_dir() else []
        raise UnknownDomainError(path.name, known)
    report = CheckReport(domain=path.name, path=path)
    spec_file = str(path / "domain.yaml")
    try:
        domain = load_domain(path)
        validator, decl = domain.validator, domain.declarative.spec
        report.notes += [f"inferred from the examples: {x}" for x in getattr(domain, "inferred", [])]
        report.notes += _gloss_notes(domain)
    except DomainError as exc:
        if not (exc.path or "").endswith(("examples.jsonl", "negatives.jsonl")):
            report.problems.append(_problem(exc))
        try:
            validator, decl = _parts(path)
        except DomainError as inner:
            if not report.problems:
                report.problems.append(_problem(inner))
            return report
        except (RagMiddlewareError, ValueError, OSError, yaml.YAMLError) as inner:
            if not report.problems:
                report.problems.append(Problem("domain", f"{type(inner).__name__}: {inner}", spec_file))
            return report
    examples = _read(path / "examples.jsonl", CuratedExample, ("answer",), validator, report.problems)
    negatives = _read(path / "negatives.jsonl", CuratedNegative, ("right",), validator, report.problems)
    report.examples, report.negatives = len(examples), len(negatives)
    if not examples and not any(p.file.endswith("examples.jsonl") for p in report.problems):
        report.problems.append(Problem("empty", "no examples yet: add 10 to 30 answered requests",
                                       str(path / "examples.jsonl")))
    fields = schema_fields(validator.json_schema()) if validator is not None else {}
    schema_file = str(path / "output.schema.json") if (path / "output.schema.json").is_file() else spec_file
    report.problems += [Problem("schema", f"{shown(where)} admits nothing ({why}): no answer can be valid",
                                schema_file)
                        for where, why in (unsatisfiable(inline_refs(validator.json_schema())) if validator else [])]
    report.problems += _uncovered(examples, fields, decl, str(path / "examples.jsonl"))
    report.problems += _derived(examples + negatives, fields, decl, spec_file)
    why = ("--no-embed" if not near_duplicates else "a free-text domain" if validator is None
           else "fewer than two examples" if len(examples) + len(negatives) < 2 else "")
    if why:
        report.notes.append(f"near-duplicate questions not checked ({why})")
    else:
        try:
            report.problems += _near_duplicates(examples + negatives, embedder or make_embedder(), threshold)
        except EmbeddingError as exc:
            report.notes.append(f"near-duplicate questions not checked: {exc.one_line()}")
    order = {"domain": 0, "schema": 0, "invalid": 1, "empty": 2, "derive_map": 3, "derived": 4, "near_duplicate": 5,
             "uncovered": 6}
    report.problems.sort(key=lambda p: (order.get(p.kind, 9), p.file, p.line or 0))
    return report
