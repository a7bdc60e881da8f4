"""Judging each voted field's voices on the examples themselves, by leave-one-out: how far its neighbours'
vote may narrow the grammar (``reliability``, ``gate``), how much its cue words weigh (``scaled``), whether the
label a request names decides it (``named_labels``), whether an optional object is set only where a cue word
says so (``quiet_presence``), and whether its gloss words beat its neighbours on the examples both decide
(``gloss_leads``). The vote itself is in votes.py."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .implied_votes import learn_implications
from .necessary import necessary_traits
from .paths import Path
from .prototypes import BLENDS, Prototypes
from .rule_match import decide_by_rule
from .spec import VoteSpec
from .votes import (ABSENT, PRESENT, _LeaveOneOutCues, Neighbour, _base, _cue_counts, any_label_word, cue_terms,
                    field_votes, form_values, label_of, labels_at, mentioned)

__all__ = ["CUE_SCALES", "RELIABLE", "gate", "leading_names", "named_labels", "necessary_of", "quiet_names",
           "quiet_presence", "reliability", "scaled", "trusted_names"]


RELIABLE = 0.7  # leave-one-out precision a field's confident votes need before they may narrow the grammar
DECISIVE = 0.5  # share of a field's leave-one-out winners holding ``decide`` of the vote that must be right, of 3+
CUE_SCALES = (1.0, 3.0, 10.0)  # how much a field's cue words may weigh against its neighbours, chosen per field


def scaled(cues: dict[Path, dict[str, tuple[str, float]]], judged: dict[str, dict[str, Any]]
           ) -> dict[Path, dict[str, tuple[str, float]]]:
    """The cue words with each field's strength scaled by the ``cue_scale`` its leave-one-out judgement chose."""
    out = {}
    for path, found in cues.items():
        scale = float((judged.get("/" + "/".join(path)) or {}).get("cue_scale", 1.0))
        out[path] = found if scale == 1.0 else _times(found, scale)
    return out


def _times(found: dict[str, tuple[str, float]], scale: float) -> dict[str, tuple[str, float]]:
    return {t: (label, w * scale) for t, (label, w) in found.items()}


NAMED_RELIABLE = 0.8  # share of the examples naming one label of a field that must carry it, for names to decide
NAMED_MIN = 3
QUIET_MIN = 5  # set examples of a field, before "set only where a label's word is written" is learnt
QUIET_SHARE = 0.85  # of them that must write one, and of the examples writing none, the share that must be null


def named_labels(examples: list[tuple[str, str, Any]], specs: dict[Path, VoteSpec], labels: dict[Path, list[Any]],
                 *, body: Any = None, mentions: Any = None, wins: dict[Path, dict[int, bool]] | None = None
                 ) -> dict[Path, dict[str, Any]]:
    """Per field with string labels: of the examples whose question names exactly one of them, how many carry
    that label. A field is ``trusted`` when at least NAMED_MIN do and NAMED_RELIABLE of them are right (a
    channel named "by phone" is the phone channel; a severity "high" in "high street" is not). ``wins``: per
    field, whether the neighbours' leave-one-out winner was right on each example; names then ``lead`` (decide
    over the neighbours) only when they were right more often than it on the examples they named, and are
    otherwise a tiebreak ("my account" on a billing question: the neighbours knew better)."""
    out = {}
    for path, spec in specs.items():
        found = [x for x in labels.get(path, []) if isinstance(x, str)]
        if spec.per_clause or spec.presence or len(found) < 2:
            continue
        named = right = given = worded = unnamed = null = neighbours = 0
        won = (wins or {}).get(path, {})
        for i, (_, question, answer) in enumerate(examples):
            truth = labels_at(answer, path)
            text = form_values(body(question) if body is not None else question)
            naming = form_values(mentions(body(question) if body is not None else question)) if mentions else text
            said = mentioned(found, naming)
            if len(truth) == 1 and len(said) == 1:
                named += 1
                right += said[0] == truth[0]
                neighbours += won.get(i, False)
            if len(truth) == 1:
                # a field with declared rules is quiet by them: null where none of its rules fires
                word = (decide_by_rule(spec, text, {}) is not None) if spec.rules else any_label_word(found, naming)
                given += truth[0] != ABSENT
                worded += truth[0] != ABSENT and word
                unnamed += not word
                null += not word and truth[0] == ABSENT
        trusted = named >= NAMED_MIN and right >= NAMED_RELIABLE * named
        # set only where a word of some label is written (every "per host" names it), and null where none is
        quiet = ((trusted or bool(spec.rules)) and given >= QUIET_MIN and worded >= QUIET_SHARE * given and unnamed > 0
                 and null >= QUIET_SHARE * unnamed)
        out[path] = {"named": named, "right": right, "trusted": trusted, "set": given, "set_worded": worded,
                     "unnamed": unnamed, "null": null, "quiet": quiet,
                     **({"neighbours_right": neighbours, "leads": trusted and right > neighbours} if wins else {})}
    return out


