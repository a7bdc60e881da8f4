"""Domains: ``knowledge_base/<name>/`` loaded and checked, with errors that name file and line.

Layout of a domain directory::

    domain.yaml        description, output model or schema, options, selection, cot, rules
    examples.jsonl     {"id", "question", "answer"}          curated few-shot examples
    negatives.jsonl    {"id", "question", "wrong", "why", "right"}   contrastive examples
    <model>.py / *.json  the output model (pydantic, by ``file.py:Class`` or ``pkg.mod:Class``) or JSON Schema
"""

from __future__ import annotations

import json
from functools import cached_property
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from ..errors import DomainError
from ..templating.variants import VariantSpec, check_variants
from ..options import ModelOptions
from .clauses import StepSpec, default_split, example_clauses, path_labels, read_bank, regex_split, yaml_rule
from .domain_files import fresh_package, key_lines, line_of, load_object, read_jsonl
from .validation import JSONSchemaValidator, OutputValidator, PydanticValidator
from .grounding import request_body
from .infer import infer, set_when_found
from .anchors import learnt_anchors
from .glosses import gloss_pairs, gloss_rules, label_glosses, label_kinds
from .slots import learnt_slots
from .named_values import learn_words
from .used_values import used_sources
from .votes import mine_cues
from .mechanisms import Declarative, Flags
from .paths import Path as FieldPath, inline_refs
from .spec import DeclarativeSpec, SplitSpec, against_schema

__all__ = ["CuratedExample", "CuratedNegative", "Domain", "DomainSpec", "SETTLED", "load_domain"]


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
    anchors: list[Any] = Field(default_factory=list)  # anchors.AnchorBank per anchored list, judged at load
    slots: Any = None  # slots.SlotBank: which number or word fills which grounded field, judged at load
    # reviewed answers of one tenant this copy also learnt from (learning/taught.py); never prompt examples
    learnt: list[CuratedExample] = Field(default_factory=list)
    learnt_key: str = ""  # a fingerprint of ``learnt`` ("" for the domain as loaded from its directory)
    glossed: list[tuple[str, Any]] = Field(default_factory=list)  # glosses.gloss_pairs: cue-mining pseudo-examples
    gloss_rules: dict[Any, Any] = Field(default_factory=dict)  # glosses.GlossRule per voted field, judged at load
    label_kinds: set[Any] = Field(default_factory=set)  # glosses.label_kinds: the fields calibration may correct
    _shown: Any = PrivateAttr(default=None)  # the schema shown to the model, derived fields hidden
    _texts: dict[str, tuple[str, str]] = PrivateAttr(default_factory=dict)  # stored answers' texts, shown and full

    @property
    def cache_key(self) -> str:
        """What caches of a domain's derived data key on: a tenant's learnt copy is a different domain."""
        return f"{self.name}\0{self.learnt_key}" if self.learnt_key else self.name

    @cached_property
    def learnt_ids(self) -> frozenset[str]:
        """The ids of the reviewed answers this copy learnt from."""
        return frozenset(e.id for e in self.learnt)

    @property
    def teaching(self) -> list[CuratedExample]:
        """Every example the domain learns from: the curated ones, then the reviewed answers it was taught."""
        return [*self.examples, *self.learnt] if self.learnt else self.examples

    @property
    def schema_json(self) -> dict[str, Any] | None:
        """The schema shown to the model: without the derived fields it is never asked for."""
        return self.shown_schema(hide_derived=True)

    def shown_schema(self, *, hide_derived: bool) -> dict[str, Any] | None:
        """With ``hide_derived`` the same object every time (built once per loaded domain): read it, don't edit."""
        if self.validator is None:
            return None
        if not hide_derived:
            return self.validator.json_schema()
        if self._shown is None:
            self._shown = self.declarative.display_schema(self.validator.json_schema())
        return self._shown

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
        if isinstance(answer, str):  # a stored answer (JSON text): memory hits repeat, so kept (bounded)
            return self.stored_forms(answer)[1 if hide_derived else 2]
        return self._shown_text(answer, hide_derived)

    def stored_forms(self, stored: str) -> tuple[Any, str, str]:
        """A stored answer (JSON text) as a value (parsed anew: the caller may keep it), as shown to the model
        and in full (with its derived fields). The texts are kept (bounded): memory hits repeat."""
        texts = self._texts.get(stored)
        if texts is None:
            if self.free_text:
                texts = (stored, stored)
            else:
                full = self._shown_text(stored, False)
                texts = (self._shown_text(stored, True) if self.declarative.spec.derive else full, full)
            if len(self._texts) >= 4096:
                self._texts.pop(next(iter(self._texts)))
            self._texts[stored] = texts
        try:
            value = json.loads(stored)
        except ValueError:
            value = None
        return value, texts[0], texts[1]

    def _shown_text(self, answer: Any, hide_derived: bool) -> str:
        fresh = isinstance(answer, str)
        if fresh:
            try:
                answer = json.loads(answer)
            except ValueError:
                return answer
        shown = self.declarative.for_display(answer, owned=fresh) if hide_derived else answer
        return json.dumps(shown, ensure_ascii=False, separators=(", ", ": "))


