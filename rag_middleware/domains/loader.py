"""Domains: ``knowledge_base/<name>/`` loaded and checked, with errors that name file and line.

Layout of a domain directory::

    domain.yaml        description, output model or schema, options, selection, cot, rules
    examples.jsonl     {"id", "question", "answer"}          curated few-shot examples
    negatives.jsonl    {"id", "question", "wrong", "why", "right"}   contrastive examples
    <model>.py / *.json  the output model (pydantic, by ``file.py:Class`` or ``pkg.mod:Class``) or JSON Schema
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import DomainError, UnknownDomainError
from ..templating.variants import VariantSpec, check_variants
from ..options import ModelOptions
from .clauses import StepSpec, default_split, example_clauses, path_labels, read_bank, yaml_rule
from .validation import JSONSchemaValidator, OutputValidator, PydanticValidator
from .grounding import request_body
from .infer import infer
from .overrides import OverrideStore
from .votes import mine_cues
from .mechanisms import Declarative, Flags
from .paths import Path as FieldPath, inline_refs
from .spec import DeclarativeSpec

__all__ = ["CuratedExample", "CuratedNegative", "Domain", "DomainRegistry", "DomainSpec"]


class CotSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    steps: list[str] = Field(default_factory=list)


class DomainSpec(BaseModel):
    """The contents of domain.yaml."""

    model_config = ConfigDict(extra="forbid")
    description: str = Field(min_length=1)
    output_model: str | None = None
    output_schema: str | None = None
    context_builder: str | None = None
    repair: str | None = None  # file.py:function(value, context) -> (value, [what changed])
    grammar: str | None = None  # file.py:function(context) -> JSON schema for the decoding grammar
    model: str | None = None  # upstream model that answers this domain
    options: dict[str, Any] = Field(default_factory=dict)
    selection: dict[str, Any] = Field(default_factory=dict)
    cot: CotSpec = CotSpec()
    rules: list[str] = Field(default_factory=list)
    steps: StepSpec | None = None  # step guidance: a bank of labelled clauses steers the grammar
    variants: list[VariantSpec] = Field(default_factory=list)  # A/B template-set variants (templating/variants.py)
    # the declarative mechanisms (domains/spec.py): every domain gets them from data
    context: dict[str, Any] = Field(default_factory=dict)
    ground: dict[str, Any] = Field(default_factory=dict)
    units: dict[str, Any] = Field(default_factory=dict)
    derive: dict[str, Any] = Field(default_factory=dict)
    vote: dict[str, Any] = Field(default_factory=dict)
    harden: list[Any] | None = None  # None: snap_enums, dedupe_lists, drop_repeats
    infer: bool = True  # read derived maps, groundings and votes off the examples (domains/infer.py)


class CuratedExample(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answer: Any
    note: str = ""


class CuratedNegative(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    wrong: Any
    why: str = Field(min_length=1)
    right: Any




class Domain(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    path: Path
    spec: DomainSpec
    examples: list[CuratedExample]
    negatives: list[CuratedNegative]
    validator: Any = None  # OutputValidator | None
    step_bank: list[tuple[str, str]] = Field(default_factory=list)
    split: Any = None  # the steps splitter, when the domain has step guidance
    step_rule: Any = None  # the steps rule hook, if any
    steps_path: Any = None  # FieldPath of the per-clause vote, e.g. ("operations", "*", "type")
    declarative: Any = None  # Declarative
    inferred: list[str] = Field(default_factory=list)  # what infer.py read off the examples
    cues: dict[Any, Any] = Field(default_factory=dict)  # votes.mine_cues: words of the examples that go with a value
    plain_steps: Any = None  # (split, rule, bank) of the per-clause vote with the Python hooks off

    @property
    def schema_json(self) -> dict[str, Any] | None:
        """The schema shown to the model: without the derived fields it is never asked for."""
        return self.shown_schema(hide_derived=True)

    def shown_schema(self, *, hide_derived: bool) -> dict[str, Any] | None:
        if self.validator is None:
            return None
        schema = self.validator.json_schema()
        return self.declarative.display_schema(schema) if hide_derived else schema

    def grammar_schema(self, request: str, *, steps: list[list[str]] | None = None, flags: Flags | None = None,
                       votes: list[dict[str, Any]] | None = None,
                       notes: list[str] | None = None) -> dict[str, Any] | None:
        """The JSON schema sent as the grammar (Ollama ``format``) for this request, if the domain has one.
        ``steps`` (from step guidance) reach the domain's grammar hook as ``context["steps"]``; then the
        declarative mechanisms narrow it (``flags``: which are on; all when None). ``notes`` collects why."""
        if self.validator is None:
            return None
        hooks = getattr(flags, "hooks", True)
        base = (self.validator.grammar_schema(request, extra={"steps": steps} if steps else None) if hooks
                else self.validator.json_schema())
        schema, why = self.declarative.grammar(base, request, flags=flags or ALL_ON, votes=votes, steps=steps,
                                               steps_path=self.steps_path)
        if notes is not None:
            notes.extend(why)
        return schema

    def post(self, flags: Flags | None, request: str) -> Callable[[Any], tuple[Any, list[str]]]:
        """The core's fixes of a parsed answer (hardening, derived fields), for ``validate_text(pre=...)``."""
        return lambda value: self.declarative.post(value, request, flags=flags or ALL_ON)

    @property
    def free_text(self) -> bool:
        return self.validator is None

    def answer_text(self, answer: Any, *, hide_derived: bool = True) -> str:
        """How an answer is shown to the model: compact JSON for schema'd domains, text otherwise."""
        if isinstance(answer, str) and self.free_text:
            return answer
        if isinstance(answer, str):  # a stored answer (JSON text)
            try:
                answer = json.loads(answer)
            except ValueError:
                return answer
        shown = self.declarative.for_display(answer) if hide_derived else answer
        return json.dumps(shown, ensure_ascii=False, separators=(", ", ": "))


