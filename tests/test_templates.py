"""TemplateSet: sandboxed strict rendering, file:line errors, per-domain overrides, content-hash versions."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from rag_middleware.errors import TemplateError
from rag_middleware.templating.engine import TEMPLATE_NAMES, TemplateSet


@pytest.fixture
def prompts(project: Path) -> Path:
    return project / "prompts"


@pytest.fixture
def ts(prompts: Path) -> TemplateSet:
    return TemplateSet(prompts)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_shipped_templates_parse_and_render(ts):
    assert ts.check() == []
    assert ts.check("data_ops") == []
    out = ts.render("repair", errors=["task: wrong"], attempt=2, max_attempts=3, previous_output="{}",
                    truncated=False, domain={"name": "d"})
    assert "1 problem:" in out and "- task: wrong" in out and "attempt 2 of 3" in out
    assert ts.render("fewshot", question="  hello  ") == "hello"


def test_json_filter_available(ts, prompts):
    write(prompts / "probe.j2", "{{ value | json }}")
    assert ts.render("probe", value={"a": "é"}) == '{"a": "é"}'


def test_undefined_variable_names_file_and_line(ts, prompts):
    write(prompts / "probe.j2", "line one\nline two\n{{ missing_var }}\n")
    with pytest.raises(TemplateError) as info:
        ts.render("probe")
    message = str(info.value)
    assert "undefined variable" in message and "missing_var" in message
    assert info.value.path == str(prompts / "probe.j2")
    assert info.value.line == 3
    assert "probe.j2:3:" in message


def test_undefined_attribute_is_an_error_too(ts, prompts):
    write(prompts / "probe.j2", "{{ domain.nope }}")
    with pytest.raises(TemplateError, match="undefined variable"):
        ts.render("probe", domain={"name": "d"})


def test_syntax_error_names_file_and_line(ts, prompts):
    write(prompts / "probe.j2", "ok\n{% if x %}\nunclosed\n")
    with pytest.raises(TemplateError) as info:
        ts.render("probe", x=True)
    assert info.value.path.endswith("probe.j2")
    assert isinstance(info.value.line, int) and info.value.line >= 2
    assert re.search(r"probe\.j2:\d+: ", str(info.value))
    write(prompts / "system.j2", "{{ oops(\n")
    problems = ts.check()
    assert len(problems) == 1 and re.search(r"system\.j2:\d+: ", problems[0])


def test_sandbox_refuses_python_internals(ts, prompts):
    write(prompts / "probe.j2", "x\n{{ ''.__class__.__mro__[1].__subclasses__() }}\n")
    with pytest.raises(TemplateError, match="sandbox") as info:
        ts.render("probe")
    assert info.value.path.endswith("probe.j2")
    assert "unsafe" in str(info.value)


def test_sandbox_refuses_function_globals(ts, prompts):
    write(prompts / "probe.j2", "{{ f.__globals__ }}")
    with pytest.raises(TemplateError, match="sandbox"):
        ts.render("probe", f=test_sandbox_refuses_function_globals)


def test_missing_template(ts):
    with pytest.raises(TemplateError, match="nothing.j2 not found"):
        ts.render("nothing")


def test_missing_prompts_dir(tmp_path):
    with pytest.raises(TemplateError, match="does not exist"):
        TemplateSet(tmp_path / "nope")


def test_domain_override_applies_to_that_domain_only(ts, prompts):
    write(prompts / "data_ops" / "fewshot.j2", "DATA OPS: {{ question }}")
    assert ts.render("fewshot", for_domain="data_ops", question="q") == "DATA OPS: q"
    assert ts.render("fewshot", for_domain="assistant", question="q") == "q"
    assert ts.render("fewshot", question="q") == "q"
    assert ts.source_path("fewshot", "data_ops") == prompts / "data_ops" / "fewshot.j2"
    assert ts.source_path("fewshot", "assistant") == prompts / "fewshot.j2"
    # templates without an override still come from the shared directory
    assert ts.source_path("repair", "data_ops") == prompts / "repair.j2"
    assert "Request: hi" in ts.render("completion", for_domain="data_ops", free_text=False, domain={},
                                      messages=[{"role": "user", "kind": "", "content": "hi"}])


def test_override_errors_name_the_override_file(ts, prompts):
    write(prompts / "data_ops" / "fewshot.j2", "{{ question }}\n{{ undefined_here }}")
    with pytest.raises(TemplateError) as info:
        ts.render("fewshot", for_domain="data_ops", question="q")
    assert info.value.path == str(prompts / "data_ops" / "fewshot.j2")
    assert info.value.line == 2
    assert ts.render("fewshot", for_domain="assistant", question="q") == "q"


def test_version_is_a_stable_content_hash(ts, prompts, tmp_path):
    v = ts.version
    assert re.fullmatch(r"[0-9a-f]{12}", v)
    assert ts.version == v
    assert TemplateSet(prompts).version == v
    copy = tmp_path / "elsewhere"
    shutil.copytree(prompts, copy)
    assert TemplateSet(copy).version == v  # content, not location or mtime
    st = (prompts / "system.j2").stat()
    os.utime(prompts / "system.j2", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched, same content
    assert ts.version == v
    assert {p.name for p in ts.files()} >= {f"{n}.j2" for n in TEMPLATE_NAMES}


def test_edit_is_picked_up_without_a_new_template_set(ts, prompts):
    before_version = ts.version
    assert ts.render("fewshot", question="q") == "q"
    write(prompts / "fewshot.j2", "EDITED {{ question }}")
    after_version = ts.version
    assert after_version != before_version
    assert re.fullmatch(r"[0-9a-f]{12}", after_version)
    assert ts.render("fewshot", question="q") == "EDITED q"
    assert ts.version == after_version


def test_adding_an_override_changes_the_version(ts, prompts):
    before = ts.version
    write(prompts / "assistant" / "system.j2", "{{ domain.description }}")
    assert ts.version != before
    (prompts / "assistant" / "system.j2").unlink()
    assert ts.version == before