class _AllOn:
    ground = derive = vote = harden = True


ALL_ON = _AllOn()


_OVERRIDABLE = ("selection", "vote", "derive", "ground", "units", "rules", "cot")  # what an override may patch


def load_domain(path: Path, *, override: dict[str, Any] | None = None,
                learnt: list[CuratedExample] | None = None) -> Domain:
    """Load ``path``; ``override`` (overrides.py, from the data dir) is merged over domain.yaml. ``learnt``:
    reviewed answers (already checked, learning/taught.py) the domain learns from beside its curated examples:
    inferred mechanisms, cue words, the clause bank, anchors and slots; they are not prompt examples."""
    spec_path = path / "domain.yaml"
    if not spec_path.is_file():
        raise DomainError("missing domain.yaml", path=str(path))
    fresh_package(path)  # every load executes the domain's Python files afresh, once each
    text = spec_path.read_text(encoding="utf-8")
    raw = _parse_yaml(spec_path, text)
    lines = key_lines(spec_path, text)
    spec = _read_spec(raw, override, spec_path, lines)
    decl_spec = _declarative_spec(spec, spec_path, lines)
    reader = Declarative(decl_spec, None)  # the hook's contexts; the domain's mechanisms share what it read
    declared = reader.context if decl_spec.context else None
    validator = _load_validator(spec, path, spec_path, lines, declared)
    if validator is None:
        _check_free_text(decl_spec, spec_path, lines)
    inlined = inline_refs(validator.json_schema()) if validator is not None else None
    for where, message in against_schema(decl_spec, inlined) if inlined is not None else []:
        raise DomainError(message, path=str(spec_path), line=line_of(lines, where))
    examples, negatives = _load_curated(path, spec_path, validator, (override or {}).get("negatives"))
    taught = [*examples, *(learnt or [])]
    inferred = (infer(decl_spec, inlined, [(e.question, e.answer) for e in taught])
                if spec.infer and inlined is not None else [])
    declarative = Declarative(decl_spec, validator.json_schema() if validator is not None else None,
                              reader=reader)
    _check_declared(declarative, path, examples, negatives)
    voted = {p: v for p, v in decl_spec.vote.items() if not v.per_clause and "*" not in p}
    by_label = label_glosses(declarative.schema, list(voted), declarative.vote_labels(), spec.rules)
    glossed = gloss_pairs(by_label)
    cues = mine_cues([(e.question, e.answer) for e in taught] + glossed, voted, shaped=len(taught)) if voted else {}
    steps = _load_steps(spec, declarative, path, spec_path, lines, taught)
    pairs = [(request_body(e.question, decl_spec.context), e.answer) for e in taught]
    rules = gloss_rules(declarative.schema, decl_spec.vote, declarative.vote_labels(), spec.rules, pairs,
                        derived=set(decl_spec.derive))
    learn_words(decl_spec, inlined, pairs, spec.rules)  # word shapes; naming words; value phrases
    decl_spec.used = used_sources(declarative, [(e.question, e.answer) for e in taught]) if spec.infer else []
    decl_spec.found = set_when_found(decl_spec, pairs) if spec.infer else {}
    anchors = learnt_anchors(declarative.schema, decl_spec, pairs, spec.rules) if validator is not None else []
    slots = learnt_slots(decl_spec, pairs) if validator is not None else None
    check_variants(spec.variants, domain_dir=path, spec_path=spec_path, text=text)
    return Domain(name=path.name, path=path, spec=spec, examples=examples, negatives=negatives, validator=validator,
                  step_bank=steps.bank, split=steps.split, step_rule=steps.rule, steps_path=steps.path,
                  declarative=declarative, inferred=inferred, cues=cues, plain_steps=steps.plain, anchors=anchors,
                  slots=slots, learnt=list(learnt or []), glossed=glossed, gloss_rules=rules,
                  label_kinds=label_kinds(by_label, rules))


