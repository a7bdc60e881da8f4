"""Tools for domain authors: ``domains new`` scaffolds ``knowledge_base/<name>/``; ``domains check`` finds
what is wrong with a domain's data before any model is asked.

``check`` reports every problem, not the first: examples (and negatives' ``right``) that fail the output
model, with file and line; enum values no example answers; near-duplicate questions with different answers
(by embedding cosine); derived fields that disagree with their map, and maps that miss or invent values.
It works on a domain the loader refuses because of a bad example: the validator is built from the spec.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import DomainError, EmbeddingError, RagMiddlewareError, UnknownDomainError
from .domain_files import load_object
from .loader import CuratedExample, CuratedNegative, DomainSpec, load_domain
from .mechanisms import Declarative
from .paths import MISSING, Path as FieldPath, inline_refs, parse_path, values_at
from .spec import DeclarativeSpec

__all__ = ["CheckReport", "Problem", "Scaffold", "check_domain", "make_embedder", "scaffold", "schema_fields"]

NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")

STARTER_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Answer",
    "description": "Replace this starter schema with your own: one property per field of the answer.",
    "type": "object",
    "properties": {
        "category": {"description": "what the request is about", "enum": ["question", "complaint", "other"]},
        "summary": {"description": "the request in one short sentence", "type": "string"},
    },
    "required": ["category", "summary"],
    "additionalProperties": False,
}

# -- the schema's fields ------------------------------------------------------------------------------------

@dataclass
class SchemaField:
    path: FieldPath
    enum: list[Any] = field(default_factory=list)  # enum and const values, from every branch
    types: set[str] = field(default_factory=set)
    pattern: str | None = None
    max_items: int | None = None

    @property
    def shown(self) -> str:
        return "/" + "/".join(self.path)


def schema_fields(schema: dict[str, Any] | None) -> dict[FieldPath, SchemaField]:
    """Every field path of a schema (``*`` for list items), with what its branches say."""
    out: dict[FieldPath, SchemaField] = {}
    if not schema:
        return out

    def walk(node: Any, path: FieldPath) -> None:
        if not isinstance(node, dict):
            return
        info = out.setdefault(path, SchemaField(path))
        values = list(node.get("enum") or []) + ([node["const"]] if "const" in node else [])
        info.enum += [v for v in values if v not in info.enum]
        t = node.get("type")
        info.types |= set(t) if isinstance(t, list) else {t} if isinstance(t, str) else set()
        if isinstance(node.get("pattern"), str):
            info.pattern = info.pattern or node["pattern"]
        if isinstance(node.get("maxItems"), int):
            info.max_items = node["maxItems"]
        for key in ("anyOf", "oneOf", "allOf"):
            for branch in node.get(key) or []:
                walk(branch, path)
        for name, child in (node.get("properties") or {}).items():
            walk(child, path + (name,))
        for key in ("items", "additionalProperties"):
            walk(node.get(key), path + ("*",))
        for child in node.get("prefixItems") or []:
            walk(child, path + ("*",))

    walk(inline_refs(schema), ())
    return out


def skeleton(node: Any) -> Any:
    """A placeholder of the schema's shape: null where allowed, else the first enum value, "", 0, false, []."""
    if not isinstance(node, dict):
        return None
    for key in ("anyOf", "oneOf"):
        branches = [b for b in node.get(key) or [] if isinstance(b, dict)]
        if any(b.get("type") == "null" for b in branches):
            return None
        if branches:
            return skeleton(branches[0])
    if isinstance(node.get("type"), list) and "null" in node["type"]:
        return None
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return next((v for v in node["enum"] if v is not None), None)
    t = node.get("type")
    t = next((x for x in t if x != "null"), "null") if isinstance(t, list) else t
    if t == "object" or "properties" in node:
        return {k: skeleton(v) for k, v in (node.get("properties") or {}).items()}
    return {"array": [], "string": "", "integer": 0, "number": 0, "boolean": False}.get(t or "")


# -- domains new ------------------------------------------------------------------------------------------

@dataclass
class Scaffold:
    path: Path
    files: list[str]
    example_line: str
    next_steps: list[str]


