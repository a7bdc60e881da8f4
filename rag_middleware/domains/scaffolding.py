"""``domains new``: scaffolding ``knowledge_base/<name>/`` for a domain author.

The new folder holds a ``domain.yaml`` with every declarative section as a comment (and hints drawn from the
output schema's fields, a union of object shapes shape by shape), the output schema (``--schema``, a starter
one) or the pydantic model (``--model``), and empty ``examples.jsonl`` / ``negatives.jsonl``. The result is
loaded before it is kept: a scaffold that would not load is removed again. ``domains check`` (what is wrong
with a domain's data) is in :mod:`rag_middleware.domains.authoring`, with the schema-field walk both use.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DomainError
from .authoring import SchemaField, alternatives, schema_fields
from .loader import load_domain
from .mechanisms import Declarative
from .paths import Path as FieldPath, inline_refs
from .spec import DeclarativeSpec

__all__ = ["NAME", "STARTER_SCHEMA", "Scaffold", "scaffold", "skeleton"]

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


def _contexts_named(schema: Path | None) -> list[str]:
    """The contexts a given schema grounds in (``x-ground`` naming no built-in source): the scaffold declares
    each, so that the domain loads before its author writes how to read it."""
    if schema is None:
        return []
    named = Declarative(DeclarativeSpec(), json.loads(Path(schema).read_text(encoding="utf-8"))).unknown_sources()
    return [n for n in named if re.fullmatch(r"[A-Za-z_]\w*", n)]


def _kind(f: SchemaField) -> str:
    """What one field of one shape of a union is, for its hint."""
    if f.enum:
        if len(f.enum) <= 8:
            return f"enum of {len(f.enum)}: {alternatives(f.enum)}"
        return f"enum of {len(f.enum)}: " + ", ".join(json.dumps(v, ensure_ascii=False) for v in f.enum[:8]) + ", ..."
    if f.pattern and "string" in f.types:
        return "has a pattern, grounded in the request automatically"
    if f.types and f.types <= {"integer", "number", "null"} and f.types - {"null"}:
        return "a number; ground it with x-ground in the schema (a ground: path reaches every shape)"
    if "array" in f.types:
        return f"a list{f' of at most {f.max_items}' if f.max_items else ''}"
    kinds = {"string": "a string", "integer": "a number", "number": "a number", "boolean": "a boolean",
             "object": "an object", "null": "null"}
    named = list(dict.fromkeys(kinds[t] for t in sorted(f.types, key=list(kinds).index) if t in kinds))
    return (named[0] if len(named) == 1 else f"{', '.join(named[:-1])} or {named[-1]}") if named else "any value"


def _shape_fields(branch_schema: dict[str, Any], at: FieldPath) -> list[SchemaField]:
    """The fields one shape gives below ``at``, shallow ones first; a mere container of listed fields (an
    object, a list with no bound) is left out."""
    own = [f for p, f in schema_fields(branch_schema, at=at).items() if len(p) > len(at)]
    parents = {f.path[:n] for f in own for n in range(len(at) + 1, len(f.path))}
    return sorted([f for f in own if f.path not in parents or f.enum or (f.types - {"object", "array"})
                   or f.max_items], key=lambda f: len(f.path))


def _shape_hints(fields: dict[FieldPath, SchemaField]) -> tuple[list[str], set[FieldPath]]:
    """Hints for each union of object shapes (``anyOf``/``oneOf`` of two or more objects): every shape with its
    own fields, and the paths so shown (left out of the flat hints, which would mix the shapes' fields). A union
    inside a shape is shown with that shape's fields."""
    lines: list[str] = []
    shown: set[FieldPath] = set()
    unions: list[FieldPath] = []
    for info in fields.values():
        for branches in info.shapes:
            if any(info.path[: len(u)] == u for u in unions):
                continue
            unions.append(info.path)
            shown |= {p for b in branches for p in schema_fields(b.schema, at=info.path) if len(p) > len(info.path)}
            lines.append(f"#   {info.shown}: one of {len(branches)} shapes ({branches[0].keyword}); give each its "
                         "examples, domains check counts each shape's values apart")
            for branch in branches:
                own = _shape_fields(branch.schema, info.path)
                lines.append(f"#     {branch.shown()}:" + ("" if own else " no fields"))
                lines += [f"#       {f.shown}: {_kind(f)}" for f in own[:8]]
                lines += [f"#       ... and {len(own) - 8} more"] if len(own) > 8 else []
    return lines, shown


def _yaml_template(name: str, output_line: str, fields: dict[FieldPath, SchemaField],
                   contexts: list[str] = ()) -> str:
    shapes, in_shapes = _shape_hints(fields)
    flat = [f for f in fields.values() if f.path not in in_shapes]
    enums = [f for f in flat if f.enum and f.path]
    numbers = [f for f in flat if f.types & {"integer", "number"} and not f.enum and f.path]
    patterned = [f for f in flat if f.pattern and "string" in f.types]
    lists = [f for f in flat if "array" in f.types and f.path]
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
        *(["context:                       # your schema grounds in these: write how to read each from the request",
            *[f"  {c}: {{regex: '(?!)'}}   # TODO: a regex; each match's (?P<value>...) group (else group 1, "
              "else the match) is a value" for c in contexts]] if contexts else
          ["# context:                     # named lists of strings taken from the request",
           "#   columns: {line: '^Columns:\\s*(.*)$', split: ','}"]),
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
    hints += shapes
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
        contexts = _contexts_named(schema)
        (target / "domain.yaml").write_text(_yaml_template(name, output_line, {}, contexts), encoding="utf-8")
        domain = load_domain(target)
        fields = schema_fields(domain.validator.json_schema()) if domain.validator else {}
        (target / "domain.yaml").write_text(_yaml_template(name, output_line, fields, contexts), encoding="utf-8")
        domain = load_domain(target)  # with the hints too: what is kept is what was loaded
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