def _parse_yaml(spec_path: Path, text: str) -> Any:
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DomainError(f"YAML syntax error: {getattr(exc, 'problem', exc)}", path=str(spec_path),
                          line=mark.line + 1 if mark else None) from None


def _read_spec(raw: Any, override: dict[str, Any] | None, spec_path: Path, lines: dict[str, int]) -> DomainSpec:
    """domain.yaml, with the override's sections merged over it, as a DomainSpec with checked options and
    selection parameters."""
    if override:
        from .overrides import merge_override

        patch = {k: v for k, v in override.items() if k in _OVERRIDABLE}
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
    _check_selection(spec.selection, spec_path, lines.get("selection"))
    return spec


def _check_selection(selection: dict[str, Any], spec_path: Path, line: int | None) -> None:
    from ..config import SelectionSettings

    try:
        SelectionSettings.model_validate(selection)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise DomainError(f"selection.{'.'.join(map(str, err['loc']))}: {err['msg']}", path=str(spec_path),
                          line=line) from None
    bad = set(selection) - set(SelectionSettings.model_fields)
    if bad:
        raise DomainError(f"selection: unknown parameter(s) {', '.join(sorted(bad))}", path=str(spec_path),
                          line=line)


def _declarative_spec(spec: DomainSpec, spec_path: Path, lines: dict[str, int]) -> DeclarativeSpec:
    try:
        return DeclarativeSpec.from_sections(context=spec.context, ground=spec.ground, units=spec.units,
                                             derive=spec.derive, vote=spec.vote, harden=spec.harden)
    except ValueError as exc:
        raise DomainError(str(exc), path=str(spec_path), line=line_of(lines, str(exc).split(":", 1)[0])) from None


def _load_validator(spec: DomainSpec, path: Path, spec_path: Path, lines: dict[str, int],
                    declared: Callable[[str], Any] | None) -> OutputValidator | None:
    """The output model (with its Python hooks) or the JSON Schema of domain.yaml; None for free text."""
    if spec.output_model and spec.output_schema:
        raise DomainError("give output_model or output_schema, not both", path=str(spec_path),
                          line=lines.get("output_schema"))
    if spec.output_model:
        return _pydantic_validator(spec, path, spec_path, lines, declared)
    if spec.repair or spec.grammar or spec.context_builder:
        raise DomainError("repair, grammar and context_builder need a pydantic output_model", path=str(spec_path),
                          line=lines.get("repair") or lines.get("grammar") or lines.get("context_builder"))
    if spec.output_schema:
        return _schema_validator(path / spec.output_schema, spec.output_schema, spec_path,
                                 lines.get("output_schema"))
    return None


def _check_free_text(decl_spec: DeclarativeSpec, spec_path: Path, lines: dict[str, int]) -> None:
    """A free-text domain has no fields to ground, derive or vote on."""
    if decl_spec.ground or decl_spec.derive or decl_spec.vote:
        raise DomainError("ground, derive and vote need an output model or schema", path=str(spec_path),
                          line=lines.get("ground") or lines.get("derive") or lines.get("vote"))