def _yaml_template(name: str, output_line: str, fields: dict[FieldPath, SchemaField]) -> str:
    enums = [f for f in fields.values() if f.enum and f.path]
    numbers = [f for f in fields.values() if f.types & {"integer", "number"} and not f.enum and f.path]
    patterned = [f for f in fields.values() if f.pattern and "string" in f.types]
    lists = [f for f in fields.values() if "array" in f.types and f.path]
    vote = enums[0].shown if enums else "/category"
    number = numbers[0].shown if numbers else "/limit"
    lines = [
        f"# knowledge_base/{name}/domain.yaml: how to fill each section is in docs/domains.md",
        "description: >-",
        "  TODO: say what a request is and what the answer holds, field by field, in two or three sentences.",
        output_line,
        "",
        "# options: {temperature: 0.0, num_predict: 200}",
        "# selection: {k: 6}",
        "# rules:",
        "#   - \"one short sentence per mistake the model keeps making\"",
        "",
        "# -- declarative mechanisms: uncomment what fits (paths are /field, /list/*/field) ------------",
        "# context:                     # named lists of strings taken from the request",
        "#   columns: {line: '^Columns:\\s*(.*)$', split: ','}",
        "# ground:                      # the grammar admits only values found in the request",
        f"#   {(number + ':').ljust(22)} numbers  # a number the request states (digits or words), or null",
        "#   /city:                 words    # a word or phrase written in the request, or null",
        "#   /order_id:             request  # a string with a pattern: only its matches in the request, or null",
        "#   /args/*: {from: columns, mentioned: true}   # a context's values (those the text names)",
        "# units:                       # quantities in words become numbers: 'the last day' -> 1440",
        "#   /since_minutes: {minute: 1, hour: 60, day: 1440, week: 10080}",
        "# derive:                      # filled after generation by a fixed map; the model is never asked",
        "#   /team: {from: /category, map: {billing: payments, bug: engineering}, default: support}",
        "#   /task: {from: /steps/*/type, precedence: [{any: [group_by], value: group_by}], default: clean}",
        "# vote:                        # the nearest examples vote; a confident vote narrows the grammar",
        f"#   {vote}: {{k: 7, margin: 0.6}}",
        "#   /steps/*/type: {per_clause: true, rules: [{pattern: '\\bchart\\b', label: none}]}",
        "# harden: [snap_enums, dedupe_lists, drop_repeats, {max_items: 6}]   # default: the first three",
    ]
    hints = [f"#   {f.shown}: enum of {len(f.enum)}, a vote candidate" for f in enums[:8]]
    hints += [f"#   {f.shown}: a number, ground it in numbers (or units)" for f in numbers[:8]]
    hints += [f"#   {f.shown}: has a pattern, grounded in the request automatically" for f in patterned[:8]]
    hints += [f"#   {f.shown}: a list{f' of at most {f.max_items}' if f.max_items else ''}, max_items bounds it"
              for f in lists[:8]]
    if hints:
        lines += ["", "# from your schema:", *hints]
    return "\n".join(lines) + "\n"


def _model_ref(model: str) -> tuple[str, str | None]:
    """(reference for domain.yaml, file copied into the domain) for ``pkg.mod:Class`` or ``path/file.py:Class``."""
    if ":" not in model:
        raise DomainError(f"--model must look like 'package.module:Class' or 'file.py:Class', got {model!r}")
    module, cls = model.rsplit(":", 1)
    if module.endswith(".py") and not Path(module).is_file():
        raise DomainError(f"--model: file {module} not found")
    return (f"{Path(module).name}:{cls}", module) if module.endswith(".py") else (model, None)


def _check_schema(schema: Path) -> None:
    from .validation import JSONSchemaValidator

    try:
        JSONSchemaValidator(json.loads(Path(schema).read_text(encoding="utf-8")))
    except OSError as exc:
        raise DomainError(f"cannot read --schema: {exc.strerror or exc}", path=str(schema)) from None
    except json.JSONDecodeError as exc:
        raise DomainError(f"invalid JSON: {exc.msg}", path=str(schema), line=exc.lineno) from None
    except Exception as exc:  # noqa: BLE001 - jsonschema.SchemaError
        raise DomainError(f"not a valid JSON Schema: {getattr(exc, 'message', exc)}", path=str(schema)) from None


