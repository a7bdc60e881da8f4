"""Each voted field chooses, by leave-one-out on the examples, how much its cue words weigh against its
neighbours: a field named by words (how a message came in) trusts its cues, a field that follows the topic
trusts its neighbours."""

from __future__ import annotations

import itertools

import numpy as np

from rag_middleware.domains.spec import VoteSpec
from rag_middleware.domains.judgement import CUE_SCALES, reliability, scaled
from rag_middleware.domains.votes import Neighbour, field_votes, mine_cues

TOPICS = {"car": "my car was hit in the car park", "pet": "my dog needed the vet for his paw",
          "home": "a pipe burst and flooded the kitchen at home"}
CHANNELS = {"phone": "caller says", "chat": "chat message:", "email": "dear team,"}
SPECS = {("topic",): VoteSpec(k=5, margin=0.6), ("channel",): VoteSpec(k=5, margin=0.6)}


def examples():
    """Every topic with every channel, three times: the embedding (a one-hot of the topic) says nothing
    about the channel, the words say everything about it."""
    out, vectors = [], []
    for n, (topic, channel) in enumerate(itertools.product(TOPICS, CHANNELS)):
        for copy in range(3):
            question = f"{CHANNELS[channel]} {TOPICS[topic]} (case {n}{copy})"
            out.append((f"e{n}{copy}", question, {"topic": topic, "channel": channel}))
            vec = np.array([topic == t for t in TOPICS], dtype=float) + 0.01 * np.random.default_rng(n + copy).random(3)
            vectors.append(vec / np.linalg.norm(vec))
    return out, np.array(vectors)


def test_a_field_named_by_words_trusts_its_cues_and_a_topic_field_its_neighbours():
    items, vectors = examples()
    judged = reliability(items, vectors, SPECS)
    assert judged["/channel"]["cue_scale"] > min(CUE_SCALES)
    assert judged["/topic"]["cue_scale"] == min(CUE_SCALES)  # a tie keeps the smaller scale
    assert judged["/channel"]["top1"] > 0.9 and judged["/topic"]["top1"] > 0.9


def test_the_chosen_scale_decides_a_vote_the_neighbours_would_lose():
    items, vectors = examples()
    judged = reliability(items, vectors, SPECS)
    cues = mine_cues([(q, a) for _, q, a in items], list(SPECS))
    # the nearest neighbours are pet questions that came by phone; the request came by chat
    same = [x for x in items if x[2]["topic"] == "pet" and x[2]["channel"] == "phone"]
    voters = [Neighbour(f"{i}-{copy}", 0.95 - 0.01 * n, a, 1.0)
              for n, (copy, (i, q, a)) in enumerate(itertools.product(range(2), same))]
    request = "chat message: my dog needed the vet"
    plain = {r["path"]: r for r in field_votes(voters, SPECS, cues=cues, question=request)}
    tuned = {r["path"]: r for r in field_votes(voters, SPECS, cues=scaled(cues, judged), question=request)}
    assert next(iter(plain["/channel"]["scores"])) == "phone"
    assert next(iter(tuned["/channel"]["scores"])) == "chat"
    assert tuned["/topic"]["scores"] == plain["/topic"]["scores"]  # scale 1: untouched


def test_an_answer_without_a_value_at_the_path_is_not_judged():
    """Half the examples have no sort: a vote on /sort/order is judged on the other half only."""
    items, vectors = [], []
    for n in range(12):
        order = None if n % 2 else {"order": "asc" if n % 4 == 0 else "desc"}
        word = "cheapest first" if n % 4 == 0 else "most expensive first" if n % 2 == 0 else "any order"
        items.append((f"e{n}", f"flats in town {n}, {word}", {"sort": order}))
        vectors.append([1.0, 0.001 * n])
    vectors = np.array(vectors) / np.linalg.norm(np.array(vectors), axis=1, keepdims=True)
    judged = reliability(items, vectors, {("sort", "order"): VoteSpec(k=5, margin=0.6)})["/sort/order"]
    assert judged["narrowed"] <= 6 and judged["precision"] == 1.0 and judged["reliable"]


def test_enum_fields_of_objects_are_voted_on_but_not_those_of_list_items():
    from rag_middleware.domains.infer import infer
    from rag_middleware.domains.spec import DeclarativeSpec

    schema = {"type": "object", "properties": {
        "sort": {"anyOf": [{"type": "object", "properties": {"order": {"enum": ["asc", "desc"]}}}, {"type": "null"}]},
        "filters": {"type": "array", "items": {"type": "object", "properties": {"op": {"enum": ["lt", "gt"]}}}}}}
    spec = DeclarativeSpec()
    notes = infer(spec, schema, [("q", {"sort": {"order": "asc"}, "filters": [{"op": "lt"}]})])
    assert ("sort", "order") in spec.vote and ("filters", "*", "op") not in spec.vote
    assert "/sort/order: voted by the nearest examples" in notes
