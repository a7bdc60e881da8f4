"""A/B tests of template sets: declared variants are checked, assignment is sticky and weighted, the pipeline
renders with the variant's templates and records it, and the report's statistics are right."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from rag_middleware.analytics.ab import ab_report, two_proportion_p, wilson
from rag_middleware.templating.variants import VariantSpec, pick
from rag_middleware.domains import DomainRegistry
from rag_middleware.errors import DomainError, RequestError

Q = "Columns: a, b\nsort by a"
GOOD = {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "a", "ascending": True}}}]}
MARK = "VARIANT-TERSE-MARKER"


def add_variants(project: Path, block: str, *, with_dir: bool = True) -> Path:
    domain_dir = project / "knowledge_base" / "data_ops"
    if with_dir:
        shutil.copytree(project / "prompts", domain_dir / "prompts_terse")
        system = domain_dir / "prompts_terse" / "system.j2"
        system.write_text(f"{MARK}\n" + system.read_text(encoding="utf-8"), encoding="utf-8")
        repair = domain_dir / "prompts_terse" / "repair.j2"
        repair.write_text(f"{MARK} repair\n" + repair.read_text(encoding="utf-8"), encoding="utf-8")
    spec = domain_dir / "domain.yaml"
    text = spec.read_text(encoding="utf-8").rstrip("\n") + "\n"
    spec.write_text(text + block, encoding="utf-8")
    return spec


VARIANTS = """variants:
  - name: control
    weight: 1
  - name: terse
    weight: 1
    prompts: prompts_terse