def scaffold(root: Path, name: str, *, schema: Path | None = None, model: str | None = None) -> Scaffold:
    """Create ``root/name/``; refuse a bad name or an existing domain. The result loads (checked, and
    removed again if it does not)."""
    if not NAME.fullmatch(name or ""):
        raise DomainError(f"bad domain name {name!r}: use lowercase letters, digits and underscores, starting "
                          "with a letter, at most 48 characters (it becomes the model name NAME:latest)")
    if schema is not None and model is not None:
        raise DomainError("give --schema or --model, not both")
    target = Path(root) / name
    if target.exists():
        raise DomainError(f"domain {name!r} already exists", path=str(target))
    ref, copy_from = _model_ref(model) if model is not None else (None, None)
    if schema is not None:
        _check_schema(schema)
    output_line = f"output_model: {ref}" if ref else "output_schema: output.schema.json"
    files = ["domain.yaml", "examples.jsonl", "negatives.jsonl", Path(copy_from).name if copy_from
             else "" if ref else "output.schema.json"]
    target.mkdir(parents=True)
    try:
        if copy_from:
            shutil.copyfile(copy_from, target / Path(copy_from).name)
        elif schema is not None:
            shutil.copyfile(schema, target / "output.schema.json")
        elif not ref:
            (target / "output.schema.json").write_text(json.dumps(STARTER_SCHEMA, indent=2) + "\n", encoding="utf-8")
        for file in ("examples.jsonl", "negatives.jsonl"):
            (target / file).write_text("", encoding="utf-8")
        (target / "domain.yaml").write_text(_yaml_template(name, output_line, {}), encoding="utf-8")
        domain = load_domain(target)
        fields = schema_fields(domain.validator.json_schema()) if domain.validator else {}
        (target / "domain.yaml").write_text(_yaml_template(name, output_line, fields), encoding="utf-8")
    except BaseException as exc:
        shutil.rmtree(target, ignore_errors=True)
        if isinstance(exc, DomainError):
            raise DomainError(f"{name} not created, it would not load: {exc.one_line()}") from None
        raise
    shape = skeleton(inline_refs(domain.validator.json_schema())) if domain.validator else "the answer"
    line = json.dumps({"id": "first-example", "question": "a real request, as users write it", "answer": shape},
                      ensure_ascii=False)
    kb = f"{Path(root)}/{name}"
    steps = [
        f"describe the task in {kb}/domain.yaml (description, and rules for what the model gets wrong)",
        *([] if schema is not None or model is not None
          else [f"replace the starter schema in {kb}/output.schema.json"]),
        f"add 10 to 30 examples to {kb}/examples.jsonl, one JSON object per line, e.g.\n    {line}",
        f"rag-middleware domains check {name}",
        f"write a labelled set ({{\"id\", \"question\", \"expected\"}} per line) and run "
        f"rag-middleware domains eval {name} SET.jsonl",
        "read docs/domains.md for grounding, derived fields, votes and hardening",
    ]
    return Scaffold(path=target, files=[f for f in files if f], example_line=line, next_steps=steps)


# -- domains check ----------------------------------------------------------------------------------------

@dataclass
class Problem:
    kind: str  # domain | invalid | empty | uncovered | near_duplicate | derived | derive_map
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
    """The embedder for near-duplicate questions (tests replace this function)."""
    from ..memory.embedding import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder("all-MiniLM-L6-v2")


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


def _uncovered(examples: list[_Item], fields: dict[FieldPath, SchemaField], decl: DeclarativeSpec,
               file: str) -> list[Problem]:
    out = []
    for path, info in fields.items():
        if not info.enum or not path or path in decl.derive:
            continue
        seen = {json.dumps(v) for e in examples for v in values_at(e.answer, path)}
        missing = [v for v in info.enum if json.dumps(v) not in seen]
        if missing:
            out.append(Problem("uncovered", f"{info.shown}: no example answers {', '.join(map(json.dumps, missing))} "
                                            f"({len(info.enum) - len(missing)} of {len(info.enum)} values covered)",
                               file))
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
        parent_path = path[:-1]
        shared = parent_path if source[: len(parent_path)] == parent_path else ()
        for item in items:
            for parent, where in _concrete(item.answer, parent_path):
                if not isinstance(parent, dict):
                    continue
                found, value = spec.derive(values_at(parent if shared else item.answer, source[len(shared):]))
                old = parent.get(path[-1], MISSING)
                if found and (old is MISSING or old != value):
                    at = "/" + "/".join(where + (path[-1],))
                    was = "missing" if old is MISSING else json.dumps(old)
                    out.append(Problem("derived", f"{at} is {was} but its map from {spec.source} gives "
                                                  f"{json.dumps(value)}", item.file, item.line, item.id))
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
    order = {"domain": 0, "invalid": 1, "empty": 2, "derive_map": 3, "derived": 4, "near_duplicate": 5, "uncovered": 6}
    report.problems.sort(key=lambda p: (order.get(p.kind, 9), p.file, p.line or 0))
    return report