class _AllOn:
    ground = derive = vote = harden = True


ALL_ON = _AllOn()


def _key_lines(path: Path, text: str) -> dict[str, int]:
    """Top-level key -> line number in a YAML file, for error messages."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, _ in node.value:
            lines[str(key.value)] = key.start_mark.line + 1
    return lines


def _domain_package(base: Path) -> str:
    return f"rag_mw_domain_{re.sub(r'[^0-9A-Za-z_]', '_', base.name)}"


def _fresh_package(base: Path) -> None:
    """Make the domain dir a fresh package, so its files can import each other (``from .model import X``)
    and a load after an edit executes the edited files, never a stale copy."""
    package = _domain_package(base)
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]
    module = types.ModuleType(package)
    module.__path__ = [str(base)]
    module.__file__ = None
    sys.modules[package] = module


def _load_object(ref: str, base: Path, *, what: str, spec_path: Path, line: int | None) -> Any:
    """Resolve 'file.py:Name' (relative to the domain dir, imported as a module of the domain's package) or
    'package.module:Name'."""
    if ":" not in ref:
        raise DomainError(f"{what} must look like 'file.py:Name' or 'package.module:Name', got {ref!r}",
                          path=str(spec_path), line=line)
    module_ref, attr = ref.rsplit(":", 1)
    try:
        if module_ref.endswith(".py"):
            file = (base / module_ref).resolve()
            if not file.is_file() or file.parent != base.resolve():
                raise DomainError(f"{what}: file {module_ref} not found in {base.name}/", path=str(spec_path),
                                  line=line)
            package = _domain_package(base)
            if package not in sys.modules:
                _fresh_package(base)
            module = importlib.import_module(f"{package}.{file.stem}")
        else:
            module = importlib.import_module(module_ref)
        return getattr(module, attr)
    except DomainError:
        raise
    except AttributeError:
        raise DomainError(f"{what}: {module_ref} has no {attr!r}", path=str(spec_path), line=line) from None
    except Exception as exc:  # noqa: BLE001 - user code failing to import
        raise DomainError(f"{what}: cannot import {module_ref}: {type(exc).__name__}: {exc}",
                          path=str(spec_path), line=line) from None


def _read_jsonl(path: Path, model: type[BaseModel]) -> list[Any]:
    items: list[Any] = []
    if not path.exists():
        return items
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("//"):
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DomainError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=str(path), line=lineno) from None
        try:
            item = model.model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in err["loc"]) or "(line)"
            raise DomainError(f"{loc}: {err['msg']}", path=str(path), line=lineno) from None
        if item.id in seen:
            raise DomainError(f"duplicate id {item.id!r} (first on line {seen[item.id]})", path=str(path), line=lineno)
        seen[item.id] = lineno
        item.__dict__["_line"] = lineno
        items.append(item)
    return items


def load_domain(path: Path, *, override: dict[str, Any] | None = None) -> Domain:
    """Load ``path``; ``override`` (overrides.py, from the data dir) is merged over domain.yaml."""
    spec_path = path / "domain.yaml"
    if not spec_path.is_file():
        raise DomainError("missing domain.yaml", path=str(path))
    _fresh_package(path)  # every load executes the domain's Python files afresh, once each
    text = spec_path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DomainError(f"YAML syntax error: {getattr(exc, 'problem', exc)}", path=str(spec_path),
                          line=mark.line + 1 if mark else None) from None
    lines = _key_lines(spec_path, text)
    extra_negatives = list((override or {}).get("negatives") or [])
    if override:
        from .overrides import merge_override

        patch = {k: v for k, v in override.items()
                 if k in ("selection", "vote", "derive", "ground", "units", "rules", "cot")}
        raw = merge_override(raw, patch) if isinstance(raw, dict) else raw
    try:
        spec = DomainSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = str(err["loc"][0]) if err["loc"] else ""
        loc = ".".join(str(p) for p in err["loc"])
        raise DomainError(f"{loc}: {err['msg']}", path=str(spec_path), line=lines.get(key)) from None
    unknown = set(spec.options) - ModelOptions.DOMAIN_KEYS
    if unknown:
        raise DomainError(f"options: unknown option(s) {', '.join(sorted(unknown))}", path=str(spec_path),
                          line=lines.get("options"))
    from ..config import SelectionSettings

    try:
        SelectionSettings.model_validate(spec.selection)
        bad = set(spec.selection) - set(SelectionSettings.model_fields)
        if bad:
            raise DomainError(f"selection: unknown parameter(s) {', '.join(sorted(bad))}", path=str(spec_path),
                              line=lines.get("selection"))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise DomainError(f"selection.{'.'.join(map(str, err['loc']))}: {err['msg']}", path=str(spec_path),
                          line=lines.get("selection")) from None

    try:
        decl_spec = DeclarativeSpec.from_sections(context=spec.context, ground=spec.ground, units=spec.units,
                                                  derive=spec.derive, vote=spec.vote, harden=spec.harden)
    except ValueError as exc:
        section = str(exc).split(".", 1)[0].split(":", 1)[0]
        raise DomainError(str(exc), path=str(spec_path), line=lines.get(section)) from None
    declared = (lambda request: Declarative(decl_spec, None).context(request)) if decl_spec.context else None

    validator: OutputValidator | None = None
    if spec.output_model and spec.output_schema:
        raise DomainError("give output_model or output_schema, not both", path=str(spec_path),
                          line=lines.get("output_schema"))
    if spec.output_model:
        model = _load_object(spec.output_model, path, what="output_model", spec_path=spec_path,
                             line=lines.get("output_model"))
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise DomainError(f"output_model {spec.output_model} is not a pydantic model", path=str(spec_path),
                              line=lines.get("output_model"))
        hooks: dict[str, Callable[..., Any] | None] = {}
        for key in ("context_builder", "repair", "grammar"):
            ref = getattr(spec, key)
            hooks[key] = _load_object(ref, path, what=key, spec_path=spec_path, line=lines.get(key)) if ref else None
            if ref and not callable(hooks[key]):
                raise DomainError(f"{key} {ref} is not callable", path=str(spec_path), line=lines.get(key))
        validator = PydanticValidator(model, hooks["context_builder"], repair=hooks["repair"],
                                      grammar=hooks["grammar"], declared=declared)
    elif spec.repair or spec.grammar or spec.context_builder:
        raise DomainError("repair, grammar and context_builder need a pydantic output_model", path=str(spec_path),
                          line=lines.get("repair") or lines.get("grammar") or lines.get("context_builder"))
    if spec.output_schema and not spec.output_model:
        schema_path = path / spec.output_schema
        try:
            schema = json.loads(schema_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DomainError(f"output_schema file {spec.output_schema} not found", path=str(spec_path),
                              line=lines.get("output_schema")) from None
        except json.JSONDecodeError as exc:
            raise DomainError(f"invalid JSON: {exc.msg}", path=str(schema_path), line=exc.lineno) from None
        try:
            validator = JSONSchemaValidator(schema)
        except Exception as exc:  # noqa: BLE001 - jsonschema.SchemaError
            raise DomainError(f"not a valid JSON Schema: {getattr(exc, 'message', exc)}", path=str(schema_path)) from None

    if validator is None and (decl_spec.ground or decl_spec.derive or decl_spec.vote):
        raise DomainError("ground, derive and vote need an output model or schema", path=str(spec_path),
                          line=lines.get("ground") or lines.get("derive") or lines.get("vote"))
    examples = _read_jsonl(path / "examples.jsonl", CuratedExample)
    negatives = _read_jsonl(path / "negatives.jsonl", CuratedNegative)
    for item in extra_negatives:  # learned from reviewers' edits (an applied suggestion)
        try:
            negatives.append(CuratedNegative.model_validate(item))
        except ValidationError as exc:
            raise DomainError(f"override negative: {exc.errors(include_url=False)[0]['msg']}",
                              path=str(spec_path)) from None
    if validator is not None:
        for file, items, fields in (
            (path / "examples.jsonl", examples, ("answer",)),
            (path / "negatives.jsonl", negatives, ("right",)),
        ):
            for item in items:
                for field in fields:
                    outcome = validator.validate_value(getattr(item, field), item.question)
                    if not outcome.ok:
                        raise DomainError(f"{item.id}: {field} fails the output model: {outcome.errors[0]}",
                                          path=str(file), line=item.__dict__.get("_line"))
                    setattr(item, field, outcome.value)
    inferred: list[str] = []
    if spec.infer and validator is not None:
        inferred = infer(decl_spec, inline_refs(validator.json_schema()), [(e.question, e.answer) for e in examples])
    declarative = Declarative(decl_spec, validator.json_schema() if validator is not None else None)
    _check_declared(declarative, path, examples, negatives)
    cues = mine_cues([(e.question, e.answer) for e in examples],
                     [p for p, v in decl_spec.vote.items() if not v.per_clause]) if decl_spec.vote else {}
    step_bank: list[tuple[str, str]] = []
    split = rule = None
    plain: tuple[Any, Any, list[tuple[str, str]]] | None = None  # the per-clause vote without Python hooks
    steps_path: FieldPath | None = None
    per_clause = [(p, v) for p, v in decl_spec.vote.items() if v.per_clause]
    if per_clause and spec.steps is not None:
        raise DomainError("give steps or a per_clause vote, not both", path=str(spec_path), line=lines.get("vote"))
    if len(per_clause) > 1:
        raise DomainError("at most one per_clause vote", path=str(spec_path), line=lines.get("vote"))
    if per_clause:
        steps_path, vspec = per_clause[0]
        if "*" not in steps_path:
            raise DomainError(f"vote: a per_clause path needs a * for the list, got /{'/'.join(steps_path)}",
                              path=str(spec_path), line=lines.get("vote"))
        line = lines.get("vote")
        split = (_load_object(vspec.split, path, what="vote.split", spec_path=spec_path, line=line)
                 if vspec.split else default_split)
        hook = _load_object(vspec.rule, path, what="vote.rule", spec_path=spec_path, line=line) if vspec.rule else None
        rule = yaml_rule(vspec.rules, hook, context_of=declarative.context)
        step_bank = read_bank(path / vspec.bank) if vspec.bank else []
        def core_split(request: str, _context: Any = decl_spec.context) -> list[str]:
            return default_split(request_body(request, _context))

        plain_bank = step_bank + example_clauses(examples, core_split, path_labels(steps_path))
        step_bank += example_clauses(examples, split, path_labels(steps_path))
        plain = (core_split, yaml_rule(vspec.rules, None, context_of=declarative.context), plain_bank)
        if split is default_split:
            split = core_split
    if spec.steps is not None:
        line = lines.get("steps")
        split = _load_object(spec.steps.split, path, what="steps.split", spec_path=spec_path, line=line)
        step_bank = read_bank(path / spec.steps.bank)
        if spec.steps.label_of:
            label_of = _load_object(spec.steps.label_of, path, what="steps.label_of", spec_path=spec_path, line=line)
            step_bank += example_clauses(examples, split, label_of)
        if spec.steps.rule:
            rule = _load_object(spec.steps.rule, path, what="steps.rule", spec_path=spec_path, line=line)
    check_variants(spec.variants, domain_dir=path, spec_path=spec_path, text=text)
    return Domain(name=path.name, path=path, spec=spec, examples=examples, negatives=negatives, validator=validator,
                  step_bank=step_bank, split=split, step_rule=rule, steps_path=steps_path, declarative=declarative,
                  inferred=inferred, cues=cues, plain_steps=plain)


class _Settled:
    ground = harden = False
    derive = vote = True


def _check_declared(declarative: Declarative, path: Path, examples: list[CuratedExample],
                    negatives: list[CuratedNegative]) -> None:
    """A curated answer that disagrees with a derived field or a vote rule of domain.yaml is an error in the
    data: it would teach the model the opposite of what the core then enforces."""
    if not (declarative.spec.derive or any(v.rules for v in declarative.spec.vote.values())):
        return
    for file, items, field in ((path / "examples.jsonl", examples, "answer"), (path / "negatives.jsonl", negatives,
                                                                               "right")):
        for item in items:
            _, changes = declarative.post(getattr(item, field), item.question, flags=_Settled())
            if changes:
                raise DomainError(f"{item.id}: {field} disagrees with domain.yaml: {changes[0]}", path=str(file),
                                  line=item.__dict__.get("_line"))


class DomainRegistry:
    """All domains under a knowledge base directory, loaded on first use and cached."""

    def __init__(self, root: Path, *, overrides: Path | None = None) -> None:
        self.root = Path(root)
        self.overrides = OverrideStore(overrides) if overrides is not None else None
        self._cache: dict[str, tuple[str | None, Domain]] = {}
        self._lock = threading.Lock()
        self._names: tuple[float, list[str]] | None = None

    NAMES_TTL = 1.0  # seconds a directory listing is reused (the server asks on every request)

    def names(self) -> list[str]:
        now = time.monotonic()
        cached = self._names
        if cached is not None and now - cached[0] < self.NAMES_TTL:
            return list(cached[1])
        names = sorted(p.name for p in self.root.iterdir() if (p / "domain.yaml").is_file()) if self.root.is_dir() else []
        self._names = (now, names)
        return list(names)

    def get(self, name: str) -> Domain:
        with self._lock:
            live = self.overrides.live_name(name) if self.overrides is not None and name else None
            if name in self._cache and self._cache[name][0] == live:
                return self._cache[name][1]
            if name and name not in self.names():
                self._names = None  # a domain created within the last second: look again before refusing
            if not name or name not in self.names():
                raise UnknownDomainError(name, self.names())
            override = self.overrides.live(name) if self.overrides is not None and live else None
            domain = load_domain(self.root / name, override=override)
            self._cache[name] = (live, domain)
            return domain

    def load_all(self) -> list[Domain]:
        return [self.get(n) for n in self.names()]
