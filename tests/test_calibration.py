"""Label calibration (request/calibration.py): the model's lean towards a label, divided out.

A scripted model whose next-token probabilities lean to "auto" whatever the request says (the content-free
prompt gets them too) forces the decision; the real path is the embedded Gemma through llama.cpp.
"""

from __future__ import annotations

import json
import math
import time

import pytest
from conftest import FakeLLM, fake_middleware
from ollama_fake import FakeOllama

from rag_middleware.domains.glosses import GlossRule, label_kinds
from rag_middleware.llm.base import GenerateRequest
from rag_middleware.llm.ollama import OllamaBackend
from rag_middleware.request.ask import Switches
from rag_middleware.request.calibration import (
    CONTENT_FREE,
    calibrate,
    calibrated,
    eligible_fields,
    label_probabilities,
    vote_prior,
)

QUESTION = "I knocked over a vase in a shop and the owner wants 1,200 from me. Policy POL-412290."
FIRST = {"claim_type": "auto", "severity": "medium", "channel": "email", "injury_reported": False,
         "policy_number": "POL-412290", "amount_claimed": 1200}
LEAN = [("auto", math.log(0.70)), ("liability", math.log(0.10)), ("home", math.log(0.05)), ("x", math.log(0.01))]
READ = [("auto", math.log(0.55)), ("liability", math.log(0.30)), ("home", math.log(0.05)), ("x", math.log(0.01))]


class ProbedLLM(FakeLLM):
    """The scripted model, with next-token probabilities for the claim_type position: the request's lift
    "liability" three-fold over the content-free prompt's; other positions give none."""

    def __init__(self) -> None:
        super().__init__()
        self.probes: list[GenerateRequest] = []

    def next_tokens(self, request: GenerateRequest, top: int) -> list[tuple[str, float]] | None:
        self.probes.append(request)
        head = request.messages[-1]["content"]
        if not head.endswith('"claim_type": "'):
            return None
        return LEAN if CONTENT_FREE in request.messages[-2]["content"] else READ


def _ask(mw, **switches):
    return mw.ask(QUESTION, domain="claims_intake", switches=Switches(memory=False, vote=False, **switches))


def test_probabilities_go_to_the_one_label_each_token_begins():
    top = [("auto", math.log(0.5)), (" li", math.log(0.2)), ("h", math.log(0.2)), ("zzz", math.log(0.1))]
    found = label_probabilities(top, ["auto", "liability", "home", "health"])
    # "h" begins two labels: it counts for neither; they get half the least listed probability
    assert found["auto"] > found["liability"] > found["home"] == found["health"]
    assert sum(found.values()) == pytest.approx(1.0)
    assert label_probabilities([(" true", -0.1), (" false", -2.0)], [False, True])["true"] > 0.8
    assert label_probabilities([("zzz", -0.1)], ["auto", "home"]) is None


def test_only_the_domains_own_kinds_with_a_choice_left_are_calibrated():
    declared = {"kind": {"enum": ["auto", "home", "travel"]}, "hurt": {"type": "boolean"},
                "city": {"type": ["string", "null"]}, "grade": {"enum": ["high", "highest"]},
                "channel": {"enum": ["email", "phone"]}, "one": {"enum": ["x", "y"]}}
    grammar = {"properties": {"kind": {"enum": ["auto", "home"]}, "hurt": {"enum": [False, True]},
                              "city": {"enum": ["Paris", None]}, "grade": {"enum": ["high", "highest"]},
                              "channel": {"enum": ["email", "phone"]}, "one": {"enum": ["x"]}}}
    found = eligible_fields(grammar, declared, kinds={"kind", "hurt", "city", "grade", "one"})
    # a yes or no (hurt), grounded values (city), labels sharing a first token (grade), a field whose labels
    # are no kinds (channel) and a field the votes already decided (one) are left alone
    assert found == {"kind": ["auto", "home"]}


def test_kinds_are_fields_with_no_default_and_no_levels():
    rules = {("severity",): GlossRule(("severity",), {}, None, 0, 0, ranks=("low", "high")),
             ("channel",): GlossRule(("channel",), {}, "email", 0, 0)}
    glosses = {("claim_type",): {"auto": ["auto for the customer's own car"], "home": ["home for the house"]},
               ("severity",): {"low": ["minor damage"], "high": ["surgery"]},
               ("channel",): {"email": ["email"], "phone": ["a call"]},
               ("listing_type",): {"apartment": ["a flat; apartment when no type is named"], "house": ["villa"]},
               ("priority",): {"low": ["a question"], "urgent": ["an outage"]}}
    assert label_kinds(glosses, rules) == {("claim_type",)}


