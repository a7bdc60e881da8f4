"""Necessary traits: a label every example of which is written in one form (or given by a declared rule) is not
voted for a request written otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_middleware.domains.necessary import necessary_traits
from rag_middleware.domains.spec import RuleSpec, VoteSpec
from rag_middleware.domains.votes import RULED, Neighbour, field_votes, lacking

EMAIL = "Hello,\n{}\nKind regards,\nAnna"
CHAT = "{} pls help"
NOTE = "Call note: {}\nAgent: Sam"
TOPICS = ["my parcel is late", "the charger broke", "I was charged twice", "my login fails", "the screen is dark",
          "where is my refund"]
SPEC = {("channel",): VoteSpec(k=5, rules=[RuleSpec(pattern=r"^call note", label="phone")])}


def domain_examples() -> tuple[list[str], list[dict[str, str]]]:
    texts, answers = [], []
    for topic in TOPICS:
        for form, label in ((EMAIL, "email"), (CHAT, "chat"), (NOTE, "phone")):
            texts.append(form.format(topic))
            answers.append({"channel": label})
    return texts, answers


def test_what_every_example_of_a_label_shares_is_learnt_and_rules_count_where_every_label_has_a_trait():
    texts, answers = domain_examples()
    traits = necessary_traits(texts, answers, SPEC)[("channel",)]
    assert traits["email"] == ["<greeting line>", "<sign-off>"]
    assert traits["chat"] == ["<one line>"]  # "I was charged twice": not all in lower case
    assert traits["phone"] == [RULED]


def test_rules_are_not_necessary_where_some_label_has_no_trait():
    texts, answers = domain_examples()
    answers = [{"channel": "other"} if a["channel"] == "chat" else a for a in answers]
    texts = [t.replace(" pls help", ".\nThat is all.") if i % 3 == 1 else t for i, t in enumerate(texts)]
    traits = necessary_traits(texts, answers, SPEC)[("channel",)]
    assert "other" not in traits and "phone" not in traits  # the rule may name only some ways to "phone"
    assert "email" in traits


def test_a_reviewed_answer_written_otherwise_does_not_unlearn_the_trait():
    texts, answers = domain_examples()
    many = texts * 2 + ["Spoke to the customer on the phone: her parcel is late"]  # a call note no rule reads
    labels = answers * 2 + [{"channel": "phone"}]
    traits = necessary_traits(many, labels, SPEC)[("channel",)]
    assert RULED in traits["phone"] and traits["email"] == ["<greeting line>", "<sign-off>"]  # 12 of 13 ruled
    few = necessary_traits(texts + many[-1:], answers + labels[-1:], SPEC)[("channel",)]
    assert "phone" not in few  # 6 of 7 are not 90%


def test_too_few_examples_or_a_trait_shared_by_chance_teach_nothing():
    texts, answers = domain_examples()
    few = necessary_traits(texts[:9], answers[:9], SPEC)  # 3 examples of each label
    assert few == {}
    alike = [f"Hello,\n{t}\nRegards,\nAnna" for t in TOPICS for _ in range(3)]  # every example is a letter
    labels = [{"channel": lab} for _ in TOPICS for lab in ("email", "chat", "phone")]
    assert necessary_traits(alike, labels, {("channel",): VoteSpec()}) == {}


def test_the_vote_leaves_out_the_labels_a_request_lacks_unless_nothing_would_be_left():
    traits = {"email": ["<greeting line>", "<sign-off>"], "phone": [RULED]}
    assert lacking(traits, {"<one line>"}) == {"email": ["<greeting line>", "<sign-off>"], "phone": [RULED]}
    assert lacking(traits, {"<greeting line>", "<sign-off>"}) == {"phone": [RULED]}
    necessary = {("channel",): traits}
    near = [Neighbour("a", 0.9, {"channel": "email"}, 1.0), Neighbour("b", 0.85, {"channel": "phone"}, 1.0),
            Neighbour("c", 0.6, {"channel": "chat"}, 1.0)]
    record = field_votes(near, SPEC, question="where is my parcel", necessary=necessary)[0]
    assert record["allowed"] == ["chat"] and set(record["lacks"]) == {"email", "phone"}
    without = field_votes(near, SPEC, question="where is my parcel")[0]
    assert without["allowed"] == ["email"]
    only_lacking = near[:2]  # leaving both out would leave nothing: the vote stays whole
    kept = field_votes(only_lacking, SPEC, question="where is my parcel", necessary=necessary)[0]
    assert "lacks" not in kept and kept["allowed"] == ["email"]
    letter = field_votes(near, SPEC, question="Hello,\nwhere is my parcel\nRegards,\nAnn", necessary=necessary)[0]
    assert letter["allowed"] == ["email"]


def test_a_name_in_the_request_gives_no_label_its_form_rules_out():
    necessary = {("channel",): {"email": ["<greeting line>", "<sign-off>"]}}
    near = [Neighbour("c", 0.6, {"channel": "chat"}, 1.0), Neighbour("d", 0.6, {"channel": "chat"}, 1.0)]
    named = {("channel",): ["email", "chat", "phone"]}
    chat = "did you get my email about the parcel"  # one line: "email" is what it is about, not its form
    record = field_votes(near, SPEC, question=chat, named=named, necessary=necessary)[0]
    assert record["allowed"] == ["chat"] and "mention" not in record
    assert field_votes(near, SPEC, question=chat, named=named)[0]["mention"] == "email"


def test_the_judgement_learns_the_traits_and_the_pipeline_uses_them(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RAG_MW_KNOWLEDGE_BASE", str(Path(__file__).parents[1] / "benchmarks" / "probe_domains"))
    from rag_middleware import Middleware, load_settings

    with Middleware(load_settings(None, data_dir=tmp_path)) as mw:
        judged = mw.assembler.vote_reliability(mw.domains.get("ticket_routing"))
        assert judged["/channel"]["necessary"]["email"] == ["<greeting line>", "<sign-off>"]
        assert judged["/channel"]["necessary"]["phone"] == [RULED]
        assert RULED not in judged["/priority"].get("necessary", {}).get("urgent", [])  # urgent: rules list some
        assembly = mw.render("hi, the speaker I got from you crackles at high volume, can you help",
                             domain="ticket_routing")
    channel = next(v for v in assembly.votes if v["path"] == "/channel")
    assert channel["allowed"] == ["chat"] and "email" in channel["lacks"]


def test_the_cli_vote_table_shows_the_labels_left_out():
    from rag_middleware.cli.context import console
    from rag_middleware.cli.explain import show_grammar

    vote = {"path": "/channel", "allowed": ["chat"], "decided": True, "scores": {"chat": 1.0}, "voters": [],
            "lacks": {"email": ["<greeting line>", "<sign-off>"], "phone": [RULED]}}
    width = console.width
    console.width = 240  # one row per vote, unwrapped
    try:
        with console.capture() as captured:
            show_grammar([vote], [])
    finally:
        console.width = width
    shown = " ".join(captured.get().split())
    assert "left out: email (lacks" in shown and "phone (lacks" in shown
