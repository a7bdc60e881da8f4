"""Reviewed answers teach the domain (request/taught.py): a tenant's approved answers join what its copy of the
domain learns (cue words, prototypes, judgement), unreviewed or invalid ones never do, other tenants never see
them, and a request that holds answers out runs on the curated domain."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rag_middleware.domains.votes import labels_at
from rag_middleware.errors import StoreError
from rag_middleware.records import MemoryRecord
from rag_middleware.request.ask import AskRequest
from rag_middleware.request.taught import teachable

DOMAIN = "claims_intake"


@pytest.fixture(autouse=True)
def _wait_for_the_copy(mw):
    mw.settings.selection.teach_wait = 120.0  # every request waits for the background build: deterministic
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _answer(claim_type: str, **extra) -> dict:
    department = {"auto": "motor_claims", "home": "property_claims", "travel": "travel_desk",
                  "health": "medical_claims", "pet": "medical_claims", "liability": "legal"}[claim_type]
    return {"claim_type": claim_type, "severity": "low", "channel": "email", "injury_reported": False,
            "department": department, "policy_number": None, "amount_claimed": None, **extra}


# a word none of the curated examples uses, in reviewed answers that all carry one claim type
ZORBLAX = [
    ("zr1", "My zorblax was stolen from the hotel in Lisbon during our holiday."),
    ("zr2", "The airline lost the zorblax I packed for the conference trip to Oslo."),
    ("zr3", "A zorblax broke in my suitcase on the flight back from Rome."),
    ("zr4", "Our tour guide dropped my zorblax into the sea on the cruise."),
]


def _review(mw, items, *, tenant="t1", status="approved", claim_type="travel", answer=None, age=0):
    records = [MemoryRecord(id=rid, tenant=tenant, domain=DOMAIN, kind="interaction", status=status,
                            source="import", question=q, created_at=T0 + timedelta(minutes=age + i),
                            answer=answer if answer is not None else json.dumps(_answer(claim_type)))
               for i, (rid, q) in enumerate(items)]
    mw.store.upsert(records, mw.embedder.encode([q for _, q in items]))


def _domain(mw, tenant="t1", **fields):
    return mw.router.route(AskRequest.of("My zorblax broke.", domain=DOMAIN, tenant=tenant, **fields)).domain


def test_reviewed_answers_teach_the_tenants_domain_its_cue_words_and_judgement(mw):
    base = mw.domains.get(DOMAIN)
    assert not any("zorblax" in cues for cues in base.cues.values())
    _review(mw, ZORBLAX)
    taught = _domain(mw)
    assert taught is not base and [e.id for e in taught.learnt] == ["zr1", "zr2", "zr3", "zr4"]
    assert taught.examples == base.examples  # they teach; the prompt's curated examples stay the same
    assert taught.cues[("claim_type",)]["zorblax"][0] == "travel"
    # the vote judgement and the prototypes learn from them too: the judged examples include them
    curated_only = mw.assembler.vote_reliability(base)
    with_reviewed = mw.assembler.vote_reliability(taught)
    assert curated_only and with_reviewed
    proto = mw.assembler.retriever.vote_prototypes(taught)
    assert proto.weights[("claim_type",)]["travel"] == pytest.approx(
        mw.assembler.retriever.vote_prototypes(base).weights[("claim_type",)]["travel"] + 4)
    # and the answer says how many it learnt from
    assert mw.render("My zorblax broke on the train in Spain.", domain=DOMAIN, tenant="t1").taught == 4


def test_other_tenants_unreviewed_and_invalid_answers_teach_nothing(mw):
    base = mw.domains.get(DOMAIN)
    _review(mw, ZORBLAX, tenant="other")
    _review(mw, [("u1", ZORBLAX[0][1]), ("u2", ZORBLAX[1][1])], status="validated")
    _review(mw, [("bad", ZORBLAX[2][1])], answer=json.dumps({"claim_type": "spaceship"}))
    _review(mw, [("text", ZORBLAX[3][1])], answer="not json")
    assert _domain(mw) is base
    assert [e.id for e in _domain(mw, "other").learnt] == ["zr1", "zr2", "zr3", "zr4"]


def test_an_answer_that_disagrees_with_a_derived_field_teaches_nothing(mw):
    domain = mw.domains.get(DOMAIN)
    wrong = _answer("travel", department="legal")  # department follows claim_type by the domain's map
    records = [MemoryRecord(id=i, tenant="t1", domain=DOMAIN, kind="interaction", status="approved",
                            source="import", question=q, answer=json.dumps(a))
               for i, q, a in (("right", "Lost bag in Oslo.", _answer("travel")), ("wrong", "Lost bag.", wrong))]
    assert [e.id for e in teachable(domain, records)] == ["right"]
    assert labels_at(teachable(domain, records)[0].answer, ("department",), False) == ["travel_desk"]


def test_held_out_answers_and_earlier_states_run_on_the_curated_domain(mw):
    base = mw.domains.get(DOMAIN)
    _review(mw, ZORBLAX)
    assert _domain(mw) is not base
    assert _domain(mw, exclude_ids=frozenset({"zr2"})) is base  # a held-out answer never scores itself
    assert _domain(mw, exclude_ids=frozenset({"unrelated"})) is not base
    assert _domain(mw, as_of=T0 + timedelta(days=30)) is base
    mw.settings.selection.teach_max = 0
    mw.router.taught._entries.clear()
    assert _domain(mw) is base


def test_the_copy_is_rebuilt_only_when_the_reviewed_answers_change(mw):
    mw.settings.selection.teach_refresh = 0.0
    _review(mw, ZORBLAX[:2])
    first = _domain(mw)
    assert _domain(mw) is first  # nothing changed: the same copy, not a reload
    _review(mw, ZORBLAX[2:], age=10)
    second = _domain(mw)
    assert second is not first and len(second.learnt) == 4
    mw.store.update("zr4", tenant="t1", answer=json.dumps(_answer("home")))  # a reviewer edits one
    third = _domain(mw)
    assert third is not second and third.learnt[-1].answer["claim_type"] == "home"


def test_the_newest_teach_max_answers_teach(mw):
    mw.settings.selection.teach_max = 2
    _review(mw, ZORBLAX)
    assert sorted(e.id for e in _domain(mw).learnt) == ["zr3", "zr4"]


def test_a_request_does_not_wait_longer_than_teach_wait_for_a_slow_build(mw, monkeypatch):
    import threading
    import time

    release = threading.Event()
    real = mw.domains.taught

    def slow(*args, **kwargs):
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(mw.domains, "taught", slow)
    mw.settings.selection.teach_wait = 0.2
    base = mw.domains.get(DOMAIN)
    _review(mw, ZORBLAX)
    started = time.monotonic()
    assert _domain(mw) is base  # the copy is still being built: the request runs on what the domain knew
    assert time.monotonic() - started < 5
    release.set()
    mw.settings.selection.teach_wait = 120.0
    mw.settings.selection.teach_refresh = 0.0
    assert len(_domain(mw).learnt) == 4


def test_an_unreachable_store_leaves_the_curated_domain_and_requests_go_on(mw, monkeypatch, caplog):
    def down(*a, **k):
        raise StoreError("store down")

    monkeypatch.setattr(mw.store, "list", down)
    assert _domain(mw) is mw.domains.get(DOMAIN)
    assert "learns from its curated examples only" in caplog.text


def test_a_taught_domain_answers_end_to_end(mw, fake_llm):
    _review(mw, ZORBLAX)
    fake_llm.enqueue(json.dumps(_answer("travel")))
    result = mw.ask("My zorblax was lost at the airport in Madrid.", domain=DOMAIN, tenant="t1")
    assert result.valid and result.taught == 4
    record = mw.journal.get(result.interaction_id)
    assert record.taught == 4