def quiet_names(judged: dict[str, dict[str, Any]]) -> set[Path]:
    """The fields whose examples naming no label are null (``named_labels``: ``quiet``)."""
    return {tuple(shown.strip("/").split("/")) for shown, info in judged.items()
            if (info.get("names") or {}).get("quiet")}


def reliability(examples: list[tuple[str, str, Any]], vectors: Any, specs: dict[Path, VoteSpec], *,
                body: Any = None, enums: dict[Path, list[Any]] | None = None,
                glossed: list[tuple[str, Any]] = (), rules: dict[Path, Any] | None = None, mentions: Any = None
                ) -> dict[str, dict[str, Any]]:
    """How often each field's vote is right, judged on the curated examples themselves: every example is
    voted on by the others (leave-one-out, cue words mined without it). Per field: ``cue_scale``, the weight
    of its cue words against its neighbours that got the most winners right (a field named by words, such as
    the channel a message came by, trusts its cues; a field that follows the topic trusts its neighbours;
    ties keep the smaller scale), ``blend``, the label prototypes' share of the vote chosen with it (a field
    that follows the topic gains by them; ties keep none), ``top1``, that share; and with those ``narrowed``, ``right``,
    ``precision`` and ``reliable``: a field whose narrowed votes are right less than RELIABLE of the time is
    left to the model (its vote still feeds the confidence). Rules decide outright and are not judged here.
    With ``enums`` (each field's labels from the schema), ``names``: whether the one label a request names
    decides the field (``named_labels``). ``glossed``: (text, answer) pseudo-examples that join the cue-word
    mining only (glosses.py), as they do at load. ``rules``: the fields' gloss rules (glosses.GlossRule, judged
    at load on the same examples in the same order): ``gloss_leads`` when, on the examples its words decided,
    the rule was right at least twice more than the neighbours' winner (of at least 3); its words then decide
    the field over a neighbours' vote for another label (``field_votes``: ``leading``)."""
    out: dict[str, dict[str, Any]] = {}
    paths = {p: s for p, s in specs.items() if not s.per_clause}
    if not paths or len(examples) < 5:
        return out
    sims = vectors @ vectors.T
    term_sets, seen, by_path, labels = _cue_counts([(q, a) for _, q, a in examples] + list(glossed), list(paths),
                                                   {p for p, spec in paths.items() if spec.presence}, len(examples))
    bases = {p: _base(labels, p) for p in paths}
    implies = learn_implications([a for _, _, a in examples], paths)
    necessary = necessary_traits([body(q) if body is not None else q for _, q, _ in examples],
                                 [a for _, _, a in examples], paths)
    protos = Prototypes.build({p: [mine.get(p) for mine in labels[: len(examples)]] for p in paths}, vectors)
    settings = [(scale, share) for share in BLENDS for scale in CUE_SCALES]
    # narrowed, right, winner right, decided (the winner held ``decide`` of the vote), decided right
    tallies = {key: {p: [0, 0, 0, 0, 0] for p in paths} for key in settings}
    wins: dict[tuple[float, float], dict[Path, dict[int, bool]]] = {key: {p: {} for p in paths} for key in settings}
    judged = dict.fromkeys(paths, 0)  # examples with a value at the path
    worded = {p: Counter() for p, spec in paths.items() if spec.presence}  # (truth, a set cue written): examples
    left_out = {p: _LeaveOneOutCues(by_path[p], seen, len(labels) - 1, bases[p]) for p in paths}
    for i, (_, question, answer) in enumerate(examples):
        neighbours = [Neighbour(examples[j][0], float(sims[i, j]), examples[j][2], 1.0)
                      for j in range(len(examples)) if j != i]
        text = body(question) if body is not None else question
        needed = cue_terms(text)
        cues = {p: left_out[p].without(term_sets[i], labels[i].get(p), needed) for p in paths}
        own = {p: protos.shares(p, vectors[i], minus=(labels[i][p], vectors[i]) if p in labels[i] else None)
               for p in paths}
        truths = {p: labels_at(answer, p, spec.presence) for p, spec in paths.items()}
        for path, truth in truths.items():
            judged[path] += bool(truth)
            if path in worded and len(truth) == 1:
                worded[path][(truth[0], any(label == PRESENT for label, _ in cues[path].values()))] += 1
        for (scale, share), stats in tallies.items():
            weighted = {p: _times(c, scale) for p, c in cues.items()}
            for record in field_votes(neighbours, paths, cues=weighted, question=text, decide=False,
                                      protos={p: (share, own[p]) for p in paths}, necessary=necessary):
                path = tuple(record["path"].strip("/").split("/"))
                truth = truths[path]
                if record.get("rule") or not truth:
                    continue  # a rule is not judged; no value there (a null object): nothing to judge
                winner, top = next(iter(record.get("scores", {}).items()), (None, 0.0))
                wins[(scale, share)][path][i] = winner == truth[0]
                stats[path][2] += wins[(scale, share)][path][i]
                if top >= paths[path].decide and not paths[path].presence:
                    stats[path][3] += 1
                    stats[path][4] += winner == truth[0]
                if record.get("allowed"):
                    stats[path][0] += 1
                    stats[path][1] += truth[0] in [label_of(a) for a in record["allowed"]]
    won: dict[Path, dict[int, bool]] = {}  # per field, its chosen setting's winners (right or not) per example
    for path in paths:
        scale, share = max(settings, key=lambda key: (tallies[key][path][2], -key[1], -key[0]))
        won[path] = wins[(scale, share)][path]
        narrowed, right, winners, decided, decided_right = tallies[(scale, share)][path]
        precision = right / narrowed if narrowed else 0.0
        out["/" + "/".join(path)] = {"narrowed": narrowed, "right": right, "precision": round(precision, 3),
                                     "reliable": narrowed >= 3 and precision >= RELIABLE, "cue_scale": scale,
                                     "blend": share, "top1": round(winners / max(1, judged[path]), 3),
                                     "decided": decided, "decided_right": decided_right,
                                     "decisive": decided < 3 or decided_right >= DECISIVE * decided,
                                     **({"necessary": necessary[path]} if path in necessary else {}),
                                     **({"implies": implies[path]} if path in implies else {})}
        rule = (rules or {}).get(path)
        if rule is not None and rule.decisions:
            both = [(ok, won[path][i]) for i, ok in rule.decisions if i in won[path]]
            by_rule, by_neighbours = sum(r for r, _ in both), sum(n for _, n in both)
            out["/" + "/".join(path)].update(gloss_vs_neighbours=[by_rule, by_neighbours, len(both)],
                                             gloss_leads=len(both) >= 3 and by_rule >= by_neighbours + 2)
    for path, names in named_labels(examples, paths, enums or {}, body=body, mentions=mentions, wins=won).items():
        out["/" + "/".join(path)]["names"] = names
    for path, seen in worded.items():
        out["/" + "/".join(path)]["names"] = quiet_presence(seen)
    return out


