"""Prompt lint: sandbox parse, the context contract (file:line), Python internals, domain overrides, rendering
every domain against its own curated example; the CLI's exit codes; the contract matches the assembler."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, FakeLLM, run_cli as run

from rag_middleware import Middleware, Switches
from rag_middleware.domains import DomainRegistry
from rag_middleware.errors import TemplateError
from rag_middleware.templating.lint import lint_dir, lint_snapshot, sample_contexts
from rag_middleware.templating.engine import TEMPLATE_CONTEXT, TEMPLATE_NAMES, TemplateSnapshot
from rag_middleware.llm.tokens import ApproxTokenCounter


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def lint(project: Path) -> list:
    return lint_dir(project / "prompts", DomainRegistry(project / "knowledge_base"))


def errors(problems) -> list:
    return [p for p in problems if p.severity == "error"]


def test_shipped_prompts_are_clean():
    assert lint_dir(ROOT / "prompts", DomainRegistry(ROOT / "knowledge_base")) == []


def test_unknown_variable_is_an_error_with_file_line_and_a_hint(project):
    write(project / "prompts" / "repair.j2", "Problems:\n{% for e in errors %}- {{ e }}\n{% endfor %}\n"
                                             "Attempt {{ attempt }} of {{ max_attempt }}.\n")
    [problem] = errors(lint(project))
    assert problem.path == str(project / "prompts" / "repair.j2") and problem.line == 4
    assert "unknown variable 'max_attempt'" in problem.message and "did you mean 'max_attempts'" in problem.message
    assert str(problem).startswith(f"{project / 'prompts' / 'repair.j2'}:4: error:")


def test_loop_variables_and_set_are_not_unknown(project):
    write(project / "prompts" / "cot.j2", "{% set n = steps | length %}{% for s in steps %}{{ loop.index }}/{{ n }} "
                                          "{{ s }} {{ range(2) | list }}\n{% endfor %}")
    assert lint(project) == []


def test_syntax_error_and_unknown_filter(project):
    write(project / "prompts" / "system.j2", "{{ domain.description }}\n{% if rules %}\nno end\n")
    write(project / "prompts" / "fewshot.j2", "{{ question | shout }}")
    found = {Path(p.path).name: p for p in errors(lint(project))}
    assert set(found) == {"system.j2", "fewshot.j2"}
    assert found["system.j2"].message.startswith("syntax:") and found["system.j2"].line == 3
    assert "No filter named 'shout'" in found["fewshot.j2"].message and found["fewshot.j2"].line == 1


@pytest.mark.parametrize("expr", ["domain.__class__", "errors['__class__']", "domain | attr('__init__')",
                                  "errors.__class__.__mro__[1].__subclasses__()"])
def test_reaching_python_internals_is_an_error_and_the_sandbox_refuses_it(project, expr):
    write(project / "prompts" / "repair.j2", "Fix these:\n{{ " + expr + " }}\n")
    [problem] = errors(lint(project))
    assert problem.line == 2 and "Python internals" in problem.message
    snapshot = TemplateSnapshot.load(project / "prompts")
    ctx = sample_contexts("repair", DomainRegistry(project / "knowledge_base").get("data_ops"))[0]
    with pytest.raises(TemplateError) as info:  # not only the lint: rendering it is refused
        snapshot.render("repair", for_domain="data_ops", **ctx)
    assert "sandbox" in str(info.value) or "undefined" in str(info.value)
    assert info.value.path == str(project / "prompts" / "repair.j2")


def test_sandbox_refuses_internals_even_through_an_unsafe_looking_variable(project):
    write(project / "prompts" / "probe.j2", "{{ ''.__class__.__mro__ }}")
    with pytest.raises(TemplateError, match="unsafe operation refused by the sandbox"):
        TemplateSnapshot.load(project / "prompts").render("probe")


def test_domain_overrides_are_checked_against_the_same_contract(project):
    write(project / "prompts" / "data_ops" / "fewshot.j2", "Request:\n{{ question }} {{ tenant }}\n")
    write(project / "prompts" / "no_such_domain" / "system.j2", "{{ domain.name }}")
    write(project / "prompts" / "shop_query" / "helper.j2", "{{ rules }}")
    problems = lint(project)
    [error] = errors(problems)
    assert error.path == str(project / "prompts" / "data_ops" / "fewshot.j2") and error.line == 2
    assert "unknown variable 'tenant'" in error.message
    warnings = [p for p in problems if p.severity == "warning"]
    assert any("'no_such_domain', which is not a domain" in p.message for p in warnings)
    assert any(p.path.endswith("shop_query/helper.j2") and "not rendered" in p.message for p in warnings)


def test_every_domain_renders_against_its_own_example(project):
    # a wrong attribute only shows when rendered; an override breaks one domain only
    write(project / "prompts" / "data_ops" / "negatives.j2", "{% for n in negatives %}{{ n.reason }}{% endfor %}")
    write(project / "prompts" / "cot.j2", "{% for s in steps %}{{ loop.index }}. {{ s }}\n{% endfor %}"
                                          "{{ domain.title }}")
    found = errors(lint(project))
    by_file = {Path(p.path).relative_to(project / "prompts").as_posix(): p for p in found}
    assert set(by_file) == {"data_ops/negatives.j2", "cot.j2"}
    assert "rendering for data_ops with a curated example" in by_file["data_ops/negatives.j2"].message
    assert "has no attribute 'reason'" in by_file["data_ops/negatives.j2"].message
    assert "rendering for assistant, claims_intake, data_ops, listing_search, shop_query" in by_file["cot.j2"].message
    assert by_file["cot.j2"].line == 2


def test_a_branch_only_a_retry_takes_is_rendered_too(project):
    write(project / "prompts" / "repair.j2", "{% if truncated %}{{ previous_output.size }}{% else %}"
                                             "{{ errors | join(', ') }}{% endif %}")
    [problem] = errors(lint(project))
    assert problem.path.endswith("repair.j2") and "no attribute 'size'" in problem.message


def test_partials_see_the_context_of_their_includer(project):
    write(project / "prompts" / "rules.j2", "{% for rule in rules %}- {{ rule }}\n{% endfor %}")
    system = project / "prompts" / "system.j2"
    system.write_text(system.read_text().replace("{% for rule in rules %}\n- {{ rule }}\n{% endfor %}",
                                                 '{% include "rules.j2" %}'))
    assert '{% include "rules.j2" %}' in system.read_text()
    assert lint(project) == []
    write(project / "prompts" / "rules.j2", "{{ question }}")  # system.j2 does not receive it
    warning, error = lint(project)
    assert warning.severity == "warning" and "unknown variable 'question'" in warning.message
    assert error.severity == "error" and "'question' is undefined" in error.message
    assert error.path.endswith("rules.j2") and error.line == 1


def test_missing_template_is_an_error(project):
    (project / "prompts" / "negatives.j2").unlink()
    assert any("missing template negatives.j2" in p.message for p in errors(lint(project)))


def test_sample_contexts_are_exactly_the_contract(project):
    domains = DomainRegistry(project / "knowledge_base")
    for domain in domains.load_all():
        for name in TEMPLATE_NAMES:
            for ctx in sample_contexts(name, domain):
                assert set(ctx) == set(TEMPLATE_CONTEXT[name]), (domain.name, name)


def test_the_assembler_gives_each_template_exactly_its_documented_context(settings, embedder, monkeypatch):
    """The contract the lint checks against is the one the assembler honours (system, cot, fewshot,
    negatives, repair and completion in one ask with a retry on a base model)."""
    seen: dict[str, set[frozenset[str]]] = {}
    original = TemplateSnapshot.render

    def recording(self, name, *, for_domain=None, **context):
        seen.setdefault(name, set()).add(frozenset(context))
        return original(self, name, for_domain=for_domain, **context)

    monkeypatch.setattr(TemplateSnapshot, "render", recording)
    plan = {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
        "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "a", "ascending": True}}}]}
    llm = FakeLLM(flat_prompt=True).enqueue('{"task": "sort"}', json.dumps(plan))
    with Middleware(settings, backend=llm, embedder=embedder, token_counter=ApproxTokenCounter()) as mw:
        result = mw.ask("Columns: a, b\nsort by a, drop duplicates", domain="data_ops", switches=Switches(cot=True))
    assert result.valid and len(result.attempts) == 2
    assert set(seen) == set(TEMPLATE_NAMES)
    for name, keysets in seen.items():
        assert keysets == {frozenset(TEMPLATE_CONTEXT[name])}, name


# -- the CLI -------------------------------------------------------------------------------------------

@pytest.fixture
def cli(cli_project):
    return cli_project


def test_cli_lint_exit_codes(cli, capsys):
    code, out, _ = run(capsys, "prompts", "lint")
    assert code == 0 and "0 error(s), 0 warning(s)" in out
    draft = cli / "draft"
    shutil.copytree(cli / "prompts", draft)
    write(draft / "fewshot.j2", "{{ question }}\n{{ questoin }}")
    code, out, err = run(capsys, "prompts", "lint", "draft")
    assert code == 1 and "1 error(s)" in out
    assert f"{Path('draft') / 'fewshot.j2'}:2: error: unknown variable 'questoin'" in " ".join(err.split())
    write(draft / "fewshot.j2", "{{ question }}")
    write(draft / "unused.j2", "hello")
    code, out, _ = run(capsys, "prompts", "lint", "draft")
    assert code == 0 and "1 warning(s)" in out
    code, _, _ = run(capsys, "prompts", "lint", "draft", "--strict")
    assert code == 1
    code, _, err = run(capsys, "prompts", "lint", "nowhere")
    assert code == 1 and "does not exist" in err


def test_lint_of_a_snapshot_without_domains_still_checks_the_contract(project):
    write(project / "prompts" / "fewshot.j2", "{{ query }}")
    snapshot = TemplateSnapshot.load(project / "prompts")
    [problem] = lint_snapshot(snapshot, None)
    assert "unknown variable 'query'" in problem.message


def test_a_domains_ab_variant_template_set_is_linted_for_that_domain(cli, capsys):
    variant = cli / "knowledge_base" / "shop_query" / "prompts_terse"
    shutil.copytree(cli / "prompts", variant)
    spec = cli / "knowledge_base" / "shop_query" / "domain.yaml"
    spec.write_text(spec.read_text() + "variants:\n  - name: control\n  - name: terse\n    prompts: prompts_terse\n")
    code, out, _ = run(capsys, "prompts", "lint")
    assert code == 0 and "0 error(s), 0 warning(s)" in out
    write(variant / "negatives.j2", "{% for n in negatives %}{{ n.wrong.size }}{% endfor %}")
    code, out, err = run(capsys, "prompts", "lint")
    assert code == 1 and "1 error(s)" in out
    expected = f"{variant / 'negatives.j2'}:1: error: rendering for shop_query with a curated example"
    assert expected in " ".join(err.split())
    code, out, _ = run(capsys, "prompts", "list", "--json")
    [listed] = json.loads(out)["variants"]
    assert listed["domain"] == "shop_query" and listed["variant"] == "terse"
    assert listed["version"] == TemplateSnapshot.load(variant).version
