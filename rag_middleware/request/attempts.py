"""The attempt loop of one call: escalating prompts, the repair turn, validation, transport retries.

Attempt 1 sends the assembled prompt. Each later attempt carries the previous answer and its errors in a
repair turn (from ``repair.j2``), at a lower temperature, with more examples from attempt 3, and after a
cut-off answer with more room, one example fewer and, if the answer was a loop, a repeat penalty. An
identical request is never sent twice. Connection errors, timeouts and 5xx answers are retried with jittered
exponential backoff inside each attempt, all under the call's total deadline.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from .ask import Request, Switches
from .assembly import Assembler, Assembly
from .calibration import calibrate, eligible_fields, fixed
from .route import Route
from ..llm import Completion, GenerateRequest, LLMBackend, StreamChunk
from ..config import Settings
from ..domains import Domain
from ..domains.paths import parse_path
from ..errors import GenerationTimeoutError, RagMiddlewareError, TransportError
from ..records import Attempt, Interaction

__all__ = ["AttemptLoop", "Call", "InvalidAnswer", "looping", "request_key"]

MAX_ECHO_CHARS = 2000  # how much of a bad answer is shown back to the model in a repair turn


@dataclass
class Call:
    """Everything one ask/stream call carries from attempt to attempt."""

    route: Route  # the request, its tenant, domain, variant and assembler
    request: Request
    assembly: Assembly
    interaction: Interaction
    model: str
    learn: bool
    max_attempts: int
    started: float
    deadline: float
    ledger: list[Attempt] = field(default_factory=list)

    @property
    def domain(self) -> Domain:
        return self.route.domain

    @property
    def assembler(self) -> Assembler:
        return self.route.assembler

    @property
    def switches(self) -> Switches:
        return self.route.ask.switches


class InvalidAnswer(Exception):
    """One attempt's answer failed validation (internal: drives the tenacity loop)."""


LOOP_REPEAT_PENALTY = 1.3
_LOOP = re.compile(r"(.{3,60}?)\1{4,}", re.S)


def looping(text: str) -> bool:
    """Whether the end of an answer repeats one piece over and over (a small model stuck in a loop)."""
    return bool(_LOOP.search(text[-600:]))

