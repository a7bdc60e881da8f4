"""The attempt loop in detail (request/attempts.py): the repair turn, the temperature ladder, escalation after a
truncation and a loop, never the same request twice, transport retries and timeouts, and what each attempt
records. One middleware serves the module, so the file runs in a few seconds (it is the mutation target's
test set for attempts.py)."""

from __future__ import annotations

import json
import time

import pytest

from rag_middleware import Switches
from rag_middleware.errors import AttemptsExhaustedError, GenerationTimeoutError, TransportError
from rag_middleware.llm.base import Completion
from rag_middleware.request.attempts import LOOP_REPEAT_PENALTY, MAX_ECHO_CHARS, looping, request_key
from tests.conftest import FakeLLM, copy_project, fake_middleware, project_settings

Q = "Columns: price, qty\nsort by price, cheapest first"
PLAN = {"chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "args": [], "kwargs": {"by": "price", "ascending": True}}}]}
WRONG = {"chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "args": [], "kwargs": {"by": "cost", "ascending": True}}}]}
GOOD = json.dumps(PLAN)
BAD = json.dumps(WRONG)


class DelayLLM(FakeLLM):
    """FakeLLM that takes ``delay`` seconds per call (0 by default)."""

    delay = 0.0

    def _next(self, request):
        if self.delay:
            time.sleep(self.delay)
        return super()._next(request)


@pytest.fixture(scope="module")
def llm() -> DelayLLM:
    return DelayLLM()


@pytest.fixture(scope="module")
def mw(tmp_path_factory, llm):
    root = copy_project(tmp_path_factory.mktemp("attempts"))
    # a repair turn that does not number the attempts, so two attempts can come out identical
    (root / "prompts" / "claims_intake").mkdir(exist_ok=True)
    (root / "prompts" / "claims_intake" / "repair.j2").write_text(
        "Fix these:{% for error in errors %}\n- {{ error }}{% endfor %}\n", encoding="utf-8")
    m = fake_middleware(project_settings(root), llm)
    yield m
    m.close()


@pytest.fixture(autouse=True)
def _fresh(llm, mw):
    llm.queue.clear()
    llm.requests.clear()
    llm.default = "{}"
    llm.delay = 0.0
    yield
    mw.settings.retry = mw.settings.retry.model_copy(update={"transport_attempts": 3, "total_timeout": 300.0,
                                                             "request_timeout": 120.0})


def ask(mw, **kw):
    kw.setdefault("learn", False)
    return mw.ask(Q, domain="data_ops", **kw)


def examples(request) -> int:
    return sum(1 for m in request.messages if m.get("kind") == "example" and m["role"] == "user")


def cut(text: str, tokens: int = 320) -> Completion:
    return Completion(text=text, done_reason="length", prompt_tokens=10, completion_tokens=tokens)


# -- helpers ---------------------------------------------------------------------------------------------------


def test_looping_sees_a_repeat_at_the_end_only():
    assert looping('{"a": ' + "abc, " * 5)
    assert looping("x" * 15)  # "xxx" five times
    assert not looping("abc, " * 4)  # four times is not yet a loop
    assert not looping("ab" * 7)  # pieces are at least three characters
    assert looping("ab" * 10)  # "abab" five times
    assert not looping("abc, " * 10 + "z" * 2 + "".join(chr(65 + i % 26) + str(i) for i in range(200)))
    assert not looping('{"task": "sort", "operations": []}')


def test_request_key_is_stable_and_sensitive_to_every_part():
    messages = [{"role": "user", "content": "a"}]
    key = request_key(messages, None, {"seed": 1, "temperature": 0})
    assert key == request_key([{"content": "a", "role": "user"}], None, {"temperature": 0, "seed": 1})
    assert len(key) == 64
    assert key != request_key(messages, "p", {"seed": 1, "temperature": 0})
    assert key != request_key(messages, None, {"seed": 2, "temperature": 0})
    assert key != request_key([{"role": "user", "content": "b"}], None, {"seed": 1, "temperature": 0})


# -- the attempts ---------------------------------------------------------------------------------------------


def test_first_try_valid_sends_the_assembly_once_and_records_the_attempt(mw, llm):
    llm.enqueue(GOOD)
    result = ask(mw)
    assert result.valid and result.first_try_valid and len(llm.requests) == 1
    request, attempt = llm.requests[0], result.attempts[0]
    assert request.model == "fake-model" and request.json_schema is not None
    assert request.options["temperature"] == 0.0 and request.options["seed"] == 42
    assert request.keep_alive == mw.settings.llm.keep_alive
    assert 0.1 <= request.timeout <= 120.0
    assert [m.get("kind") for m in request.messages][-1] == "request"
    assert attempt.number == 1 and attempt.raw_output == GOOD and attempt.done_reason == "stop"
    assert attempt.prompt_tokens == 100 and attempt.completion_tokens == len(GOOD) // 4
    assert attempt.errors == [] and attempt.error_kind == "" and attempt.transport_retries == 0
    assert attempt.output["operations"][0]["type"] == "sort" and attempt.duration_ms >= 0
    assert attempt.messages == request.messages and attempt.options == request.options
    assert attempt.grammar_notes and any(n.startswith("/task") for n in attempt.grammar_notes)


def test_the_repair_turn_carries_the_answer_and_its_errors_and_the_temperature_ladder(mw, llm):
    llm.enqueue(BAD, BAD, BAD, BAD, GOOD)
    result = ask(mw, max_attempts=5)
    assert result.valid and [a.number for a in result.attempts] == [1, 2, 3, 4, 5]
    assert [a.error_kind for a in result.attempts] == ["validation"] * 4 + [""]
    assert result.attempts[0].errors == ["operations.0: unknown column cost; use one of price, qty"]
    second = llm.requests[1].messages
    assert second[-2] == {"role": "assistant", "content": BAD, "kind": "rejected"}
    assert second[-1]["role"] == "user" and second[-1]["kind"] == "repair"
    assert "operations.0: unknown column cost; use one of price, qty" in second[-1]["content"]
    assert [m.get("kind") for m in llm.requests[0].messages] == [m.get("kind") for m in second[:-2]]
    for later in llm.requests[2:]:  # one rejected answer and one repair turn, never more
        assert sum(1 for m in later.messages if m.get("kind") == "repair") == 1
        assert sum(1 for m in later.messages if m.get("kind") == "rejected") == 1
    temps = [r.options["temperature"] for r in llm.requests]
    assert temps == [0.0, 0.0, pytest.approx(0.3), pytest.approx(0.6), pytest.approx(0.9)]
    n = [examples(r) for r in llm.requests]
    assert n[1] == n[0] and n[2] == n[0] + 2 and n[3] == n[2] and n[4] == n[2]
    assert second[-1]["content"].startswith("Your answer has 1 problem:")
    assert "This is attempt 2 of 5." in second[-1]["content"]
    assert "This is attempt 5 of 5." in llm.requests[4].messages[-1]["content"]
    assert [a.repairs for a in result.attempts][-1] == [
        '/operations/0/execution_instructions/method: missing -> "pandas.DataFrame.sort_values" '
        '(derived from /operations/*/type)', '/task: missing -> "sort" (derived from /operations/*/type)']


def test_the_temperature_is_capped(mw, llm):
    llm.default = BAD
    with pytest.raises(AttemptsExhaustedError) as info:
        ask(mw, max_attempts=6)
    assert len(info.value.attempts) == 6
    assert [r.options["temperature"] for r in llm.requests][4:] == [pytest.approx(0.9), pytest.approx(0.9)]
    assert "no valid answer after 6 attempt(s)" in str(info.value)


def test_an_identical_request_gets_the_next_seed(mw, llm):
    """With a repair turn that does not number the attempts, attempts 5, 6 and 7 would be identical (same
    answer, errors, examples and temperature 0.9): the seed moves on instead, once per repeat."""
    llm.default = "{}"
    with pytest.raises(AttemptsExhaustedError):
        mw.ask("My car was hit in a parking lot, email", domain="claims_intake", max_attempts=7, learn=False)
    fifth, sixth, seventh = llm.requests[4], llm.requests[5], llm.requests[6]
    assert fifth.messages == sixth.messages == seventh.messages and fifth.json_schema == seventh.json_schema
    assert (fifth.options["seed"], sixth.options["seed"], seventh.options["seed"]) == (42, 43, 44)
    assert {k: v for k, v in seventh.options.items() if k != "seed"} == {
        k: v for k, v in fifth.options.items() if k != "seed"}
    assert fifth.options["temperature"] == seventh.options["temperature"] == 0.9
    keys = [request_key(r.messages, r.prompt, r.options) for r in llm.requests]
    assert len(set(keys)) == 7


def test_a_long_bad_answer_is_echoed_cut_to_the_limit(mw, llm):
    long_bad = '{"chart_type": "none", "operations": []' + " " * 3000 + "}"
    llm.enqueue(long_bad, GOOD)
    ask(mw)
    rejected = llm.requests[1].messages[-2]
    assert rejected["kind"] == "rejected" and rejected["content"] == long_bad[:MAX_ECHO_CHARS]


def test_a_cut_off_answer_gets_more_room_and_one_example_fewer(mw, llm):
    llm.enqueue(cut('{"chart_type": "none", "operations": [{"type"', tokens=320), GOOD)
    result = ask(mw)
    first, second = llm.requests
    assert result.valid and result.attempts[0].error_kind == "truncated"
    assert result.attempts[0].errors == ["(root): the answer was cut off after 320 tokens; answer with a shorter, "
                                         "complete JSON object"]
    assert second.options["num_predict"] == 2 * first.options["num_predict"] == 640
    assert examples(second) == examples(first) - 1
    assert "repeat_penalty" not in second.options and type(second.options["num_predict"]) is int
    repair = second.messages[-1]["content"]
    assert repair.startswith("Your answer was cut off before it was complete.") and "problem" not in repair
    assert second.messages[-2]["content"] == '{"chart_type": "none", "operations": [{"type"'


def test_a_cut_off_loop_also_gets_a_repeat_penalty_and_the_room_is_capped(mw, llm):
    loop = '{"chart_type": "none", "operations": [' + '{"type": "sort"}, ' * 30
    llm.enqueue(cut(loop), cut(loop), GOOD)
    result = ask(mw, options={"num_ctx": 1024})
    assert result.valid and len(llm.requests) == 3
    assert llm.requests[1].options["repeat_penalty"] == LOOP_REPEAT_PENALTY
    assert llm.requests[1].options["num_predict"] == 512  # min(2 * 320, 1024 // 2)
    assert llm.requests[2].options["num_predict"] == 512
    assert examples(llm.requests[2]) == examples(llm.requests[0]) - 1  # truncated again: no extra examples
    assert type(llm.requests[1].options["num_predict"]) is int


def test_the_callers_higher_repeat_penalty_is_kept(mw, llm):
    loop = '{"chart_type": "none", "operations": [' + '{"type": "sort"}, ' * 30
    llm.enqueue(cut(loop), GOOD)
    ask(mw, options={"repeat_penalty": 1.5})
    assert llm.requests[0].options["repeat_penalty"] == 1.5 and llm.requests[1].options["repeat_penalty"] == 1.5


NEAR_MISS = json.dumps({"chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
    "args": [], "kwargs": {"by": "Price", "ascending": True}}}]})


