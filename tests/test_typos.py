"""Typos of a rule's own words (domains/typos.py): a rule fires on "erors" as on "errors", and one real word is
never read as another."""

from __future__ import annotations

from rag_middleware.domains.spec import VoteSpec
from rag_middleware.domains.typos import mended
from rag_middleware.domains.rule_match import decide_by_rule

ERRORS = r"(?<!fatal )\b(?:errors?|exceptions?)\b"
WARN = r"\bwarn(?:s|ings?)?\b"


def test_a_letter_left_out_added_or_two_swapped_is_mended_to_the_rules_word():
    assert mended("pls show erors from the api", ERRORS) == "pls show errors from the api"
    assert mended("db erorrs and excpetions", ERRORS) == "db errors and exceptions"
    assert mended("the latest 10 warnigns", WARN) == "the latest 10 warnings"  # spelled out of its options


def test_a_real_word_is_not_read_as_another():
    assert mended("packed like a parcel", r"\bhacked\b") == "packed like a parcel"  # one letter changed
    assert mended("she spoke to us", r"\bsmoke\b") == "she spoke to us"
    assert mended("a warm day", WARN) == "a warm day"  # under 5 letters: too short to tell


def test_a_rule_decides_on_a_typo_of_its_word():
    spec = VoteSpec.model_validate({"rules": [{"pattern": WARN, "label": "warn"},
                                              {"pattern": ERRORS, "label": "error"}]})
    assert decide_by_rule(spec, "kafka consumer erros on worker-12", {})[1] == "error"
    assert decide_by_rule(spec, "the warnigns from auth", {})[1] == "warn"
    assert decide_by_rule(spec, "the logs from auth", {}) is None
