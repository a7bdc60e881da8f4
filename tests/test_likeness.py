"""Likeness (domains/likeness.py): a value written like an identifier, with no word naming its kind, takes the
label whose example values it is like ("us-east-1" beside "eu-west-1"), where that proved itself leave-one-out."""

from __future__ import annotations

from rag_middleware.domains.likeness import grams, learn_likeness
from rag_middleware.domains.named_values import NamedBank

VALUES = [("eu-west-1", "region"), ("us-east-1", "region"), ("us-west-2", "region"),
          ("web-07", "host"), ("pay-02", "host"), ("worker-3", "host"),
          ("u_48213", "user_id"), ("u_9120", "user_id"),
          ("stripe-gateway", "service"), ("refunds-api", "service")]


def test_digits_are_all_alike_and_the_ends_are_marked():
    assert grams("web-03") == grams("web-07")
    assert "^w" in grams("web-03") and "3$" not in grams("web-03") and "9$" in grams("web-03")


def test_a_value_takes_the_label_whose_example_values_it_is_like():
    like = learn_likeness(VALUES)
    assert like.label_of("ap-southeast-2") == "region"
    assert like.label_of("sa-east-1") == "region"
    assert like.label_of("web-03") == "host"
    assert like.label_of("u_5521") == "user_id"
    assert like.label_of("checkout-api") == "service"
    assert like.label_of("zq") is None  # like nothing


def test_two_labels_alike_leave_the_value_untyped():
    like = learn_likeness([("db-replica-2", "host"), ("db-standby-3", "host"),
                           ("db-replica-5", "service"), ("db-standby-4", "service")])
    assert like.label_of("db-replica-9") is None


def test_leave_one_out_judges_the_likeness():
    like = learn_likeness(VALUES)
    assert like.judged["values"] == len(VALUES)
    assert like.judged["typed"] >= 2 and like.trusted
    # values whose look says nothing of their label: typed wrongly when left out, so never trusted
    mixed = learn_likeness([("web-01", "host"), ("web-02", "service"), ("web-03", "host"), ("web-04", "service"),
                            ("api-1", "service"), ("api-2", "host")])
    assert mixed.judged["typed"] > 0 and not mixed.trusted
    assert not learn_likeness([("eu-west-1", "region")]).trusted  # nothing to judge it on


def test_a_named_bank_types_an_unnamed_identifier_by_likeness_after_words_and_forms():
    bank = NamedBank("field", "value", {"L:host": "host"}, like=learn_likeness(VALUES))
    body = 'p95 latency on host db-9 in ap-southeast-2 for u_5521 mentioning "tls-1"'
    found = bank.labelled(body, ["db-9", "ap-southeast-2", "u_5521", "tls-1", "latency", "p95"])
    assert found["db-9"] == "host"  # its naming word first
    assert found["ap-southeast-2"] == "region" and found["u_5521"] == "user_id"
    assert "tls-1" not in found  # a quoted value is left to its form
    assert "latency" not in found  # a plain word carries no mark to compare
    untrusted = NamedBank("field", "value", {"L:host": "host"}, like=learn_likeness([("eu-west-1", "region")]))
    assert "ap-southeast-2" not in untrusted.labelled(body, ["ap-southeast-2"])


def test_a_number_is_not_typed_by_its_digits():
    bank = NamedBank("field", "value", {}, like=learn_likeness([*VALUES, ("88213", "user_id"), ("4410", "user_id")]))
    assert bank.labelled("status 500 in eu-west-2", ["500", "eu-west-2"]) == {"eu-west-2": "region"}


def test_an_example_value_itself_is_known_and_surely_an_item():
    like = learn_likeness(VALUES)
    assert like.known("Stripe-Gateway") == "service" and like.known("ap-southeast-2") is None
    bank = NamedBank("field", "value", {"L:host": "host"}, like=like)
    body = "stripe-gateway errors mentioning card_declined on host pay-07"
    assert set(bank.sure(body, ["stripe-gateway", "pay-07", "card_declined"])) == {"stripe-gateway", "pay-07"}