def _pydantic_validator(spec: DomainSpec, path: Path, spec_path: Path, lines: dict[str, int],
                        declared: Callable[[str], Any] | None) -> PydanticValidator:
    model = load_object(spec.output_model, path, what="output_model", spec_path=spec_path,
                        line=lines.get("output_model"))
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise DomainError(f"output_model {spec.output_model} is not a pydantic model", path=str(spec_path),
                          line=lines.get("output_model"))
    hooks: dict[str, Callable[..., Any] | None] = {}
    for key in ("context_builder", "repair", "grammar"):
        ref = getattr(spec, key)
        hooks[key] = load_object(ref, path, what=key, spec_path=spec_path, line=lines.get(key)) if ref else None
        if ref and not callable(hooks[key]):
            raise DomainError(f"{key} {ref} is not callable", path=str(spec_path), line=lines.get(key))
    return PydanticValidator(model, hooks["context_builder"], repair=hooks["repair"], grammar=hooks["grammar"],
                             declared=declared)


def _schema_validator(schema_path: Path, name: str, spec_path: Path, line: int | None) -> JSONSchemaValidator:
    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DomainError(f"output_schema file {name} not found", path=str(spec_path), line=line) from None
    except json.JSONDecodeError as exc:
        raise DomainError(f"invalid JSON: {exc.msg}", path=str(schema_path), line=exc.lineno) from None
    try:
        return JSONSchemaValidator(schema)
    except Exception as exc:  # noqa: BLE001 - jsonschema.SchemaError
        raise DomainError(f"not a valid JSON Schema: {getattr(exc, 'message', exc)}",
                          path=str(schema_path)) from None


def _load_curated(path: Path, spec_path: Path, validator: OutputValidator | None,
                  extra_negatives: list[Any] | None) -> tuple[list[CuratedExample], list[CuratedNegative]]:
    """examples.jsonl and negatives.jsonl (plus the override's negatives), each answer checked against (and
    normalised by) the output model."""
    examples = read_jsonl(path / "examples.jsonl", CuratedExample)
    negatives = read_jsonl(path / "negatives.jsonl", CuratedNegative)
    for item in extra_negatives or []:  # learned from reviewers' edits (an applied suggestion)
        try:
            negatives.append(CuratedNegative.model_validate(item))
        except ValidationError as exc:
            raise DomainError(f"override negative: {exc.errors(include_url=False)[0]['msg']}",
                              path=str(spec_path)) from None
    if validator is not None:
        for file, items, attr in ((path / "examples.jsonl", examples, "answer"),
                                  (path / "negatives.jsonl", negatives, "right")):
            for item in items:
                outcome = validator.validate_value(getattr(item, attr), item.question)
                if not outcome.ok:
                    raise DomainError(f"{item.id}: {attr} fails the output model: {outcome.errors[0]}",
                                      path=str(file), line=item.__dict__.get("_line"))
                setattr(item, attr, outcome.value)
    return examples, negatives


@dataclass
class _Steps:
    """A domain's step guidance: the labelled clause bank, the splitter, the rule hook, the list path of a
    per-clause vote, and that vote's (split, rule, bank) with the Python hooks off."""

    bank: list[tuple[str, str]] = field(default_factory=list)
    split: Any = None
    rule: Any = None
    path: FieldPath | None = None
    plain: tuple[Any, Any, list[tuple[str, str]]] | None = None