def test_a_lean_divided_out_changes_the_label_and_the_answer_is_generated_again(settings):
    llm = ProbedLLM().enqueue(json.dumps(FIRST), json.dumps({**FIRST, "claim_type": "liability"}))
    with fake_middleware(settings, llm) as mw:
        result = _ask(mw)
        assert result.output["claim_type"] == "liability" and result.output["department"] == "legal"
        assert len(result.attempts) == 1 and len(llm.requests) == 2
        regenerated = llm.requests[1].json_schema["properties"]
        assert regenerated["claim_type"]["enum"] == ["liability"]
        assert len(regenerated["severity"]["enum"]) > 1  # only the changed field is fixed
        # the content-free probe replaced the request, and both continued the answer to the field's value
        free = [p for p in llm.probes if CONTENT_FREE in p.messages[-2]["content"]]
        assert free and QUESTION not in free[0].messages[-2]["content"]
        assert all(p.messages[-1]["role"] == "assistant" and p.options["num_predict"] == 1 for p in llm.probes)
        record = result.attempts[0].calibration
        decided = next(r for r in record if r.get("path") == "/claim_type")
        assert (decided["answered"], decided["chosen"], decided["changed"]) == ("auto", "liability", True)
        assert json.loads(next(r["answer"] for r in record if "answer" in r))["claim_type"] == "auto"
        stored = mw.journal.get(result.interaction_id).attempts[0].calibration
        assert stored == record


def test_an_invalid_calibrated_answer_leaves_the_first_one(settings):
    llm = ProbedLLM().enqueue(json.dumps(FIRST), '{"claim_type": "liab')
    with fake_middleware(settings, llm) as mw:
        result = _ask(mw)
        assert result.valid and result.output["claim_type"] == "auto"
        assert any("first answer stands" in r.get("kept", "") for r in result.attempts[0].calibration)


def test_no_probe_no_switch_no_change(settings):
    plain = FakeLLM().enqueue(json.dumps(FIRST))
    with fake_middleware(settings, plain) as mw:
        assert _ask(mw).output["claim_type"] == "auto" and len(plain.requests) == 1
    probed = ProbedLLM().enqueue(json.dumps(FIRST))
    with fake_middleware(settings, probed) as mw:
        result = _ask(mw, calibrate=False)
        assert result.output["claim_type"] == "auto" and not probed.probes and not result.attempts[0].calibration


class FlatProbe:
    """A backend with a flat prompt whose probes read the request's lift ("liability" three-fold) or the lean."""

    def __init__(self) -> None:
        self.seen: list[GenerateRequest] = []

    def next_tokens(self, request: GenerateRequest, top: int) -> list[tuple[str, float]]:
        self.seen.append(request)
        return READ if QUESTION in request.prompt else LEAN


def test_a_flat_prompt_is_probed_with_the_answer_appended():
    probe = FlatProbe()
    seen = probe.seen
    request = GenerateRequest(model="m", messages=[], prompt=f"Request: {QUESTION}\nAnswer:",
                              json_schema={"properties": {"claim_type": {}, "severity": {}}}, options={"seed": 1})
    decisions = calibrate(probe, request, QUESTION, {"claim_type": "auto", "severity": "low"},
                          {"claim_type": ["auto", "liability", "home"]})
    assert [(d.field, d.chosen) for d in decisions] == [("claim_type", "liability")]
    assert seen[0].prompt.endswith('Answer:{"claim_type": "') and seen[0].json_schema is None
    assert seen[1].prompt == f"Request: {CONTENT_FREE}\nAnswer:" + '{"claim_type": "'
    # the call's deadline: each probe is given what is left of it; once it has passed, no probe starts
    seen.clear()
    soon = time.perf_counter() + 5
    assert calibrate(probe, request, QUESTION, {"claim_type": "auto", "severity": "low"},
                     {"claim_type": ["auto", "liability", "home"]}, deadline=soon)[0].chosen == "liability"
    assert seen and all(0 < p.timeout <= 5 for p in seen)
    seen.clear()
    assert calibrate(probe, request, QUESTION, {"claim_type": "auto", "severity": "low"},
                     {"claim_type": ["auto", "liability", "home"]}, deadline=time.perf_counter() - 1) == []
    assert not seen
    # a template that rewrote the request: nothing to replace, nothing calibrated
    assert calibrate(probe, request, "not in the prompt", {"claim_type": "auto", "severity": "low"},
                     {"claim_type": ["auto", "liability"]}) == []


