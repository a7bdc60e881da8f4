"""A message's form (a greeting line, a sign-off, one line, lower case) is mined like a word: it becomes a cue
only where the examples' labels follow it, and gloss pseudo-examples give it none."""

from __future__ import annotations

import pytest

from rag_middleware.domains.message_form import GREETING_LINE, LOWER_CASE, ONE_LINE, SIGN_OFF, form_terms
from rag_middleware.domains.votes import Neighbour, field_votes, mine_cues
from rag_middleware.domains.spec import VoteSpec

EMAIL = "Hello Voltaro team,\nMy parcel has not arrived after two weeks.\nCould you check?\nKind regards,\nHelen"


@pytest.mark.parametrize(("text", "terms"), [
    (EMAIL, {GREETING_LINE, SIGN_OFF}),
    ("Dear Sir or Madam\nThe screen flickers.\nThanks\nTom", {GREETING_LINE, SIGN_OFF}),
    ("Good morning,\nplease cancel my order.", {GREETING_LINE}),
    ("hi my order is late where is it", {ONE_LINE, LOWER_CASE}),
    ("Hi, my order ORD-123456 is late, where is it?", {ONE_LINE}),  # a greeting in a line that goes on is chat
    ("Hello there, I have written a long greeting line that goes on\nand on", set()),
    ("Customer called about a refund.\nWants the money back by Friday.", set()),
    ("Name: Tom\nMessage: the screen flickers", set()),
    ("The screen flickers.\nBest regards from a very unhappy and long-waiting customer", set()),  # no short closing
    ("Thanks for nothing", {ONE_LINE}),  # one line: no sign-off under a message
    ("  \n ", set()),
    ("ok", {ONE_LINE}),  # too few words for lower case
])
def test_form_terms(text, terms):
    assert form_terms(text) == terms


THINGS = ("phone", "laptop", "tablet", "watch", "camera", "speaker", "router", "printer", "kettle", "drone")


def _examples():
    emails = [f"Hello team,\nMy {thing} is broken.\nRegards,\nAnn" for thing in THINGS[:5]]
    chats = [f"my {thing} is broken help" for thing in THINGS[5:]]
    forms = [f"Name: Ann\nProduct: {thing}\nMessage: It is broken." for thing in THINGS]
    return ([(q, {"channel": "email"}) for q in emails] + [(q, {"channel": "chat"}) for q in chats]
            + [(q, {"channel": "web_form"}) for q in forms])


def test_a_form_the_labels_follow_becomes_a_cue_and_votes():
    cues = mine_cues(_examples(), [("channel",)])[("channel",)]
    assert cues[GREETING_LINE][0] == cues[SIGN_OFF][0] == "email"
    assert cues[ONE_LINE][0] == cues[LOWER_CASE][0] == "chat"
    spec = {("channel",): VoteSpec()}
    neighbours = [Neighbour("n1", 0.9, {"channel": "chat"}, 1.0)]  # the nearest says chat, the form says email
    [vote] = field_votes(neighbours, spec, cues={("channel",): cues}, question="Hello,\nMy kettle leaks.\nThanks,\nBo")
    assert {c["term"] for c in vote["cues"]} == {GREETING_LINE, SIGN_OFF}
    assert next(iter(vote["scores"])) == "email"


def test_a_form_the_labels_do_not_follow_is_no_cue():
    mixed = [(q, {"channel": "email" if i % 2 else "chat"}) for i, (q, _) in enumerate(_examples())]
    assert not FORM_CUES & set(mine_cues(mixed, [("channel",)])[("channel",)])


def test_gloss_pseudo_examples_give_their_words_only():
    glossed = [(f"gloss {i}", {"channel": "phone"}) for i in range(6)]  # one-line texts, all one label
    examples = _examples()
    cues = mine_cues(examples + glossed, [("channel",)], shaped=len(examples))[("channel",)]
    assert cues[ONE_LINE][0] == "chat"  # not diluted (nor taken) by the one-line glosses
    unshaped = mine_cues(examples + glossed, [("channel",)])[("channel",)]
    assert ONE_LINE not in unshaped  # what the glosses' form would have done


FORM_CUES = {GREETING_LINE, SIGN_OFF, ONE_LINE, LOWER_CASE}


def test_a_form_cue_outweighs_a_gloss_word_meant_otherwise(tmp_path):
    """On the newcomers' ticket_routing: "live" is a gloss word of the chat channel; in an email (a greeting
    line and a sign-off, which the examples' emails all have) it is where the customer lives."""
    from rag_middleware import load_settings
    from tests.conftest import ROOT, FakeLLM, HashEmbedder, fake_middleware

    settings = load_settings(data_dir=tmp_path / "data", knowledge_base=ROOT / "benchmarks" / "probe_domains",
                             prompts_dir=ROOT / "prompts")
    body = "the courier left ORD-120937 at number 41 but I live at 14 and nobody there has it"
    mw = fake_middleware(settings, FakeLLM(), HashEmbedder())
    try:
        def channel(text):
            return next(v for v in mw.render(text, domain="ticket_routing").votes if v["path"] == "/channel")
        plain = channel(body)
        assert plain.get("gloss") == ["live"] and plain["allowed"] == ["chat"]  # the word alone decides
        email = channel(f"Good afternoon,\n{body}.\nRegards,\nAnn")
        assert "gloss" not in email and {c["term"] for c in email.get("cues", [])} >= {GREETING_LINE, SIGN_OFF}
        assert next(iter(email["scores"])) == "email"
    finally:
        mw.close()