"""


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def test_declared_variants_load(project):
    add_variants(project, VARIANTS)
    dom = DomainRegistry(project / "knowledge_base").get("data_ops")
    assert [(v.name, v.weight, v.prompts) for v in dom.spec.variants] == [("control", 1.0, None),
                                                                          ("terse", 1.0, "prompts_terse")]


@pytest.mark.parametrize("block,needle,message", [
    ("variants:\n  - name: a\n  - name: a\n", "- name: a", "duplicate variant name 'a'"),
    ("variants:\n  - name: a\n  - name: b\n    prompts: nowhere\n", "- name: b", "prompts directory nowhere not found"),
    ("variants:\n  - name: 'bad name!'\n", "- name:", "must match"),
    ("variants:\n  - name: a\n    weight: 0\n", "variants:", "greater than 0"),
    ("variants:\n  - name: a\n    colour: red\n", "variants:", "Extra inputs"),
])
def test_bad_variants_name_file_and_line(project, block, needle, message):
    spec = add_variants(project, block, with_dir=False)
    with pytest.raises(DomainError) as info:
        DomainRegistry(project / "knowledge_base").get("data_ops")
    assert message in str(info.value)
    lines = [i for i, line in enumerate(spec.read_text().splitlines(), start=1) if needle in line]
    assert f"{spec}:" in str(info.value) and info.value.line in lines, (str(info.value), lines)


def test_an_incomplete_template_dir_is_refused(project):
    (project / "knowledge_base" / "data_ops" / "half").mkdir()
    (project / "knowledge_base" / "data_ops" / "half" / "system.j2").write_text("hi")
    spec = add_variants(project, "variants:\n  - name: a\n  - name: half\n    prompts: half\n", with_dir=False)
    with pytest.raises(DomainError, match="missing template") as info:
        DomainRegistry(project / "knowledge_base").get("data_ops")
    assert info.value.line == line_of(spec, "- name: half")


def test_assignment_is_sticky_and_follows_the_weights():
    variants = [VariantSpec(name="a", weight=80), VariantSpec(name="b", weight=20)]
    got = Counter(pick(variants, domain="d", tenant="t", key=f"user{i}").name for i in range(4000))
    assert 0.77 < got["a"] / 4000 < 0.83
    for i in range(50):
        first = pick(variants, domain="d", tenant="t", key=f"user{i}").name
        assert all(pick(variants, domain="d", tenant="t", key=f"user{i}").name == first for _ in range(3))
    by_tenant = {pick(variants, domain="d", tenant=f"t{i}", key="same-user").name for i in range(40)}
    assert by_tenant == {"a", "b"}, "the tenant is part of the hash"


def test_pipeline_renders_with_the_variant_and_records_it(project, settings, fake_llm, embedder):
    from rag_middleware import Middleware
    from rag_middleware.llm.tokens import ApproxTokenCounter

    add_variants(project, VARIANTS)
    with Middleware(settings, backend=fake_llm, embedder=embedder, token_counter=ApproxTokenCounter()) as mw:
        fake_llm.enqueue("no json at all", json.dumps(GOOD))
        terse = mw.ask(Q, domain="data_ops", variant="terse")
        assert MARK in fake_llm.requests[0].messages[0]["content"]
        assert f"{MARK} repair" in fake_llm.requests[1].messages[-1]["content"], "the repair turn too"
        fake_llm.enqueue(json.dumps(GOOD))
        control = mw.ask(Q, domain="data_ops", variant="control")
        assert MARK not in fake_llm.requests[-1].messages[0]["content"]
        assert terse.template_version != control.template_version
        assert (terse.variant, control.variant) == ("terse", "control")
        assert mw.journal.get(terse.interaction_id).variant == "terse"
        assert mw.journal.get(control.interaction_id).variant == "control"
        with pytest.raises(RequestError, match="no variant 'nope'"):
            mw.ask(Q, domain="data_ops", variant="nope")
        # sticky per user: the same user always gets the same variant and its templates
        seen = {}
        for user in ("u1", "u2", "u3", "u4", "u5", "u6", "u1", "u2", "u3"):
            fake_llm.enqueue(json.dumps(GOOD))
            result = mw.ask(Q, domain="data_ops", user=user, tenant="acme")
            variant = mw.journal.get(result.interaction_id).variant
            assert seen.setdefault(user, variant) == variant
            assert (MARK in fake_llm.requests[-1].messages[0]["content"]) == (variant == "terse")
        assert set(seen.values()) == {"control", "terse"}
        # a domain without variants records none
        fake_llm.enqueue('{"tool": "count_documents", "collection": "orders", "field": null, "filter": {}, '
                         '"limit": null}')
        plain = mw.ask("How many orders?", domain="shop_query", user="u1")
        assert mw.journal.get(plain.interaction_id).variant == ""


def test_wilson_and_z_test_match_known_values():
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0) is None and wilson(0, 20)[0] == 0.0
    p = two_proportion_p(90, 100, 75, 100)
    stats = pytest.importorskip("scipy.stats")
    pooled = 165 / 200
    z = (0.9 - 0.75) / (pooled * (1 - pooled) * (2 / 100)) ** 0.5
    assert p == pytest.approx(2 * stats.norm.sf(z), rel=1e-9)
    assert two_proportion_p(5, 10, 5, 10) == pytest.approx(1.0)
    assert two_proportion_p(10, 10, 10, 10) is None and two_proportion_p(1, 0, 1, 1) is None


def row(variant: str, valid: bool, attempts: int = 1, feedback: str | None = None):
    return SimpleNamespace(variant=variant, valid=valid, attempts=attempts, feedback=feedback)


def test_report_says_plainly_when_there_is_not_enough_data():
    declared = [VariantSpec(name="control"), VariantSpec(name="terse")]
    report = ab_report([row("control", True), row("terse", False, 2)], domain="data_ops", declared=declared)
    assert not report["enough_data"]
    assert any(n.startswith("not enough data yet for valid_rate") for n in report["notes"])
    control, terse = report["variants"]
    assert (control["requests"], control["valid_rate"], terse["mean_attempts"]) == (1, 1.0, 2)
    assert terse["approval_rate"] is None and terse["approval_ci95"] is None
    empty = ab_report([], domain="d", declared=[])
    assert empty["variants"] == [] and "fewer than two variants" in empty["notes"][0]


def test_report_with_enough_data_finds_the_difference():
    rows = ([row("control", i < 50, feedback="approve" if i < 40 else "reject") for i in range(100)]
            + [row("terse", i < 90, attempts=1 if i < 80 else 2, feedback="approve" if i < 60 else "reject")
               for i in range(100)])
    report = ab_report(rows, domain="data_ops", declared=[VariantSpec(name="control"), VariantSpec(name="terse")])
    assert report["enough_data"] and not report["notes"]
    valid = next(c for c in report["comparisons"] if c["metric"] == "valid_rate")
    assert valid["difference"] == pytest.approx(0.4) and valid["p_value"] < 1e-6
    terse = report["variants"][1]
    assert terse["mean_attempts"] == 1.2 and terse["approval_rate"] == 0.6
    assert terse["valid_ci95"][0] < 0.9 < terse["valid_ci95"][1]


def test_render_shows_what_a_variant_or_a_user_would_be_sent(project, settings, fake_llm, embedder):
    from rag_middleware import Middleware
    from rag_middleware.llm.tokens import ApproxTokenCounter

    add_variants(project, VARIANTS)
    with Middleware(settings, backend=fake_llm, embedder=embedder, token_counter=ApproxTokenCounter()) as mw:
        assert MARK in mw.render(Q, domain="data_ops", variant="terse").messages[0]["content"]
        assert MARK not in mw.render(Q, domain="data_ops", variant="control").messages[0]["content"]
        for user in ("u1", "u2", "u3", "u4"):
            fake_llm.enqueue(json.dumps(GOOD))
            asked = mw.ask(Q, domain="data_ops", user=user, tenant="acme")
            rendered = mw.render(Q, domain="data_ops", user=user, tenant="acme")
            assert (MARK in rendered.messages[0]["content"]) == (asked.variant == "terse")
            assert rendered.template_version == asked.template_version
        assert not fake_llm.requests[4:]  # render never calls the model