@pytest.mark.parametrize(("switches", "valid"), [
    (Switches(), True), (Switches(repair=False), False), (Switches(hooks=False), False)])
def test_the_domains_repair_runs_only_with_repair_and_hooks_on(mw, llm, switches, valid):
    llm.enqueue(NEAR_MISS)
    result = ask(mw, switches=switches, max_attempts=1, raise_on_invalid=False)
    assert result.valid is valid
    matched = "operations.0.execution_instructions: column names matched to the Columns line"
    assert (matched in result.attempts[0].repairs) is valid
    assert isinstance(result.attempts[0].repairs, list)


def test_the_core_fixes_follow_the_switches(mw, llm):
    llm.enqueue(GOOD)
    result = ask(mw, switches=Switches(derive=False), max_attempts=1, raise_on_invalid=False)
    assert not result.valid and any(e.startswith("task") for e in result.attempts[0].errors)


def test_an_identical_request_is_never_sent_twice(mw, llm):
    llm.enqueue(BAD, BAD, GOOD)
    ask(mw, max_attempts=3)
    keys = [request_key(r.messages, r.prompt, r.options) for r in llm.requests]
    assert len(set(keys)) == 3


def test_attempts_record_their_duration(mw, llm):
    llm.delay = 0.05
    llm.enqueue(GOOD)
    result = ask(mw)
    assert 45 <= result.attempts[0].duration_ms < 2000
    llm.enqueue("A median is the middle value.")
    list(mw.stream("What is a median?", domain="assistant", interaction_id="timed-stream", learn=False))
    assert 45 <= mw.journal.get("timed-stream").attempts[0].duration_ms < 2000