def _load_steps(spec: DomainSpec, declarative: Declarative, path: Path, spec_path: Path, lines: dict[str, int],
                examples: list[CuratedExample]) -> _Steps:
    """Step guidance from a per-clause vote, or from domain.yaml's ``steps`` (never both)."""
    per_clause = [(p, v) for p, v in declarative.spec.vote.items() if v.per_clause]
    if per_clause and spec.steps is not None:
        raise DomainError("give steps or a per_clause vote, not both", path=str(spec_path), line=lines.get("vote"))
    if len(per_clause) > 1:
        raise DomainError("at most one per_clause vote", path=str(spec_path), line=lines.get("vote"))
    if per_clause:
        steps_path, vspec = per_clause[0]
        return _per_clause_steps(steps_path, vspec, declarative, path, spec_path, lines.get("vote"), examples)
    if spec.steps is not None:
        return _declared_steps(spec.steps, path, spec_path, lines.get("steps"), examples)
    return _Steps()


def _per_clause_steps(steps_path: FieldPath, vspec: Any, declarative: Declarative, path: Path, spec_path: Path,
                      line: int | None, examples: list[CuratedExample]) -> _Steps:
    if "*" not in steps_path:
        raise DomainError(f"vote: a per_clause path needs a * for the list, got /{'/'.join(steps_path)}",
                          path=str(spec_path), line=line)
    declared_split = regex_split(vspec.split, lambda r: request_body(r, declarative.spec.context)) \
        if isinstance(vspec.split, SplitSpec) else None
    split = (declared_split or load_object(vspec.split, path, what="vote.split", spec_path=spec_path, line=line)
             if vspec.split else default_split)
    hook = load_object(vspec.rule, path, what="vote.rule", spec_path=spec_path, line=line) if vspec.rule else None
    rule = yaml_rule(vspec.rules, hook, context_of=declarative.context)
    bank = read_bank(path / vspec.bank) if vspec.bank else []

    def core_split(request: str, _context: Any = declarative.spec.context) -> list[str]:
        if declared_split is not None:  # data, so the hooks-off path has it too
            return declared_split(request)
        return default_split(request_body(request, _context))

    plain_bank = bank + example_clauses(examples, core_split, path_labels(steps_path))
    bank += example_clauses(examples, split, path_labels(steps_path))
    plain = (core_split, yaml_rule(vspec.rules, None, context_of=declarative.context), plain_bank)
    return _Steps(bank, core_split if split is default_split else split, rule, steps_path, plain)


def _declared_steps(steps: StepSpec, path: Path, spec_path: Path, line: int | None,
                    examples: list[CuratedExample]) -> _Steps:
    split = load_object(steps.split, path, what="steps.split", spec_path=spec_path, line=line)
    bank = read_bank(path / steps.bank)
    if steps.label_of:
        label_of = load_object(steps.label_of, path, what="steps.label_of", spec_path=spec_path, line=line)
        bank += example_clauses(examples, split, label_of)
    rule = load_object(steps.rule, path, what="steps.rule", spec_path=spec_path, line=line) if steps.rule else None
    return _Steps(bank, split, rule)


class _Settled:
    ground = harden = floors = False
    derive = vote = True


SETTLED = _Settled()  # what a curated (or teaching) answer must already agree with: derived fields, vote rules


def _check_declared(declarative: Declarative, path: Path, examples: list[CuratedExample],
                    negatives: list[CuratedNegative]) -> None:
    """A curated answer that disagrees with a derived field or a vote rule of domain.yaml is an error in the
    data: it would teach the model the opposite of what the core then enforces. An ``x-ground`` annotation
    of the output schema must name a declared context or a built-in source."""
    unknown = declarative.unknown_sources()
    if unknown:
        raise DomainError(f"the output schema grounds in {', '.join(unknown)}: declare it under context: (or use "
                          "request, numbers or words)", path=str(path / "domain.yaml"))
    if not (declarative.spec.derive or any(v.rules for v in declarative.spec.vote.values())):
        return
    for file, items, attr in ((path / "examples.jsonl", examples, "answer"),
                              (path / "negatives.jsonl", negatives, "right")):
        for item in items:
            _, changes = declarative.post(getattr(item, attr), item.question, flags=SETTLED)
            if changes:
                raise DomainError(f"{item.id}: {attr} disagrees with domain.yaml: {changes[0]}", path=str(file),
                                  line=item.__dict__.get("_line"))