def test_the_vote_is_the_prior_the_ratio_multiplies():
    request = GenerateRequest(model="m", messages=[], prompt=f"Request: {QUESTION}\nAnswer:",
                              json_schema={"properties": {"claim_type": {}}}, options={})
    labels = {"claim_type": ["auto", "liability", "home"]}

    def chosen(scores):
        return calibrate(FlatProbe(), request, QUESTION, {"claim_type": "auto"}, labels, {"claim_type": scores})[0]

    # the request raises liability three-fold: a vote that leans to auto only mildly does not hold it ...
    assert chosen({"auto": 0.5, "liability": 0.3, "home": 0.2}).chosen == "liability"
    # ... one that the nearest neighbours carry for auto does, and the record shows the prior
    strong = chosen({"auto": 0.8, "liability": 0.1, "home": 0.1, "travel": 0.5})
    assert strong.chosen == "auto" and strong.record()["vote"]["auto"] > 0.7
    # a label no neighbour holds keeps a small share: a strong enough lift still wins it
    prior = vote_prior({"auto": 1.0}, ["auto", "liability", "home"])
    assert prior["auto"] > 0.9 and 0 < prior["liability"] == prior["home"] < 0.05
    assert sum(prior.values()) == pytest.approx(1.0)
    # no vote on the field, or none on an admitted label: the ratio decides alone, as without neighbours
    assert vote_prior(None, ["auto", "home"]) is None and vote_prior({"pet": 1.0}, ["auto", "home"]) is None
    assert chosen({}).chosen == "liability" and "vote" not in chosen({}).record()
    # what --explain and the replay report print: both probabilities and the prior
    line = calibrated(strong.record())
    assert line.startswith("/claim_type: auto kept") and "liability 0.33/0.12" in line and "vote: auto 0.7" in line
    assert "vote" not in calibrated(chosen({}).record()) and "auto -> liability" in calibrated(chosen({}).record())


@pytest.fixture
def fake():
    with FakeOllama() as server:
        yield server


def test_ollama_probe_continues_an_assistant_turn_and_reads_the_top_tokens(fake, monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "OLLAMA_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    backend = OllamaBackend(host=fake.url, model="gemma3:270m", num_ctx=4096)
    if not backend._top_logprobs:
        pytest.skip("the installed ollama client cannot ask for top log-probabilities")
    fake.enqueue({"content": "a", "logprobs": [{"token": "a", "logprob": -0.1, "top_logprobs": [
        {"token": "auto", "logprob": -0.2}, {"token": "home", "logprob": -1.5}]}]})
    request = GenerateRequest(model="gemma3:270m", options={"num_predict": 200},
                              messages=[{"role": "user", "content": "q"},
                                        {"role": "assistant", "content": '{"claim_type": "'}])
    assert backend.next_tokens(request, 5) == [("auto", -0.2), ("home", -1.5)]
    body = fake.bodies[0]
    assert body["top_logprobs"] == 5 and body["logprobs"] is True and body["options"]["num_predict"] == 1
    assert "format" not in body and body["messages"][-1]["role"] == "assistant"
    fake.enqueue({"content": "a"})  # a server that sends none
    assert backend.next_tokens(request, 5) is None
    backend.close()


@pytest.mark.integration
def test_the_embedded_model_gives_next_token_probabilities_and_a_claim_is_calibrated(project):
    from rag_middleware import Middleware, load_settings
    from rag_middleware.llm.embedded import EmbeddedBackend

    embedded = EmbeddedBackend(model_path=None, num_ctx=4096, threads=2)
    top = embedded.next_tokens(GenerateRequest(model="g", messages=[], prompt='Answer: {"colour": "'), 10)
    assert top and len(top) == 10 and all(lp <= 0.0 for _, lp in top)
    assert [lp for _, lp in top] == sorted((lp for _, lp in top), reverse=True)
    settings = load_settings(data_dir=project / "data", knowledge_base=project / "knowledge_base",
                             prompts_dir=project / "prompts")
    with Middleware(settings, backend=embedded) as mw:
        result = mw.ask(QUESTION, domain="claims_intake", switches=Switches(memory=False, vote=False))
        record = result.attempts[-1].calibration
        decided = [r for r in record if "path" in r]
        assert decided and decided[0]["path"] == "/claim_type"
        assert sum(decided[0]["model"].values()) == pytest.approx(1.0, abs=1e-3)
        assert result.valid and result.output["claim_type"] == decided[0]["chosen"]