def test_a_base_model_gets_the_flat_prompt_with_the_repair_turn(mw):
    flat = FakeLLM(flat_prompt=True)
    flat.enqueue(BAD, GOOD)
    with fake_middleware(mw.settings, flat) as m:
        result = m.ask(Q, domain="data_ops", learn=False)
    assert result.valid and all(isinstance(r.prompt, str) for r in flat.requests)
    assert "unknown column cost" not in flat.requests[0].prompt
    assert "unknown column cost" in flat.requests[1].prompt and BAD in flat.requests[1].prompt
    assert result.attempts[1].prompt == flat.requests[1].prompt


def test_transport_errors_are_retried_inside_one_attempt(mw, llm):
    llm.enqueue(TransportError("503"), TransportError("503"), GOOD)
    result = ask(mw)
    assert result.valid and len(result.attempts) == 1 and result.attempts[0].transport_retries == 2
    assert len(llm.requests) == 3


def test_transport_errors_past_the_limit_fail_the_call_and_are_recorded(mw, llm):
    llm.enqueue(*[TransportError("503 from upstream")] * 3)
    with pytest.raises(TransportError, match="503 from upstream"):
        ask(mw)
    assert len(llm.requests) == 3
    mw.settings.retry = mw.settings.retry.model_copy(update={"transport_attempts": 1})
    llm.enqueue(TransportError("once"), GOOD)
    with pytest.raises(TransportError, match="once"):
        ask(mw, interaction_id="transport-1")
    assert len(llm.requests) == 4  # one try only
    stored = mw.journal.get("transport-1")
    assert stored.status == "error" and stored.attempts[-1].error_kind == "transport"
    assert stored.attempts[-1].transport_retries == 0 and "once" in stored.attempts[-1].errors[0]


