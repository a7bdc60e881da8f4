"""Whether an optional object (a sort, an aggregate) is set or null is voted on like a label."""

from __future__ import annotations

from jsonschema import Draft202012Validator

from rag_middleware.domains.infer import infer
from rag_middleware.domains.mechanisms import Declarative
from rag_middleware.domains.narrowing import set_or_null
from rag_middleware.domains.spec import DeclarativeSpec, VoteSpec
from rag_middleware.domains.votes import Neighbour, field_votes, labels_at, mine_cues
from rag_middleware.request.ask import Switches
from rag_middleware.request.confidence import agreement

SORT = {"anyOf": [{"type": "object", "properties": {"by": {"enum": ["price", "area"]}}, "required": ["by"]},
                  {"type": "null"}], "description": "the order asked for"}
SCHEMA = {"type": "object", "properties": {"sort": SORT, "city": {"type": "string"}}}
SPEC = {("sort",): VoteSpec(k=5, margin=0.7, presence=True)}


def test_labels_say_set_or_null():
    assert labels_at({"sort": {"by": "price"}}, ("sort",), presence=True) == ["set"]
    assert labels_at({"sort": None}, ("sort",), presence=True) == ["null"]
    assert labels_at({"city": "x"}, ("sort",), presence=True) == []  # missing: no label
    assert labels_at({"sort": {"by": "price"}}, ("sort",)) == []  # an object has no value label


def test_neighbours_and_cue_words_vote_on_presence_and_narrow_the_grammar():
    examples = [(f"flats in town {i}, cheapest first", {"sort": {"by": "price"}}) for i in range(3)] + [
        (f"flats in town {i}", {"sort": None}) for i in range(8)]
    cues = mine_cues(examples, SPEC)
    assert cues[("sort",)]["cheapest"][0] == "set"
    voters = [Neighbour(str(i), 0.9, a, 1.0) for i, (_, a) in enumerate(examples[3:])]  # all say null
    unsure = field_votes(voters, SPEC, cues=cues, question="flats in Rome, cheapest first")[0]
    assert unsure["presence"] and unsure["scores"]["null"] > unsure["scores"]["set"]
    record = field_votes(voters, SPEC, cues=cues, question="flats in Rome")[0]
    assert record["allowed"] == ["null"] and record["confident"]
    schema, notes = Declarative(DeclarativeSpec(vote=SPEC), SCHEMA).grammar(SCHEMA, "flats in Rome", flags=Switches(),
                                                                    votes=[record])
    assert schema["properties"]["sort"] == {"type": "null", "description": "the order asked for"}
    assert agreement({"sort": None}, [record]) == 1.0 and agreement({"sort": {"by": "price"}}, [record]) == 0.0


def test_set_or_null_narrows_a_nullable_node_either_way():
    only_set = set_or_null(SORT, ["set"])
    v = Draft202012Validator(only_set)
    assert v.is_valid({"by": "price"}) and not v.is_valid(None)
    assert set_or_null({"type": ["object", "null"]}, ["set"]) == {"type": ["object"]}
    assert set_or_null(SORT, ["null", "set"]) is None  # both: nothing to narrow
    assert set_or_null({"type": "object"}, ["set"]) is None  # not nullable


def test_an_optional_object_the_examples_set_and_leave_null_is_inferred():
    spec = DeclarativeSpec()
    notes = infer(spec, SCHEMA, [("a", {"sort": {"by": "price"}, "city": "x"}), ("b", {"sort": None, "city": "y"})])
    assert spec.vote[("sort",)].presence and "/sort: whether it is set voted by the nearest examples" in notes
    never_null = DeclarativeSpec()
    infer(never_null, SCHEMA, [("a", {"sort": {"by": "price"}}), ("b", {"sort": {"by": "area"}})])
    assert ("sort",) not in never_null.vote