def quiet_presence(seen: Counter[tuple[str, bool]]) -> dict[str, Any]:
    """Whether an optional object is set only where the request writes a cue word of its being set ("how
    many", "average", "per host"), each example judged by the cues mined without it: QUIET_MIN set examples
    or more, QUIET_SHARE of them writing one, and QUIET_SHARE of the examples writing none null."""
    given = seen[(PRESENT, True)] + seen[(PRESENT, False)]
    unworded = seen[(PRESENT, False)] + seen[(ABSENT, False)]
    quiet = (given >= QUIET_MIN and seen[(PRESENT, True)] >= QUIET_SHARE * given and unworded > 0
             and seen[(ABSENT, False)] >= QUIET_SHARE * unworded)
    return {"set": given, "set_worded": seen[(PRESENT, True)], "unnamed": unworded, "null": seen[(ABSENT, False)],
            "quiet": quiet}


def trusted_names(judged: dict[str, dict[str, Any]], labels: dict[Path, list[Any]]) -> dict[Path, list[Any]]:
    """The labels of the fields whose named labels decide (``named_labels``)."""
    return {path: found for path, found in labels.items()
            if (judged.get("/" + "/".join(path)) or {}).get("names", {}).get("trusted")}


def necessary_of(judged: dict[str, dict[str, Any]]) -> dict[Path, dict[str, list[str]]]:
    """Each field's labels' necessary traits, as its judgement learnt them (necessary.py)."""
    return {tuple(shown.strip("/").split("/")): info["necessary"] for shown, info in judged.items()
            if info.get("necessary")}


def leading_names(judged: dict[str, dict[str, Any]]) -> set[Path]:
    """The fields whose named labels decide over their neighbours (``named_labels``: ``leads``); a trusted
    name elsewhere only settles a vote the neighbours left split or open."""
    return {tuple(shown.strip("/").split("/")) for shown, info in judged.items()
            if (info.get("names") or {}).get("leads", True)}


def gate(votes: list[dict[str, Any]], judged: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Votes of fields that proved unreliable on the examples narrow nothing, unless a reviewed answer to a
    near-identical question voted (the learning loop speaks for itself), the request named the label, or the
    winner held ``decide`` of the vote on a field whose such winners proved right (``decisive``: a channel
    that short chat messages' neighbours settle by topic, wrong more often than right, is left to the model)."""
    out = []
    for vote in votes:
        info = judged.get(vote["path"])
        strong = any(v.get("reviewed") and v.get("near_identical") for v in vote.get("voters", []))
        decisive = info is None or info.get("decisive", True) or "reason" in vote  # quiet: judged as names are
        strong = strong or bool(vote.get("decided") and decisive) or bool(vote.get("mention"))
        strong = strong or vote.get("gloss") is not None
        if vote.get("allowed") and not vote.get("rule") and info is not None and not info["reliable"] and not strong:
            vote = {**vote, "allowed": [], "confident": False,
                    "reason": f"votes on this field were right {info['right']} of {info['narrowed']} times on the "
                              "examples (leave-one-out): left to the model"}
        out.append(vote)
    return out
