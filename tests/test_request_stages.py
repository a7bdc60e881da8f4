"""Each stage of the request path alone: router, retriever, selector, prompt builder, grammar builder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag_middleware.domains.votes import Neighbour
from rag_middleware.errors import RequestError, StoreError, UnknownDomainError
from rag_middleware.records import MemoryRecord
from rag_middleware.request.ask import AskRequest, Request, Switches
from rag_middleware.request.retriever import Retrieved
from rag_middleware.request.selection import Candidate
from rag_middleware.request.selector import Selector, voters

CLAIM = "My car was hit from behind at a red light, the garage quoted $2,300. Policy POL-384120."


def _vec(*hot: int, dim: int = 8) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    v[list(hot)] = 1.0
    return v / np.linalg.norm(v)


def _cand(cid: str, vector: np.ndarray, *, source: str = "curated", status: str = "curated",
          value: dict | None = None) -> Candidate:
    answer = json.dumps(value or {"x": cid})
    return Candidate(id=cid, source=source, kind="example" if source == "curated" else "interaction",
                     status=status, question=f"question {cid}", answer=answer, vector=vector,
                     similarity=0.0, extra={"value": value or {"x": cid}, "full": answer + " (full)"})


# -- AskRequest and the router ---------------------------------------------------------------------

def test_ask_request_refuses_a_misspelt_keyword():
    with pytest.raises(TypeError, match="tenantt"):
        AskRequest.of("q", domain="claims_intake", tenantt="a")
    ask = AskRequest.of("q", domain="claims_intake", tenant="a")
    assert AskRequest.of(ask) is ask and AskRequest.of(ask, tenant="b").tenant == "b"


def test_the_router_resolves_tenant_domain_and_variant_in_one_place(mw):
    route = mw.router.route(AskRequest.of(CLAIM, domain="claims_intake"))
    assert route.tenant == mw.settings.default_tenant and route.domain.name == "claims_intake"
    assert route.variant is None and route.assembler is mw.assembler
    with pytest.raises(RequestError, match="tenant"):
        mw.router.route(AskRequest.of(CLAIM, domain="claims_intake", tenant="bad tenant!"))
    with pytest.raises(UnknownDomainError):
        mw.router.route(AskRequest.of(CLAIM, domain="no_such_domain"))


# -- retriever -------------------------------------------------------------------------------------

def test_the_retriever_embeds_curated_examples_once_and_the_request_with_its_clauses_in_one_pass(mw, embedder):
    domain = mw.domains.get("claims_intake")
    retriever = mw.assembler.retriever
    params = mw.assembler.selection_params(domain)
    ask = AskRequest.of(CLAIM, domain=domain.name, tenant="t1")
    first = retriever.retrieve(domain, ask, CLAIM, params=params, clauses=["clause one", "clause two"])
    calls = embedder.calls
    texts = embedder.texts_encoded
    second = retriever.retrieve(domain, ask, CLAIM + " Thanks.", params=params, clauses=[])
    assert (embedder.calls, embedder.texts_encoded) == (calls + 1, texts + 1)  # the curated vectors are cached
    assert len(first.curated_examples) == len(domain.examples) == len(second.curated_examples)
    assert set(first.clause_vectors) == {"clause one", "clause two"} and second.clause_vectors == {}


def _remember(mw, rid: str, status: str, tenant: str = "t1") -> None:
    record = MemoryRecord(id=rid, tenant=tenant, domain="claims_intake", kind="interaction", status=status,
                          source="interaction", question=CLAIM, answer=json.dumps({"claim_type": "home"}))
    mw.store.upsert([record], mw.embedder.encode([CLAIM]))


@pytest.mark.parametrize(("learn", "expected"), [("reviewed", {"r1"}), ("all", {"r1", "u1"})])
def test_unreviewed_answers_reach_the_pool_only_when_learn_is_all(mw, learn, expected):
    _remember(mw, "r1", "approved")
    _remember(mw, "u1", "validated")
    mw.settings.learn = learn
    domain = mw.domains.get("claims_intake")
    found = mw.assembler.retriever.retrieve(domain, AskRequest.of(CLAIM, domain=domain.name, tenant="t1"), CLAIM,
                                            params=mw.assembler.selection_params(domain), clauses=[])
    assert {c.id for c in found.memory_examples} == expected


def test_an_unreachable_store_leaves_the_curated_examples(mw, monkeypatch):
    def down(*a, **k):
        raise StoreError("store down")

    monkeypatch.setattr(mw.store, "search", down)
    domain = mw.domains.get("claims_intake")
    found = mw.assembler.retriever.retrieve(domain, AskRequest.of(CLAIM, domain=domain.name, tenant="t1"), CLAIM,
                                            params=mw.assembler.selection_params(domain), clauses=[])
    assert found.memory_available is False and found.memory_examples == [] and found.curated_examples


# -- selector --------------------------------------------------------------------------------------

def _found(curated: list[Candidate], memory: list[Candidate]) -> Retrieved:
    return Retrieved(query=_vec(0), clause_vectors={}, curated_examples=curated, curated_negatives=[],
                     memory_examples=memory)


def test_a_reviewed_answer_to_the_same_question_comes_first_and_held_out_ids_never_enter(settings):
    params = settings.selection
    curated = [_cand("close", _vec(0, 1)), _cand("held_out", _vec(0))]
    reviewed = _cand("reviewed", _vec(0), source="memory", status="approved")
    reviewed.similarity = 1.0
    picked = Selector().select(_found(curated, [reviewed]), params=params, switches=Switches(),
                               exclude_ids=frozenset({"held_out"}))
    assert [c.id for c in picked.ranked][:2] == ["reviewed", "close"]
    assert "held_out" not in {c.id for c in picked.pool}
    assert picked.pool[0].boost == params.curated_boost and reviewed.boost == 1.0


def test_with_derive_off_the_model_is_shown_the_full_answers(settings):
    pool = Selector.pool(_found([_cand("a", _vec(0))], []), params=settings.selection,
                         switches=Switches(derive=False), exclude_ids=frozenset())
    assert pool[0].answer.endswith("(full)")
    off = Selector.pool(_found([_cand("a", _vec(0))], []), params=settings.selection,
                        switches=Switches(examples=False), exclude_ids=frozenset())
    assert off == []


def test_voters_weigh_reviewed_answers_over_curated_and_unreviewed(settings):
    params = settings.selection
    near = _cand("near", _vec(0), source="memory", status="approved")
    near.similarity = 0.999
    close = _cand("close", _vec(1), source="memory", status="approved")  # an edit is stored approved
    close.similarity = 0.8
    far = _cand("far", _vec(1), source="memory", status="approved")
    far.similarity = 0.4
    loose = _cand("loose", _vec(2), source="memory", status="validated")
    trust = {n.id: n for n in voters([_cand("c", _vec(0)), near, close, far, loose], params)}
    assert trust["c"].trust == 1.0 and trust["loose"].trust == 0.5
    assert trust["near"].trust == params.near_identical_weight and trust["near"].near_identical
    assert trust["close"].trust == params.reviewed_weight and not trust["close"].near_identical
    assert trust["far"].trust == 1.0 and trust["far"].reviewed  # as much as a curated example at that distance
    assert params.near_identical_weight > params.reviewed_weight > 1.0
    assert params.near_identical > params.reviewed_close > far.similarity


# -- prompt builder --------------------------------------------------------------------------------

def _build(mw, *, num_ctx: int, ranked: list[Candidate], negatives: list[Candidate] | None = None, k: int = 4):
    domain = mw.domains.get("claims_intake")
    return mw.assembler.prompts.build(domain, Request(question=CLAIM), ranked=ranked, negatives=negatives or [],
                                      params=mw.assembler.selection_params(domain), num_ctx=num_ctx, reserve=200,
                                      k=k, cot=False, hide_derived=True)


def test_the_prompt_fits_the_budget_and_puts_the_most_relevant_example_next_to_the_request(mw):
    ranked = [_cand(f"e{i}", _vec(i % 8)) for i in range(6)]
    roomy = _build(mw, num_ctx=4096, ranked=ranked)
    assert [c.id for c, _ in roomy.chosen] == ["e0", "e1", "e2", "e3"]  # k bounds it
    assert roomy.messages[-1]["kind"] == "request" and roomy.messages[-2]["content"] == ranked[0].answer
    assert roomy.tokens + 200 <= 4096 and roomy.budget["used_by_examples"] == sum(t for _, t in roomy.chosen)
    fixed = roomy.budget["fixed"]
    tight = _build(mw, num_ctx=fixed + 200 + roomy.chosen[0][1], ranked=ranked)
    assert [c.id for c, _ in tight.chosen] == ["e0"]


def test_a_small_context_gives_up_the_negatives_first_then_refuses(mw):
    negative = _cand("n", _vec(0))
    negative.wrong, negative.reason = '{"claim_type": "home"}', "it is a car " * 200
    with_negative = _build(mw, num_ctx=8192, ranked=[], negatives=[negative])
    assert with_negative.negatives and "it is a car" in with_negative.messages[0]["content"]
    without = _build(mw, num_ctx=with_negative.budget["fixed"] + 150, ranked=[], negatives=[negative])
    assert without.negatives == [] and "it is a car" not in without.messages[0]["content"]
    with pytest.raises(RequestError, match="num_ctx"):
        _build(mw, num_ctx=50, ranked=[])


# -- grammar builder -------------------------------------------------------------------------------

def test_the_grammar_drops_derived_fields_and_a_unanimous_vote_narrows_the_enum(mw):
    domain = mw.domains.get("claims_intake")
    grammar = mw.assembler.grammar
    plain = grammar.build(domain, CLAIM, switches=Switches(), guide=None, clause_vectors={}, voters=[],
                          reliability={})
    assert "department" not in plain.schema["properties"]  # derived: filled by its map, never asked
    assert len(plain.schema["properties"]["claim_type"]["enum"]) > 1
    crowd = [Neighbour(f"n{i}", 0.9, {"claim_type": "auto"}, 1.0) for i in range(7)]
    voted = grammar.build(domain, CLAIM, switches=Switches(), guide=None, clause_vectors={}, voters=crowd,
                          reliability={})
    assert voted.schema["properties"]["claim_type"]["enum"] == ["auto"]
    assert any(v["path"] == "/claim_type" and v["allowed"] == ["auto"] for v in voted.votes)
    off = grammar.build(domain, CLAIM, switches=Switches(vote=False), guide=None, clause_vectors={}, voters=crowd,
                        reliability={})
    assert len(off.schema["properties"]["claim_type"]["enum"]) > 1 and off.votes == []