def test_a_backend_timeout_is_recorded_as_such(mw, llm):
    llm.enqueue(GenerationTimeoutError("model took too long"))
    with pytest.raises(GenerationTimeoutError, match="took too long"):
        ask(mw, interaction_id="timeout-1")
    stored = mw.journal.get("timeout-1")
    assert stored.status == "error" and stored.attempts[-1].error_kind == "timeout"
    assert stored.attempts[-1].errors and "took too long" in stored.attempts[-1].errors[0]


def test_the_call_timeout_is_the_smaller_of_the_request_timeout_and_what_is_left(mw, llm):
    mw.settings.retry = mw.settings.retry.model_copy(update={"request_timeout": 7.0})
    llm.enqueue(GOOD)
    ask(mw)
    assert llm.requests[0].timeout == 7.0
    mw.settings.retry = mw.settings.retry.model_copy(update={"request_timeout": 0.5})
    llm.enqueue(GOOD)
    ask(mw)
    assert llm.requests[-1].timeout == 0.5
    llm.requests.clear()
    mw.settings.retry = mw.settings.retry.model_copy(update={"request_timeout": 120.0, "total_timeout": 30.0})
    llm.enqueue(GOOD)
    ask(mw)
    assert 25.0 < llm.requests[0].timeout <= 30.0
    mw.settings.retry = mw.settings.retry.model_copy(update={"total_timeout": 1.5})
    llm.enqueue(GOOD)
    assert ask(mw).valid  # well within the deadline: the call is made


def test_a_free_text_stream_is_one_recorded_attempt(mw, llm):
    llm.enqueue("A median is the middle value.")
    pieces = list(mw.stream("What is a median?", domain="assistant", interaction_id="stream-1", learn=False))
    assert "".join(p.text for p in pieces if not p.done) == "A median is the middle value."
    stored = mw.journal.get("stream-1")
    assert stored.status == "answered" and len(stored.attempts) == 1
    attempt = stored.attempts[0]
    assert attempt.raw_output == "A median is the middle value." and attempt.done_reason == "stop"
    llm.enqueue(TransportError("gone"))
    with pytest.raises(TransportError):
        list(mw.stream("What is a median?", domain="assistant", interaction_id="stream-2", learn=False))
    failed = mw.journal.get("stream-2")
    assert failed.status == "error" and failed.attempts[0].error_kind == "transport"


def test_a_retry_drops_the_votes_clear_winners_and_named_labels_from_the_grammar(mw, llm):
    """A value the grammar admitted alone may be what validation refused: the repair attempt's grammar admits
    every label again (the first attempt's decisions stay recorded on it)."""
    question = ("Hello, I filled in your web form: a pipe burst in the kitchen and flooded the floor, "
                "the plumber quotes 1,800. Policy POL-554433.")
    llm.enqueue("{}", "{}")
    with pytest.raises(AttemptsExhaustedError) as failed:
        mw.ask(question, domain="claims_intake", learn=False, max_attempts=2)
    first, second = failed.value.attempts[:2]
    channel = next(v for v in first.votes if v["path"] == "/channel")
    # named in the request (its gloss, "web form", holds the name): decided on the first attempt
    assert channel["allowed"] == ["web_form"] and (channel.get("mention") or channel.get("gloss"))
    again = next(v for v in second.votes if v["path"] == "/channel")
    assert again["allowed"] != ["web_form"] or not (again.get("mention") or again.get("gloss"))
    assert not any(v.get("mention") or v.get("decided") for v in second.votes)  # the retry: the votes alone
    assert llm.requests[0].json_schema != llm.requests[1].json_schema
