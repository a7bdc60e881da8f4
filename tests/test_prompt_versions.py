"""Template versions and labels: one version definition, immutable snapshots under the data dir, every
record's version stored, promote (prefixes, history, lint gate), diff across versions, --template-set LABEL."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import FakeLLM, run_cli, use_cli_backend

from rag_middleware import Middleware
from rag_middleware.errors import ConfigError, TemplateError
from rag_middleware.templating.versions import TemplateStore, resolve_template_dir
from rag_middleware.templating.engine import TemplateSet, TemplateSnapshot, read_templates, version_of
from rag_middleware.llm.tokens import ApproxTokenCounter

PLAN = {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "a", "ascending": True}}}]}


@pytest.fixture
def store(settings) -> TemplateStore:
    return TemplateStore.from_settings(settings)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def test_one_version_definition(project):
    prompts = project / "prompts"
    files = read_templates(prompts)
    assert TemplateSet(prompts).version == TemplateSnapshot.load(prompts).version == version_of(files)
    assert re.fullmatch(r"[0-9a-f]{12}", version_of(files))
    assert version_of({"a.j2": "x", "d/b.j2": "y"}) == version_of({"d/b.j2": "y", "a.j2": "x"})
    assert version_of({"a.j2": "x"}) != version_of({"b.j2": "x"}) != version_of({"a.j2": "y"})


def test_save_is_idempotent_and_a_version_dir_hashes_to_its_name(store, project):
    snap = store.save_dir(project / "prompts")
    assert store.save(snap) == snap.version
    [stored] = store.versions()
    assert stored.version == snap.version and stored.files == len(snap.files) and stored.labels == []
    assert version_of(read_templates(store.path(snap.version))) == snap.version
    assert store.load(snap.version[:6]).files == snap.files
    leftovers = [p.name for p in store.root.iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []


def test_a_stored_version_that_was_edited_is_refused(store, project):
    snap = store.save_dir(project / "prompts")
    (store.path(snap.version) / "repair.j2").write_text("tampered {{ errors }}")
    with pytest.raises(TemplateError, match="modified after it was stored"):
        store.load(snap.version)


def test_resolve_labels_prefixes_and_errors(store, project, settings):
    snap = store.save_dir(project / "prompts")
    with pytest.raises(TemplateError, match="no stored template version"):
        store.resolve("ffff")
    with pytest.raises(TemplateError, match="no template label 'production'"):
        store.resolve("production")
    with sqlite3.connect(settings.db_path) as conn:  # two versions sharing a prefix
        conn.executemany("INSERT INTO template_versions (version, created_at, files) VALUES (?, '2026', 0)",
                         [("abcd00000001",), ("abcd00000002",)])
    conn.close()
    with pytest.raises(TemplateError, match="ambiguous: abcd00000001, abcd00000002"):
        store.resolve("abcd")
    assert store.resolve("abcd00000002") == "abcd00000002"
    assert store.resolve(snap.version[:4]) == snap.version


def test_promote_moves_a_label_and_keeps_history(store, project):
    v1 = store.save_dir(project / "prompts").version
    edit(project / "prompts" / "repair.j2", "Write the whole answer again", "Answer again")
    v2 = store.save_dir(project / "prompts").version
    assert v1 != v2
    assert store.promote("production", v1[:5]) == (None, v1)
    assert store.promote("candidate", v2, note="terser repair") == (None, v2)
    assert store.promote("production", "candidate") == (v1, v2)  # a label names its version
    assert store.resolve("production") == v2
    assert {k: v for k, (v, _) in store.labels().items()} == {"candidate": v2, "production": v2}
    assert [(e.label, e.previous, e.version) for e in store.history("production")] == [
        ("production", None, v1), ("production", v1, v2)]
    assert store.history("candidate")[0].note == "terser repair"
    by_version = {v.version: v.labels for v in store.versions()}
    assert by_version == {v1: [], v2: ["candidate", "production"]}
    with pytest.raises(ConfigError, match="must match"):
        store.promote("bad label", v1)
    with pytest.raises(ConfigError, match="looks like a version"):
        store.promote("abcdef012345", v1)
    with pytest.raises(TemplateError):
        store.promote("production", "0000")


def test_every_record_names_a_stored_version(settings, embedder, store):
    llm = FakeLLM(default=json.dumps(PLAN))
    with Middleware(settings, backend=llm, embedder=embedder, token_counter=ApproxTokenCounter()) as mw:
        first = mw.ask("Columns: a, b\nsort by a", domain="data_ops")
        edit(settings.prompts_dir / "system.j2", "Answer with one JSON object", "Reply with one JSON object")
        second = mw.ask("Columns: a, b\nsort by a", domain="data_ops")
        records = [mw.journal.get(r.interaction_id) for r in (first, second)]
    assert first.template_version != second.template_version
    stored = {v.version for v in store.versions()}
    for record in records:
        assert record.template_version in stored
        snap = store.load(record.template_version)
        system = record.attempts[0].messages[0]["content"]
        assert ("Reply with" in system) == ("Reply with" in snap.files["system.j2"])


def test_a_request_renders_from_one_version_even_when_files_change_mid_request(settings, embedder):
    """The assembly and the repair turn of one ask come from the version recorded, even if repair.j2 is
    edited between the attempts."""
    repair = settings.prompts_dir / "repair.j2"

    class EditingLLM(FakeLLM):
        def generate(self, request):
            if not self.requests:  # after the first attempt is assembled, edit the repair prompt
                edit(repair, "Write the whole answer again", "EDITED MID-REQUEST")
            return super().generate(request)

    llm = EditingLLM().enqueue('{"task": "sort"}', json.dumps(PLAN), json.dumps(PLAN))
    with Middleware(settings, backend=llm, embedder=embedder, token_counter=ApproxTokenCounter()) as mw:
        result = mw.ask("Columns: a, b\nsort by a", domain="data_ops")
        assert "EDITED MID-REQUEST" not in llm.requests[1].messages[-1]["content"]
        assert "Write the whole answer again" in llm.requests[1].messages[-1]["content"]
        later = mw.ask("Columns: a, b\nsort by a", domain="data_ops")  # the next request sees the edit
    assert result.valid and later.template_version != result.template_version


def test_resolve_template_dir(settings, store, project):
    assert resolve_template_dir(settings, project / "prompts") == project / "prompts"
    v = store.save_dir(project / "prompts").version
    store.promote("production", v)
    assert resolve_template_dir(settings, "production") == store.path(v)
    with pytest.raises(ConfigError, match="neither a directory nor a stored label"):
        resolve_template_dir(settings, "staging")
    with pytest.raises(ConfigError, match="is not a directory"):
        resolve_template_dir(settings, "./missing/dir")


# -- the CLI -------------------------------------------------------------------------------------------

@pytest.fixture
def cli(cli_project, monkeypatch):
    use_cli_backend(monkeypatch, lambda: FakeLLM(default=json.dumps(PLAN)))
    return cli_project


def run(capsys, *argv: str) -> tuple[int, str, str]:
    return run_cli(capsys, "--data-dir", "data", *argv)


def flat(text: str) -> str:
    return " ".join(text.split())


def test_cli_promote_list_show_diff_across_versions(cli, capsys):
    code, out, _ = run(capsys, "prompts", "promote", "production", "prompts", "--note", "first")
    assert code == 0
    v1 = re.search(r"production: \(new\) → ([0-9a-f]{12})", out).group(1)
    draft = cli / "drafts" / "terse"
    shutil.copytree(cli / "prompts", draft)
    edit(draft / "repair.j2", "Write the whole answer again as one complete JSON object",
         "Answer again with one JSON object")
    (draft / "data_ops").mkdir()
    (draft / "data_ops" / "fewshot.j2").write_text("Table request:\n{{ question }}")
    code, out, _ = run(capsys, "prompts", "promote", "candidate", "drafts/terse")
    v2 = re.search(r"candidate: \(new\) → ([0-9a-f]{12})", out).group(1)
    assert code == 0 and v2 != v1

    code, out, _ = run(capsys, "prompts", "list", "--json")
    listing = json.loads(out)
    assert listing["live"]["version"] == v1 and listing["labels"]["production"]["version"] == v1
    assert {v["version"]: v["labels"] for v in listing["versions"]} == {v1: ["production"], v2: ["candidate"]}
    code, out, _ = run(capsys, "prompts", "list")
    assert code == 0 and f"{v1} (live)" in out and "candidate" in out

    code, out, err = run(capsys, "prompts", "show", "repair", "--label", "candidate")
    assert code == 0 and "Answer again with one JSON object" in out and v2 in err
    code, out, _ = run(capsys, "prompts", "show", "fewshot", "--version", v2[:6], "--domain", "data_ops")
    assert out.startswith("Table request:")
    code, out, _ = run(capsys, "prompts", "show", "fewshot", "--label", "production", "--domain", "data_ops")
    assert out.strip() == "{{ question }}"
    code, _, err = run(capsys, "prompts", "show", "nope", "--label", "production")
    assert code == 2 and "no template nope.j2" in err

    code, out, _ = run(capsys, "prompts", "diff", "production", "candidate", "--domain", "data_ops",
                       "--request", "Columns: a, b\\nsort by a")
    assert code == 0
    assert f"production {v1} → candidate {v2}" in flat(out)
    assert "-Write the whole answer again as one complete JSON object" in out
    assert "+Answer again with one JSON object" in out
    assert "+++ candidate/data_ops/fewshot.j2" in out and "2 template file(s) differ" in out
    # the rendered messages: the request turn (and the example turns) changed, the system prompt did not
    rendered = out.split("rendered messages", 1)[1]
    assert "+Table request:" in rendered and "-Columns: a, b" not in rendered.split("+Table request:")[0][-5:]
    assert "Answer again" not in rendered  # the repair turn is not part of a first attempt

    code, out, _ = run(capsys, "prompts", "diff", "production", v1[:6], "--no-render")
    assert code == 0 and "0 template file(s) differ" in out


def test_cli_promote_refuses_a_version_with_lint_errors(cli, capsys):
    broken = cli / "broken"
    shutil.copytree(cli / "prompts", broken)
    (broken / "repair.j2").write_text("{{ error }}")
    code, _, err = run(capsys, "prompts", "promote", "production", "broken")
    assert code == 1 and "unknown variable 'error'" in err and "lint error" in err
    assert TemplateStore(cli / "data").labels() == {}
    code, out, _ = run(capsys, "prompts", "promote", "production", "broken", "--force")
    assert code == 0 and "production: (new)" in out


def test_cli_render_and_replay_take_a_label(cli, capsys):
    run(capsys, "prompts", "promote", "production", "prompts")
    draft = cli / "drafts" / "x"
    shutil.copytree(cli / "prompts", draft)
    (draft / "fewshot.j2").write_text("LABELLED {{ question }}")
    code, out, _ = run(capsys, "prompts", "promote", "candidate", "drafts/x")
    v2 = re.search(r"→ ([0-9a-f]{12})", out).group(1)
    code, out, _ = run(capsys, "prompts", "render", "--domain", "data_ops", "--request", "Columns: a\\nsort by a",
                       "--template-set", "candidate", "--json")
    body = json.loads(out)
    assert code == 0 and body["template_version"] == v2 and body["messages"][-1]["content"].startswith("LABELLED")
    items = cli / "items.jsonl"
    items.write_text(json.dumps({"id": "a", "domain": "data_ops", "expected": PLAN,
                                 "messages": [{"role": "user", "content": "Columns: a, b\nsort by a"}]}) + "\n")
    code, out, _ = run(capsys, "replay", str(items), "--out", "r1", "--template-set", "candidate")
    assert code == 0 and "valid 100.0%" in out
    assert json.loads((cli / "r1" / "summary.json").read_text())["template_version"] == v2
    code, _, err = run(capsys, "replay", str(items), "--out", "r2", "--template-set", "staging")
    assert code == 2 and "neither a directory nor a stored label" in err


def test_an_ab_variants_template_set_is_stored_and_watched_like_the_main_one(project, embedder):
    variant = project / "knowledge_base" / "data_ops" / "prompts_terse"
    shutil.copytree(project / "prompts", variant)
    (variant / "fewshot.j2").write_text("TERSE {{ question }}")
    spec = project / "knowledge_base" / "data_ops" / "domain.yaml"
    spec.write_text(spec.read_text() + "variants:\n  - name: control\n  - name: terse\n    prompts: prompts_terse\n")
    from rag_middleware import load_settings

    settings = load_settings(data_dir=project / "data", knowledge_base=project / "knowledge_base",
                             prompts_dir=project / "prompts")
    llm = FakeLLM(default=json.dumps(PLAN))
    with Middleware(settings, backend=llm, embedder=embedder, token_counter=ApproxTokenCounter()) as mw:
        result = mw.ask("Columns: a, b\nsort by a", domain="data_ops", variant="terse")
        assert llm.requests[-1].messages[-1]["content"].startswith("TERSE ")
        derived = next(iter(mw.router._variants.values())).templates
        assert derived.on_version is mw.templates.on_version and derived.root == variant.resolve()
    assert result.template_version == TemplateSnapshot.load(variant).version
    assert result.template_version in {v.version for v in TemplateStore.from_settings(settings).versions()}
