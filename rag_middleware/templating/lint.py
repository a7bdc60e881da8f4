"""Prompt lint: what `rag-middleware prompts lint`, `make lint-prompts` and the server's hot reload check.

For a template set (a directory, or a snapshot in memory):

1. every ``*.j2`` parses and compiles in the sandboxed environment (unknown filters are errors too);
2. every variable a template reads is in the documented context the assembler gives it
   (:data:`~rag_middleware.templating.engine.TEMPLATE_CONTEXT`), found with the Jinja2 AST, reported as file:line;
   attribute or item access to ``_private`` names (Python internals) is an error: the sandbox refuses it;
3. each domain's overrides (``<domain>/<name>.j2``) are checked the same way, and an override directory that
   names no domain or a file the assembler never renders is reported;
4. every domain renders every template against one of its own curated examples (both branches of the
   flags: with and without examples, chain of thought, a truncated answer), so a wrong attribute or a sandbox
   refusal in a branch that only some domain takes is found too;
5. :func:`lint_variants`: the template set of each A/B variant a domain declares (``variants[].prompts`` in
   domain.yaml) gets the same checks, rendered for that domain.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jinja2
from jinja2 import meta, nodes

from ..errors import DomainError, TemplateError
from .engine import TEMPLATE_CONTEXT, TEMPLATE_NAMES, TemplateSnapshot, new_environment

if TYPE_CHECKING:  # lint is handed the domains to render for; templating sits below domains
    from ..domains import Domain, DomainRegistry

__all__ = ["Problem", "errors_only", "lint_dir", "lint_snapshot", "lint_variants", "sample_contexts"]

_GLOBALS = frozenset(new_environment().globals)


@dataclass(frozen=True)
class Problem:
    severity: Literal["error", "warning"]
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.severity}: {self.message}"


def errors_only(problems: Iterable[Problem]) -> list[str]:
    """The errors as lines (what the server's hot reload refuses an edit for)."""
    return [str(p) for p in problems if p.severity == "error"]


def lint_dir(path: Path, domains: DomainRegistry) -> list[Problem]:
    try:
        snapshot = TemplateSnapshot.load(Path(path))
    except TemplateError as exc:
        return [Problem("error", str(exc.path or path), exc.line, exc.one_line().removeprefix("template error: "))]
    return lint_snapshot(snapshot, domains)


def lint_variants(domains: DomainRegistry) -> list[Problem]:
    """The template sets of the domains' A/B variants, each rendered for its own domain."""
    problems: list[Problem] = []
    for name in domains.names():
        try:
            domain = domains.get(name)
        except DomainError:
            continue  # lint_snapshot's render pass reports it
        for variant in domain.spec.variants:
            if variant.prompts is None:
                continue
            root = (domain.path / variant.prompts).resolve()
            try:
                snapshot = TemplateSnapshot.load(root)
            except TemplateError as exc:
                problems.append(Problem("error", str(exc.path or root), exc.line,
                                        f"variant {variant.name} of {name}: {exc.one_line()}"))
                continue
            problems += lint_snapshot(snapshot, domains, only=[name])
    return problems


def lint_snapshot(snapshot: TemplateSnapshot, domains: DomainRegistry | None, *,
                  only: list[str] | None = None) -> list[Problem]:
    """Every check for one template set; ``only`` renders just these domains (a variant's set)."""
    problems: list[Problem] = []
    names = domains.names() if domains is not None else []
    parsed: dict[str, nodes.Template] = {}
    env = new_environment()
    for rel, source in sorted(snapshot.files.items()):
        path = snapshot.path_of(rel)
        try:
            parsed[rel] = env.parse(source, name=rel, filename=path)
            env.compile(source, name=rel, filename=path)  # unknown filters and tests fail here
        except jinja2.TemplateSyntaxError as exc:
            problems.append(Problem("error", path, exc.lineno, f"syntax: {exc.message}"))
            parsed.pop(rel, None)
    for name in TEMPLATE_NAMES:
        if f"{name}.j2" not in snapshot.files:
            problems.append(Problem("error", snapshot.path_of(f"{name}.j2"), None,
                                    f"missing template {name}.j2: the assembler renders it for every domain"))
    problems += _check_variables(snapshot, parsed, names)
    for domain_dir in snapshot.override_domains():
        if domains is not None and only is None and domain_dir not in names:
            problems.append(Problem("warning", snapshot.path_of(domain_dir), None,
                                    f"overrides templates for {domain_dir!r}, which is not a domain "
                                    f"(domains: {', '.join(names) or 'none'})"))
    if domains is not None:  # a file with a static error is not reported again by the render pass
        broken = {p.path for p in problems if p.severity == "error"}
        problems += [p for p in _render_domains(snapshot, domains, only) if p.path not in broken]
    return problems


# -- the context contract ------------------------------------------------------------------------------

def _contract(rel: str) -> tuple[str, ...] | None:
    stem = rel.rsplit("/", 1)[-1].removesuffix(".j2")
    depth = rel.count("/")
    if stem in TEMPLATE_CONTEXT and depth <= 1:
        return TEMPLATE_CONTEXT[stem]
    return None


def _check_variables(snapshot: TemplateSnapshot, parsed: dict[str, nodes.Template],
                     domain_names: list[str]) -> list[Problem]:
    problems: list[Problem] = []
    # partials (included or imported files) see the context of the templates that include them
    included_by: dict[str, set[str]] = {}
    for rel, ast in parsed.items():
        for ref in meta.find_referenced_templates(ast):
            if isinstance(ref, str):
                for target in (f"{rel.split('/', 1)[0]}/{ref}" if "/" in rel else None, ref):
                    if target and target in snapshot.files:
                        included_by.setdefault(target, set()).add(rel)
                        break
    for rel, ast in parsed.items():
        path = snapshot.path_of(rel)
        problems += _internals(ast, path)
        contract = _contract(rel)
        severity: Literal["error", "warning"] = "error"
        if contract is None:
            parents = included_by.get(rel, set())
            if not parents:
                problems.append(Problem("warning", path, None, "not rendered by the assembler and not included "
                                        f"by any template (templates: {', '.join(TEMPLATE_NAMES)})"))
                continue
            contract = tuple(sorted({v for p in parents for v in (_contract(p) or ())}))
            severity = "warning"  # an include also sees the includer's loop variables
        for var in sorted(meta.find_undeclared_variables(ast) - _GLOBALS - set(contract)):
            hint = difflib.get_close_matches(var, contract, n=1)
            problems.append(Problem(
                severity, path, _first_line(ast, var),
                f"unknown variable {var!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; {rel.rsplit('/', 1)[-1]} receives: {', '.join(contract)}"))
    return problems


def _first_line(ast: nodes.Template, var: str) -> int | None:
    lines = [n.lineno for n in ast.find_all(nodes.Name) if n.name == var and n.ctx == "load"]
    return min(lines) if lines else None


def _internals(ast: nodes.Template, path: str) -> list[Problem]:
    """``x.__class__``, ``x['_private']``, ``x|attr('__globals__')``: the sandbox refuses these at render."""
    out: dict[int, Problem] = {}  # one per line
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        attr = None
        if isinstance(node, nodes.Getattr):
            attr = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            attr = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args \
                and isinstance(node.args[0], nodes.Const):
            attr = str(node.args[0].value)
        if attr is not None and attr.startswith("_") and node.lineno not in out:
            out[node.lineno] = Problem("error", path, node.lineno, f"reaches Python internals ({attr!r}); "
                                       "templates get data only and the sandbox refuses this")
    return list(out.values())


# -- rendering every domain ----------------------------------------------------------------------------

def sample_contexts(name: str, domain: Domain) -> list[dict[str, Any]]:
    """Contexts for ``name`` the assembler would give it for ``domain``, built from the domain's first curated
    example and negatives: exactly the documented variables, in each branch worth rendering."""
    dom = {"name": domain.name, "description": domain.spec.description.strip()}
    example = domain.examples[0] if domain.examples else None
    question = example.question if example else "A sample request."
    answer = domain.answer_text(example.answer) if example else "A sample answer."
    negs = [{"question": n.question, "wrong": domain.answer_text(n.wrong), "why": n.why,
             "right": domain.answer_text(n.right)} for n in domain.negatives[:2]] or [
        {"question": question, "wrong": "a wrong answer", "why": "why it is wrong", "right": answer}]
    if name == "cot":
        return [{"domain": dom, "steps": list(domain.spec.cot.steps) or ["Read the request."]}]
    if name == "negatives":
        return [{"domain": dom, "negatives": negs}]
    if name == "fewshot":
        return [{"domain": dom, "question": question, "is_request": flag} for flag in (True, False)]
    if name == "system":
        full = {"domain": dom, "schema": domain.schema_json, "rules": list(domain.spec.rules),
                "cot": "1. Read the request.", "negatives": "Mistakes to avoid: ...", "has_examples": True,
                "free_text": domain.free_text}
        return [full, {**full, "cot": "", "negatives": "", "has_examples": False, "rules": []}]
    if name == "repair":
        base = {"domain": dom, "errors": ["(root): sample error", "task: another"], "attempt": 2, "max_attempts": 3,
                "previous_output": answer, "truncated": False}
        return [base, {**base, "errors": ["(root): sample error"]}, {**base, "truncated": True, "attempt": 3}]
    if name == "completion":
        messages = [
            {"role": "system", "content": "system text", "kind": "system"},
            {"role": "user", "content": question, "kind": "example"},
            {"role": "assistant", "content": answer, "kind": "example"},
            {"role": "user", "content": "an earlier turn", "kind": "history"},
            {"role": "assistant", "content": "its answer", "kind": "history"},
            {"role": "user", "content": question, "kind": "request"},
        ]
        retry = messages + [{"role": "assistant", "content": "{", "kind": "rejected"},
                            {"role": "user", "content": "Your answer was cut off.", "kind": "repair"}]
        return [{"domain": dom, "messages": m, "free_text": domain.free_text} for m in (messages, retry)]
    raise KeyError(name)


def _render_domains(snapshot: TemplateSnapshot, domains: DomainRegistry, only: list[str] | None) -> list[Problem]:
    found: dict[tuple[str, int | None, str], list[str]] = {}
    warnings: list[Problem] = []
    for name in only if only is not None else domains.names():
        try:
            domain = domains.get(name)
        except DomainError as exc:
            warnings.append(Problem("warning", str(exc.path or domains.root / name), exc.line,
                                    f"domain {name} does not load, its rendering was not checked: {exc}"))
            continue
        for template in TEMPLATE_NAMES:
            for ctx in sample_contexts(template, domain):
                try:
                    text = snapshot.render(template, for_domain=name, **ctx)
                except TemplateError as exc:
                    message = str(exc).removeprefix("template error: ")
                    if exc.path and message.startswith(exc.path):
                        message = message[len(exc.path):].lstrip(":0123456789 ")
                    found.setdefault((exc.path or "", exc.line, message), []).append(name)
                    break
                if template == "fewshot" and ctx["is_request"] and ctx["question"].strip() not in text:
                    warnings.append(Problem("warning", snapshot.path_of(snapshot.source_rel("fewshot", name)), None,
                                            f"the request turn for {name} does not contain the request"))
    if only is None:  # a conversation for no domain is flattened by the default completion.j2
        try:
            snapshot.render("completion", messages=[{"role": "user", "content": "hi", "kind": "request"}],
                            free_text=True, domain={"name": "", "description": ""})
        except TemplateError as exc:
            found.setdefault((exc.path or "", exc.line, str(exc)), []).append("(no domain)")
    errors = [Problem("error", path, line, f"rendering for {', '.join(sorted(set(names)))} with a curated example: "
                                           f"{message}") for (path, line, message), names in found.items()]
    return errors + warnings
