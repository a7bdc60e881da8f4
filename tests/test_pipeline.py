"""The orchestrator: retries with errors, escalation, transport retries, recording, learning, guards."""

from __future__ import annotations

import copy
import json

import pytest

from rag_middleware import (
    AttemptsExhaustedError,
    Middleware,
    RequestError,
    Switches,
    TemplateError,
    UnknownDomainError,
)
from rag_middleware.llm.base import Completion
from rag_middleware.errors import DataDirError, TransportError, UpstreamUnavailableError
from rag_middleware.records import MemoryFilter
from rag_middleware.llm.tokens import ApproxTokenCounter

Q = "Columns: price, qty\nsort by price, cheapest first"
GOOD = {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "price", "ascending": True}}}]}
# an unknown column no rule can repair
WRONG_COLUMN = {**GOOD, "operations": [{"type": "sort", "execution_instructions": {
    "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "cost", "ascending": True}}}]}
WRONG_TASK = {**GOOD, "task": "clean"}


def test_valid_first_try_is_recorded_and_learned(mw, fake_llm):
    fake_llm.enqueue(json.dumps(GOOD))
    result = mw.ask(Q, domain="data_ops")
    assert result.valid and result.first_try_valid
    assert result.output == GOOD
    assert result.selected, "curated examples should have been selected"
    assert len(result.template_version) == 12
    stored = mw.journal.get(result.interaction_id)
    assert stored is not None and stored.status == "validated" and stored.output == GOOD
    assert stored.attempts[0].raw_output == json.dumps(GOOD)
    assert stored.attempts[0].messages == fake_llm.requests[0].messages
    mem = mw.store.get([result.interaction_id])
    assert mem and mem[0].status == "validated" and json.loads(mem[0].answer) == GOOD


def test_bad_json_twice_then_valid_sends_errors_and_never_repeats(mw, fake_llm):
    fake_llm.enqueue("I think the answer is {\"task\": ", json.dumps(WRONG_COLUMN), json.dumps(GOOD))
    result = mw.ask(Q, domain="data_ops")
    assert result.valid and len(result.attempts) == 3
    assert result.attempts[0].errors and result.attempts[1].errors and not result.attempts[2].errors
    second, third = fake_llm.requests[1], fake_llm.requests[2]
    repair = second.messages[-1]
    assert repair["role"] == "user" and "incomplete" in repair["content"]
    assert "operations.0: unknown column cost; use one of price, qty" in third.messages[-1]["content"]
    # the repair turn replaces the previous one: one rejected answer and one repair turn at most
    assert sum(1 for m in third.messages if m.get("kind") == "repair") == 1
    keys = {json.dumps([r.messages, r.prompt, r.options], sort_keys=True) for r in fake_llm.requests}
    assert len(keys) == 3
    # attempt 3 escalates: more examples than attempt 1
    n_examples = [sum(1 for m in r.messages if m.get("kind") == "example") for r in fake_llm.requests]
    assert n_examples[2] > n_examples[0]
    assert result.prompt_tokens == 300  # usage summed across attempts (FakeLLM reports 100 each)


def test_exhausted_raises_with_every_attempt_and_records_failure(mw, fake_llm):
    fake_llm.default = "nope"
    with pytest.raises(AttemptsExhaustedError) as info:
        mw.ask(Q, domain="data_ops")
    exc = info.value
    assert len(exc.attempts) == 3 and all(a.errors for a in exc.attempts)
    assert "no valid answer after 3 attempt(s)" in str(exc)
    stored = mw.journal.get(exc.result.interaction_id)
    assert stored.status == "failed" and len(stored.attempts) == 3
    assert mw.store.count(MemoryFilter(domain="data_ops")) == 0  # failures never become examples


def test_raise_on_invalid_false_returns_the_invalid_result(mw, fake_llm):
    fake_llm.default = json.dumps(WRONG_COLUMN)
    result = mw.ask(Q, domain="data_ops", raise_on_invalid=False, max_attempts=2)
    assert not result.valid and result.status == "failed" and len(result.attempts) == 2
    assert any("unknown column cost" in e for e in result.attempts[-1].errors)


def test_declared_derived_fields_are_filled_and_recorded(mw, fake_llm):
    """task is derived from the operations (domain.yaml): the core fills it, with or without the domain's
    Python repair hook, and the grammar never asks for it."""
    fake_llm.enqueue(json.dumps(WRONG_TASK))
    result = mw.ask(Q, domain="data_ops")
    assert result.valid and result.first_try_valid and result.output["task"] == "sort"
    assert result.attempts[0].repairs == [f'/task: "{WRONG_TASK["task"]}" -> "sort" (derived from /operations/*/type)']
    assert "task" not in fake_llm.requests[-1].json_schema["properties"]
    fake_llm.enqueue(json.dumps(WRONG_TASK))
    no_hook = mw.ask(Q, domain="data_ops", switches=Switches(repair=False))
    assert no_hook.first_try_valid and no_hook.output["task"] == "sort"
    fake_llm.enqueue(json.dumps(GOOD))
    mw.ask(Q, domain="data_ops", switches=Switches(derive=False))  # off: the model is asked for it
    assert "task" in fake_llm.requests[-1].json_schema["properties"]


def test_identical_request_is_never_resent(mw, fake_llm):
    # same bad output twice -> the repair turn would be identical on attempt 3 without escalation
    fake_llm.enqueue(json.dumps(WRONG_COLUMN), json.dumps(WRONG_COLUMN), json.dumps(GOOD))
    mw.ask(Q, domain="data_ops")
    keys = [json.dumps([r.messages, r.prompt, r.options], sort_keys=True) for r in fake_llm.requests]
    assert len(set(keys)) == len(keys)


def test_transport_errors_are_retried_apart_from_validation(mw, fake_llm):
    fake_llm.enqueue(TransportError("503"), TransportError("503"), json.dumps(GOOD))
    result = mw.ask(Q, domain="data_ops")
    assert result.valid and len(result.attempts) == 1
    assert result.attempts[0].transport_retries == 2


def test_unreachable_host_is_named_and_recorded(mw, fake_llm):
    fake_llm.default = UpstreamUnavailableError("http://10.0.0.1:11434")
    fake_llm.enqueue(*[UpstreamUnavailableError("http://10.0.0.1:11434")] * 3)
    with pytest.raises(UpstreamUnavailableError, match="10.0.0.1:11434"):
        mw.ask(Q, domain="data_ops")
    rows = mw.journal.list(domain="data_ops")
    assert rows and rows[0].status == "error" and "unreachable" in rows[0].error


def test_truncation_is_a_failure_and_escalates_num_predict(mw, fake_llm):
    fake_llm.enqueue(Completion(text='{"task": "sort", "chart_type"', done_reason="length", completion_tokens=320),
                     json.dumps(GOOD))
    result = mw.ask(Q, domain="data_ops")
    assert result.valid and len(result.attempts) == 2
    assert result.attempts[0].error_kind == "truncated"
    assert fake_llm.requests[1].options["num_predict"] > fake_llm.requests[0].options["num_predict"]
    assert "repeat_penalty" not in fake_llm.requests[1].options  # a plain cut-off is not a loop


def test_a_looping_cut_off_answer_is_retried_with_a_repeat_penalty(mw, fake_llm):
    loop = '{"task": "clean", "chart_type": "none", "operations": [{"type": "drop_column", "kwargs": {"columns": [' + \
        '"crop", ' * 80
    fake_llm.enqueue(Completion(text=loop, done_reason="length", completion_tokens=320), json.dumps(GOOD))
    result = mw.ask(Q, domain="data_ops")
    assert result.valid and result.attempts[0].error_kind == "truncated"
    assert "repeat_penalty" not in fake_llm.requests[0].options
    assert fake_llm.requests[1].options["repeat_penalty"] >= 1.3


def test_caller_messages_are_not_mutated(mw, fake_llm):
    messages = [{"role": "system", "content": "Be exact."}, {"role": "user", "content": Q}]
    before = copy.deepcopy(messages)
    fake_llm.enqueue("bad", json.dumps(GOOD))
    result = mw.ask(messages, domain="data_ops")
    assert result.valid and messages == before
    assert "Be exact." in fake_llm.requests[0].messages[0]["content"]


def test_unreviewed_answers_are_kept_but_teach_nothing_by_default(mw, fake_llm):
    assert mw.settings.learn == "reviewed"
    fake_llm.enqueue(json.dumps(GOOD))
    first = mw.ask(Q, domain="data_ops", tenant="acme")
    assert mw.store.get([first.interaction_id], tenant="acme")[0].status == "validated"  # kept, reviewable later
    nxt = mw.render(Q, domain="data_ops", tenant="acme")
    assert first.interaction_id not in [s.id for s in nxt.selected]
    assert all(not v.get("reviewed") for vote in nxt.votes for v in vote["voters"])
    mw.store.update(first.interaction_id, tenant="acme", status="approved")
    reviewed = mw.render(Q, domain="data_ops", tenant="acme")
    assert reviewed.selected[0].id == first.interaction_id  # a reviewed answer to the same question comes first


def test_learned_answer_is_retrieved_next_time_for_same_tenant_only(mw, fake_llm):
    mw.settings.learn = "all"  # unreviewed answers count as examples only when asked for
    fake_llm.enqueue(json.dumps(GOOD))
    first = mw.ask(Q, domain="data_ops", tenant="acme")
    nxt = mw.render(Q, domain="data_ops", tenant="acme")
    assert first.interaction_id in [s.id for s in nxt.selected]
    other = mw.render(Q, domain="data_ops", tenant="globex")
    assert first.interaction_id not in [s.id for s in other.selected]
    # the as_of guard: a replay of the first interaction does not see it, nor anything after it
    guarded = mw.render(Q, domain="data_ops", tenant="acme", as_of=first.attempts and mw.journal.get(
        first.interaction_id).created_at)
    assert first.interaction_id not in [s.id for s in guarded.selected]
    excluded = mw.render(Q, domain="data_ops", tenant="acme", exclude_ids=frozenset({first.interaction_id}))
    assert first.interaction_id not in [s.id for s in excluded.selected]


def test_learn_off_keeps_memory_unchanged(mw, fake_llm):
    fake_llm.enqueue(json.dumps(GOOD))
    mw.ask(Q, domain="data_ops", learn=False)
    assert mw.store.count() == 0


def test_switches_turn_parts_off(mw):
    plain = mw.render(Q, domain="data_ops", switches=Switches(examples=False, negatives=False, cot=False))
    assert plain.selected == [] and plain.negatives == []
    assert not any(m.get("kind") == "example" for m in plain.messages)
    cot = mw.render(Q, domain="data_ops", switches=Switches(cot=True))
    assert "Before answering" in cot.messages[0]["content"]


def test_free_text_domain_skips_validation(mw, fake_llm):
    fake_llm.enqueue("The median is the middle value.")
    result = mw.ask("What is a median?", domain="assistant")
    assert result.valid and result.output == "The median is the middle value."
    assert fake_llm.requests[0].json_schema is None
    assert mw.store.get([result.interaction_id])[0].status == "pending"  # unreviewed text is not an example


def test_bad_input_errors(mw, settings, tmp_path):
    known = "known domains: assistant, claims_intake, data_ops, listing_search, shop_query"
    with pytest.raises(UnknownDomainError, match=known):
        mw.ask("hi", domain="nope")
    with pytest.raises(RequestError, match="empty"):
        mw.ask("   ", domain="data_ops")
    with pytest.raises(RequestError):
        mw.ask([{"role": "assistant", "content": "x"}], domain="data_ops")
    with pytest.raises(RequestError, match="tenant"):
        mw.ask(Q, domain="data_ops", tenant="bad tenant!")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(DataDirError, match="a-file"):
        Middleware(settings.model_copy(update={"data_dir": blocker / "data"}), backend=mw.backend,
                   embedder=mw.embedder.inner, token_counter=ApproxTokenCounter())


def test_broken_template_names_file_and_line(mw, project, fake_llm):
    (project / "prompts" / "system.j2").write_text("line one\n{{ domain.description }\n")
    with pytest.raises(TemplateError, match=r"system\.j2:2"):
        mw.ask(Q, domain="data_ops")
    assert fake_llm.requests == []


def test_domain_override_template_applies_to_one_domain(mw, project):
    (project / "prompts" / "assistant").mkdir()
    (project / "prompts" / "assistant" / "system.j2").write_text("OVERRIDDEN {{ domain.name }}")
    assert mw.render("hello", domain="assistant").messages[0]["content"] == "OVERRIDDEN assistant"
    assert "OVERRIDDEN" not in mw.render(Q, domain="data_ops").messages[0]["content"]


def test_budget_keeps_examples_within_num_ctx(settings, fake_llm, embedder):
    def render_with(num_ctx: int):
        cfg = settings.model_copy(update={"llm": settings.llm.model_copy(update={"num_ctx": num_ctx})})
        with Middleware(cfg, backend=fake_llm, embedder=embedder, token_counter=ApproxTokenCounter()) as m:
            return m.render(Q, domain="data_ops")

    roomy = render_with(4096)
    assert len(roomy.selected) == 6 and roomy.negatives
    fixed, reserve = roomy.budget["fixed"], roomy.budget["reserved_output"]
    two = sum(s.tokens for s in roomy.selected[:2])
    tight = render_with(fixed + reserve + two + 1)
    assert 1 <= len(tight.selected) < 6
    assert tight.budget["used_by_examples"] <= tight.budget["available_for_examples"]
    assert tight.prompt_tokens + tight.options["num_predict"] <= tight.budget["num_ctx"]
    squeezed = render_with(fixed + reserve - 1)  # too small for the negatives: they go first
    assert len(squeezed.negatives) < len(roomy.negatives)


def test_flat_prompt_for_base_models(settings, embedder):
    from tests.conftest import FakeLLM

    llm = FakeLLM(flat_prompt=True)
    llm.enqueue("garbage", json.dumps(GOOD))
    with Middleware(settings, backend=llm, embedder=embedder, token_counter=ApproxTokenCounter()) as m:
        result = m.ask(Q, domain="data_ops")
    assert result.valid
    first, second = llm.requests
    assert first.prompt.rstrip().endswith("Answer:") and Q in first.prompt
    assert "Review:" in second.prompt and second.prompt.rstrip().endswith("Corrected answer:")
    # the grammar admits only the request's columns, and of those the ones it names
    found = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict) and "by" in node["properties"]:
                found.append(node["properties"]["by"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(first.json_schema)
    assert found and all(by == {"enum": ["price"]} for by in found)  # the column the request names