class AttemptLoop:
    """Runs the attempts of one call against one backend."""

    def __init__(self, backend: LLMBackend, settings: Settings) -> None:
        self.backend = backend
        self.settings = settings

    def run(self, call: Call) -> Assembly:
        """Validation attempts in a tenacity loop. Each retry carries the errors and escalates."""
        current = call.assembly
        retrying = Retrying(
            stop=(stop_after_attempt(call.max_attempts)
                  | stop_after_delay(max(0.0, call.deadline - time.perf_counter()))),
            retry=retry_if_exception_type(InvalidAnswer), reraise=True,
        )
        for tenacity_attempt in retrying:
            with tenacity_attempt:
                number = tenacity_attempt.retry_state.attempt_number
                current = self._escalate(call, current, number)
                completion, attempt = self.attempt(call, current, number)
                if completion.done_reason == "length":
                    attempt.error_kind = "truncated"
                    attempt.errors = [f"(root): the answer was cut off after {completion.completion_tokens} tokens; "
                                      "answer with a shorter, complete JSON object"]
                else:
                    outcome = _validated(call, completion.text)
                    attempt.repairs = outcome.repairs
                    if outcome.ok:
                        attempt.output = outcome.value
                        self._calibrated(call, current, attempt)
                    else:
                        attempt.error_kind = "validation"
                        attempt.errors = outcome.errors
                call.ledger.append(attempt)
                if attempt.errors:
                    raise InvalidAnswer()
        return current

    def _calibrated(self, call: Call, assembly: Assembly, attempt: Attempt) -> None:
        """Label calibration (calibration.py) of a valid answer: where it changes a label, the answer is
        generated again with the changed labels fixed, and replaces this attempt's when it is valid too."""
        domain = call.domain
        if not call.switches.calibrate or assembly.json_schema is None or not isinstance(attempt.output, dict):
            return
        declared = ((domain.declarative.schema if domain.declarative is not None else None) or {}).get("properties")
        kinds = {path[0] for path in domain.label_kinds if len(path) == 1}
        fields = eligible_fields(assembly.json_schema, declared or {}, kinds)
        if not fields:
            return
        sent = GenerateRequest(model=call.model, messages=attempt.messages, prompt=attempt.prompt,
                               json_schema=assembly.json_schema, options=attempt.options,
                               keep_alive=self.settings.llm.keep_alive)
        started = time.perf_counter()
        try:
            top = {path[0]: v for v in assembly.votes if len(path := parse_path(v["path"])) == 1}
            votes = {name: v["scores"] for name, v in top.items()
                     if name in fields and v.get("scores") and not v.get("presence")}
            decisions = calibrate(self.backend, sent, call.request.question, attempt.output, fields, votes,
                                  deadline=call.deadline)
            attempt.calibration = [d.record() for d in decisions]
            if not any(d.chosen != d.answered for d in decisions):
                return
            completion = self._call(sent.model_copy(update={"json_schema": fixed(assembly.json_schema, decisions)}),
                                    call.deadline, attempt)
        except RagMiddlewareError as exc:  # the first answer stands
            attempt.calibration.append({"kept": f"calibration failed: {exc.one_line()}"})
            return
        finally:
            attempt.duration_ms += (time.perf_counter() - started) * 1000
        outcome = _validated(call, completion.text)
        if not outcome.ok or completion.done_reason == "length":
            attempt.calibration.append({"kept": "the calibrated answer was not valid: the first answer stands"})
            return
        attempt.calibration.append({"answer": attempt.raw_output})  # the first answer, as the model gave it
        attempt.raw_output, attempt.output, attempt.repairs = completion.text, outcome.value, outcome.repairs
        attempt.prompt_tokens += completion.prompt_tokens
        attempt.completion_tokens += completion.completion_tokens
        attempt.logprobs = _rounded(completion.logprobs) if completion.logprobs is not None else attempt.logprobs

    def _escalate(self, call: Call, current: Assembly, number: int) -> Assembly:
        """Progressive prompting. 1: plain. 2+: the errors in a repair turn, temperature down, and the grammar
        without the votes' clear winners and named labels. 3+: more examples. After a truncation: a larger
        num_predict and one example fewer, and a repeat penalty when the cut-off answer was a loop."""
        if number == 1:
            return current
        truncated = call.ledger[-1].error_kind == "truncated"
        opts = dict(call.route.ask.options or {})
        if truncated:
            opts["num_predict"] = min(int(current.options["num_predict"]) * 2,
                                      max(64, int(current.options["num_ctx"]) // 2))
            if looping(call.ledger[-1].raw_output):  # more room alone only lets a loop run longer
                opts["repeat_penalty"] = max(float(opts.get("repeat_penalty", 1.0)), LOOP_REPEAT_PENALTY)
        extra = 2 if number >= 3 and not truncated else 0
        # a value the grammar admitted alone (a clear winner, a named label) may be what the validation
        # refused (a rule across fields): the retry gets the grammar without those decisions
        relax = not truncated and any(v.get("decided") or v.get("mention") or v.get("gloss") is not None
                                      for v in current.votes)
        if truncated or extra or relax:
            update: dict[str, Any] = {"options": opts}
            if relax:
                update["switches"] = replace(call.route.ask.switches, decide=False)
            ask = call.route.ask.model_copy(update=update)
            current = call.assembler.prepare(call.domain, call.request, ask, extra_examples=extra,
                                             drop_examples=1 if truncated else 0)
        return current

    def build_request(self, call: Call, assembly: Assembly, number: int) -> tuple[GenerateRequest, Attempt]:
        """The request for attempt ``number``: never the caller's objects, never one already sent."""
        messages = [dict(m) for m in assembly.messages]
        options = dict(assembly.options)
        ledger = call.ledger
        if number > 1 and ledger:
            previous = ledger[-1]
            repair = call.assembler.repair_turn(call.domain, errors=previous.errors, attempt=number,
                                                max_attempts=call.max_attempts,
                                                previous_output=previous.raw_output[:MAX_ECHO_CHARS],
                                                truncated=previous.error_kind == "truncated")
            # the repair turn replaces the previous one: the conversation never grows past one repair
            messages += [{"role": "assistant", "content": previous.raw_output[:MAX_ECHO_CHARS], "kind": "rejected"},
                         {"role": "user", "content": repair, "kind": "repair"}]
            options["temperature"] = 0.0 if number == 2 else round(min(0.3 * (number - 2), 0.9), 2)
        prompt = call.assembler.flatten(call.domain, messages) if self.backend.flat_prompt else None
        sent = {request_key(a.messages, a.prompt, a.options) for a in ledger}
        while request_key(messages, prompt, options) in sent:  # never send an identical request twice
            options["seed"] = int(options.get("seed", 0)) + 1
            options["temperature"] = max(float(options.get("temperature", 0.0)), 0.3)
        request = GenerateRequest(model=call.model, messages=messages, prompt=prompt, json_schema=assembly.json_schema,
                                  options=options, keep_alive=self.settings.llm.keep_alive)
        return request, Attempt(number=number, messages=messages, prompt=prompt, options=options,
                                votes=assembly.votes, grammar_notes=assembly.grammar_notes)

    def attempt(self, call: Call, assembly: Assembly, number: int) -> tuple[Completion, Attempt]:
        request, attempt = self.build_request(call, assembly, number)
        started = time.perf_counter()
        try:
            completion = self._call(request, call.deadline, attempt)
        except RagMiddlewareError as exc:
            attempt.error_kind = "timeout" if isinstance(exc, GenerationTimeoutError) else "transport"
            attempt.errors = [exc.one_line()]
            attempt.duration_ms = (time.perf_counter() - started) * 1000
            call.ledger.append(attempt)
            raise
        _settle(attempt, completion, completion.text, started)
        return completion, attempt

    def stream(self, call: Call, request: GenerateRequest, attempt: Attempt) -> Iterator[StreamChunk]:
        """One attempt (from ``build_request``) streamed live, for free-text domains. Its record is appended to
        the ledger when the stream ends, fails or is closed early, with whatever text was produced."""
        pieces: list[str] = []
        completion: Completion | None = None
        started = time.perf_counter()
        try:
            for chunk in self.backend.stream(request):
                if chunk.done and chunk.completion is not None:
                    completion = chunk.completion
                else:
                    pieces.append(chunk.text)
                yield chunk
        except RagMiddlewareError as exc:
            attempt.error_kind, attempt.errors = "transport", [exc.one_line()]
            raise
        finally:
            _settle(attempt, completion, "".join(pieces), started)
            call.ledger.append(attempt)

    def _call(self, request: GenerateRequest, deadline: float, attempt: Attempt) -> Completion:
        """One model call; connection errors, timeouts and 5xx are retried with jittered exponential backoff."""
        cfg = self.settings.retry
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise GenerationTimeoutError(f"total timeout of {cfg.total_timeout:g}s reached before the call")
        retrying = Retrying(
            retry=retry_if_exception_type(TransportError),
            wait=wait_random_exponential(multiplier=cfg.backoff_initial, max=cfg.backoff_max),
            stop=stop_after_attempt(cfg.transport_attempts) | stop_after_delay(remaining),
            reraise=True,
        )
        for transport_attempt in retrying:
            with transport_attempt:
                attempt.transport_retries = transport_attempt.retry_state.attempt_number - 1
                request.timeout = max(0.1, min(cfg.request_timeout, deadline - time.perf_counter()))
                return self.backend.generate(request)
        raise AssertionError("unreachable")  # pragma: no cover


def _settle(attempt: Attempt, completion: Completion | None, text: str, started: float) -> None:
    attempt.raw_output = text
    attempt.duration_ms = (time.perf_counter() - started) * 1000
    if completion is not None:
        attempt.done_reason = completion.done_reason
        attempt.prompt_tokens = completion.prompt_tokens
        attempt.completion_tokens = completion.completion_tokens
        if completion.logprobs is not None:
            attempt.logprobs = _rounded(completion.logprobs)


def _rounded(logprobs: list[tuple[str, float]]) -> list[tuple[str, float]]:
    return [(token, round(lp, 4)) for token, lp in logprobs]


def _validated(call: Call, text: str) -> Any:
    """The domain's validation of an answer's text (with its deterministic repair and hardening)."""
    return call.domain.validator.validate_text(text, call.request.question,
                                               repair=call.switches.repair and call.switches.hooks,
                                               pre=call.domain.post(call.switches, call.request.question))


def request_key(messages: list[dict[str, Any]], prompt: str | None, options: dict[str, Any]) -> str:
    blob = json.dumps([messages, prompt, options], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
