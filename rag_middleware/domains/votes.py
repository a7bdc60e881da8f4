"""Label votes: the nearest curated examples and reviewed answers vote on a field's value.

Each neighbour's weight is ``exp((similarity - best) / temperature)`` times its trust: curated examples 1,
close reviewed answers ``reviewed_weight`` (far ones 1), and a reviewed answer to a near-identical question
``near_identical_weight``. What the grammar admits, first that applies: a declared rule's label; the one label
the request names, on a field whose named labels proved right on the examples; the winner alone when it holds
``decide`` of the weight (the 270M model picks worse than the vote's order among several labels); the values
holding ``margin`` of the weight together (at most ``max_labels``). A vote is recorded whole (scores, voters, the
decision), so ``--explain`` and the replay report can show why a value was chosen.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from typing import Any

from .message_form import form_terms
from .paths import Path, values_at
from .prototypes import blend
from .spec import VoteSpec
from .rule_match import decide_by_rule

__all__ = ["Neighbour", "RULED", "field_votes", "labels_at", "lacking", "mentioned", "mine_cues", "REVIEWED_STATUSES"]

REVIEWED_STATUSES = ("approved",)  # approved and edited answers (an edit is stored approved)


@dataclass(frozen=True)
class Neighbour:
    id: str
    similarity: float
    answer: Any  # parsed answer
    trust: float  # 1 for curated, more for reviewed
    reviewed: bool = False
    near_identical: bool = False  # a reviewed answer to (nearly) the same question
    question: str = ""  # a memory record's question (anchored lists learn from it); curated: empty
    vector: Any = field(default=None, compare=False)  # a reviewed answer's question vector (joins prototypes)


def label_of(value: Any) -> str | None:
    """How a value is counted in a vote: strings as they are, other scalars as JSON, containers not at all."""
    if isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, bool | int | float) or value is None else None


PRESENT, ABSENT = "set", "null"
RULED = "<declared rule>"  # a necessary trait (necessary.py): the field's declared rules give the label


def lacking(traits: dict[str, list[str]] | None, shape: set[str]) -> dict[str, list[str]]:
    """The labels whose necessary traits (necessary.py) a request of form terms ``shape`` lacks, each with what
    it lacks. Asked only where none of the field's declared rules fired: a ``RULED`` label always lacks it."""
    out = {}
    for label, needed in (traits or {}).items():
        missing = [t for t in needed if t == RULED or t not in shape]
        if missing:
            out[label] = missing
    return out


def labels_at(answer: Any, path: Path, presence: bool = False) -> list[str]:
    """The vote labels of the values at a path: each value's label, or with ``presence`` whether it is set
    (an object, a list) or null. A path missing from the answer has none."""
    found = values_at(answer, path) if answer is not None else []
    if presence:
        return [ABSENT if v is None else PRESENT for v in found]
    return [lab for v in found if (lab := label_of(v)) is not None]


def parse_answer(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


_WORD = re.compile(r"[a-z][a-z'-]{2,}")
CUE_MIN = 2  # examples a word must appear in before it can be a cue
CUE_PURITY = 0.9  # share of those examples that must carry one value
CUE_MAX_SHARE = 0.3  # a word in more of the examples than this says nothing ...
CUE_CHANCE = 0.001  # ... unless that many examples carrying its value by chance is this unlikely ("first": a sort)


STOP_WORDS = frozenset([  # words that name no value: never cues, never slot candidates
    "a", "an", "the", "and", "or", "but", "if", "then", "than", "so", "to", "of", "in", "on", "at", "by", "for",
    "with", "from", "into", "onto", "over", "under", "about", "as", "is", "are", "was", "were", "be", "been", "being",
    "am", "do", "does", "did", "done", "have", "has", "had", "having", "it", "its", "it's", "this", "that", "these",
    "those", "there", "here", "i", "me", "my", "mine", "we", "us", "our", "you", "your", "he", "him", "his", "she",
    "her", "they", "them", "their", "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "all",
    "any", "both", "each", "few", "more", "most", "other", "some", "such", "no", "nor", "not", "only", "own", "same",
    "too", "very", "can", "will", "just", "should", "would", "could", "may", "might", "must", "shall", "also",
    "please", "hi", "hello", "thanks", "thank", "regards", "dear", "yes", "get", "got", "one",
])


def _terms(text: str) -> set[str]:
    words = [w[:-2] if w.endswith("'s") else w.strip("'-") for w in _WORD.findall(text.lower())]  # caller's, 'many'
    singles = {w for w in words if w not in STOP_WORDS}
    pairs = {f"{a} {b}" for a, b in pairwise(words) if not (a in STOP_WORDS and b in STOP_WORDS)}
    return singles | pairs


FIELD_LINES = "<field: value lines>"  # the shape of a message written as two lines or more of "Label: value"
_FIELD_LINE = re.compile(r"^[ \t]*[A-Za-z][\w /&'()-]{0,30}:[ \t]*\S", re.M)


def field_lines(text: str) -> bool:
    """Whether the text is written as a form: two lines or more of "Label: value"."""
    return len(_FIELD_LINE.findall(text)) >= 2


_CLAUSES = re.compile(r"[,;.!?()\n]+")
_DENIED = re.compile(r"\b(?:not|no|never|without|nobody|none|neither|nor|cannot)\b|n't\b", re.I)


def form_values(text: str) -> str:
    """A message written as a form without its labels ("Property: apartment" is about an apartment; "Let or buy:
    let" names no purchase); any other text as it is."""
    return _FIELD_LINE.sub(lambda m: " , " + m.group().split(":", 1)[1], text) if field_lines(text) else text


def asserted_terms(text: str) -> set[str]:
    """A text's terms without what it denies: each clause up to its first negation ("I was not injured" holds
    no "injured"; "nobody was hurt" no "hurt"), and a form without its labels (``form_values``). Gloss rules
    read requests and examples so."""
    text = form_values(text)
    return _terms(" , ".join(_DENIED.split(clause, maxsplit=1)[0] for clause in _CLAUSES.split(text)))


def cue_terms(text: str) -> set[str]:
    """What cue words are mined from and looked up in: a text's words and word pairs, and its form
    (message_form.py: a greeting line, a sign-off, one line, all in lower case)."""
    return _terms(text) | form_terms(text)


def _cue_counts(examples: list[tuple[str, Any]], paths: list[Path], presence: set[Path] | frozenset[Path] = frozenset(),
                shaped: int | None = None
                ) -> tuple[list[set[str]], Counter[str], dict[Path, dict[str, Counter[str]]], list[dict[Path, str]]]:
    """``shaped``: how many of the examples (the first ones) are messages whose form counts; the rest (gloss
    pseudo-examples, glosses.py) give their words only."""
    shaped = len(examples) if shaped is None else shaped
    term_sets = [cue_terms(q) if i < shaped else _terms(q) for i, (q, _) in enumerate(examples)]
    seen = Counter(t for terms in term_sets for t in terms)
    labels: list[dict[Path, str]] = []
    by_path: dict[Path, dict[str, Counter[str]]] = {p: {} for p in paths}
    for terms, (_, answer) in zip(term_sets, examples, strict=True):
        mine: dict[Path, str] = {}
        for path in paths:
            found = labels_at(answer, path, path in presence)
            if len(found) != 1:
                continue
            mine[path] = found[0]
            for t in terms:
                by_path[path].setdefault(t, Counter())[mine[path]] += 1
        labels.append(mine)
    return term_sets, seen, by_path, labels


def _select_cues(by_term: dict[str, Counter[str]], seen: Counter[str], n: int,
                 minus: tuple[set[str], str | None] | None = None,
                 base: Counter[str] | None = None) -> dict[str, tuple[str, float]]:
    cues = {}
    gone_terms, gone_label = minus if minus is not None else (set(), None)
    base = base - Counter({gone_label: 1}) if base is not None and gone_label is not None else base
    labelled = sum(base.values()) if base else 0
    for term, counts in by_term.items():
        if term in gone_terms and gone_label is not None:
            counts = counts.copy()
            counts[gone_label] -= 1
            counts = +counts
            if not counts:
                continue
        total = sum(counts.values())
        label, top = counts.most_common(1)[0]
        occurrences = seen[term] - (1 if term in gone_terms else 0)
        common = occurrences > CUE_MAX_SHARE * n
        if common and labelled:  # a common word still names a value it goes with far more than chance does
            common = (base[label] / labelled) ** top > CUE_CHANCE
        if total >= CUE_MIN and top / total >= CUE_PURITY and not common:
            cues[term] = (label, round((top - 1) / (total + 1), 3))  # 2 of 2: 0.33, 7 of 7: 0.75
    return cues


class _LeaveOneOutCues:
    """``_select_cues`` of one field with each example left out in turn, without a scan of every term per
    example: leaving one out changes only its own terms and, through the base rates, the common words."""

    def __init__(self, by_term: dict[str, Counter[str]], seen: Counter[str], n: int, base: Counter[str]) -> None:
        self.by_term, self.seen, self.n, self.base = by_term, seen, n, base
        self.common = {t for t in by_term if seen[t] > CUE_MAX_SHARE * n}
        self.fixed = _select_cues({t: c for t, c in by_term.items() if t not in self.common}, seen, n)

    def without(self, terms: set[str], label: str | None, needed: set[str]) -> dict[str, tuple[str, float]]:
        """The cues among ``needed`` (the terms of the text voted on) with the example of ``terms`` and
        ``label`` left out."""
        cues = {t: self.fixed[t] for t in needed if t in self.fixed and t not in terms}
        again = {t: self.by_term[t] for t in (terms | self.common) & needed if t in self.by_term}
        cues.update(_select_cues(again, self.seen, self.n, (terms, label), self.base))
        return cues


def mine_cues(examples: list[tuple[str, Any]], paths: list[Path] | dict[Path, VoteSpec], *, shaped: int | None = None
              ) -> dict[Path, dict[str, tuple[str, float]]]:
    """Words and word pairs of the example questions that go with one value of a voted field:
    ``{path: {term: (value label, strength)}}``. A term is a cue when at least CUE_MIN examples hold it, at
    least CUE_PURITY of them carry the same value, and it is not a word many examples share (unless so many
    carrying one value is far beyond chance). ``shaped``: see ``_cue_counts``."""
    if len(examples) < 4:
        return {}
    presence = {p for p, spec in paths.items() if spec.presence} if isinstance(paths, dict) else set()
    _, seen, by_path, labels = _cue_counts(examples, list(paths), presence, shaped)
    return {path: _select_cues(by_path[path], seen, len(examples), base=_base(labels, path)) for path in paths}


def _base(labels: list[dict[Path, str]], path: Path) -> Counter[str]:
    return Counter(mine[path] for mine in labels if path in mine)


@lru_cache(maxsize=4096)
def _naming(label: str) -> re.Pattern[str]:
    words = re.escape(label.lower().replace("_", " ").replace("-", " ")).replace(r"\ ", r"[\s_-]+")
    return re.compile(rf"(?<![\w-]){words}(?:e?s)?(?![\w-])", re.I)


def any_label_word(labels: list[Any], text: str) -> bool:
    """Whether the text writes any word of 3 letters or more of any label ("user" of ``user_id``), or its plural,
    or a whole label ("user_id")."""
    words = {w for label in labels if isinstance(label, str) for w in re.split(r"[\W_]+", label.lower()) if len(w) >= 3}
    words |= {label.lower() for label in labels if isinstance(label, str) and len(label) >= 3}
    return any(re.search(rf"(?<![\w-]){re.escape(w)}(?:e?s)?(?![\w-])", text, re.I) for w in words)


def mentioned(labels: list[Any], text: str) -> list[str]:
    """The string labels the text names as words (any case; ``_``, ``-`` and spaces alike; a plural s/es)."""
    return [label for label in labels if isinstance(label, str) and label.strip() and _naming(label).search(text)]


def field_votes(neighbours: list[Neighbour], specs: dict[Path, VoteSpec], *,
                cues: dict[Path, dict[str, tuple[str, float]]] | None = None,
                question: str = "", context: dict[str, list[str]] | None = None,
                named: dict[Path, list[Any]] | None = None, decide: bool = True,
                protos: dict[Path, tuple[float, dict[str, float]]] | None = None,
                glossed: dict[Path, Any] | None = None, numbers: dict[Path, Any] | None = None,
                leading: set[Path] | frozenset[Path] = frozenset(),
                quiet: set[Path] | frozenset[Path] = frozenset(), mentions: str | None = None,
                named_lead: set[Path] | None = None,
                necessary: dict[Path, dict[str, list[str]]] | None = None) -> list[dict[str, Any]]:
    """One vote record per (non per-clause) voted path. A declared rule that matches the request decides
    outright; so does the one label the request names, for the fields in ``named`` (path: its labels; those
    whose named labels proved right on the examples). Otherwise neighbours vote by similarity, and the
    request's cue words (mined from the examples) add their strength to the value they go with; with
    ``decide`` a winner holding ``spec.decide`` of the vote is admitted alone. ``protos``: per path, the label
    prototypes' share of the vote and their label shares (domains/prototypes.py). ``glossed``: per path, its
    ``glosses.GlossRule``; a reliable one decides after rules and named labels (its words, or its default); one
    that is only a ``tiebreak`` settles a split or open vote (not one label), and on a field in ``leading``
    (its words were right more often than the neighbours on the examples: ``judgement.reliability``) its words,
    with no number range among them, also overrule a neighbours' vote for another label. ``numbers``: the
    request's likeliest value of each numeric field a gloss rule's ranges are about. ``quiet``: fields of
    ``named`` that are null where the request writes no word of any label (judgement.named_labels), and optional
    objects that are null where it writes no cue word of their being set (judgement.quiet_presence).
    ``mentions``: the request as the labels it names are read from (default ``question``; the assembly blanks
    the words that name a value's kind: named_values.unnamed). ``named_lead``: the fields of ``named`` whose
    one named label decides outright (default all); on the others it settles only a split or open vote.
    ``necessary``: per path, each label's necessary traits (necessary.py); the labels whose traits the request
    lacks are left out of the neighbours' vote."""
    out: list[dict[str, Any]] = []
    terms = _terms(question) if cues or glossed else set()
    shape = form_terms(question) if cues or necessary else set()  # cue words also go with a message's form
    asserted = asserted_terms(question) if glossed else set()  # label gloss words count where not denied
    asserted |= {FIELD_LINES} if glossed and field_lines(question) else set()
    ranked = sorted(neighbours, key=lambda n: -n.similarity)
    naming = form_values(mentions if mentions is not None else question)
    for path, spec in specs.items():
        if spec.per_clause:
            continue
        shown = "/" + "/".join(path)
        ruled = decide_by_rule(spec, question, context or {})
        if ruled is not None:
            out.append({"path": shown, "allowed": [ruled[1]], "scores": {str(ruled[1]): 1.0}, "voters": [],
                        "confident": True, "rule": ruled[0]})
            continue
        # a form's labels name no answer ("Let or buy: let" is no purchase): its values only
        lacks = lacking((necessary or {}).get(path), shape)  # no name or gloss word gives a label lacking its form
        said = [x for x in mentioned(named[path], naming) if x not in lacks] if named and path in named and \
            not spec.presence else []
        if len(said) == 1 and (named_lead is None or path in named_lead):
            out.append({"path": shown, "allowed": said, "scores": {said[0]: 1.0}, "voters": [], "confident": True,
                        "mention": said[0]})
            continue
        if path in quiet and spec.rules and not spec.presence:  # quiet by its rules, none of which fired
            out.append({"path": shown, "allowed": [None], "scores": {"null": 1.0}, "voters": [], "confident": True,
                        "decided": True, "reason": "no rule fired: the examples no rule decides are null"})
            continue
        if named and path in named and path in quiet and not any_label_word(named[path], naming):
            out.append({"path": shown, "allowed": [None], "scores": {"null": 1.0}, "voters": [], "confident": True,
                        "decided": True, "reason": "no label named: the examples that name none are null"})
            continue
        if spec.presence and path in quiet and not any(
                (cues or {}).get(path, {}).get(t, ("",))[0] == PRESENT for t in terms | shape):
            out.append({"path": shown, "allowed": [ABSENT], "scores": {ABSENT: 1.0}, "voters": [], "confident": True,
                        "decided": True, "presence": True,
                        "reason": "no cue word of its being set: the examples that write none are null"})
            continue
        rule = (glossed or {}).get(path)
        hit = rule.decide(terms if spec.presence else asserted, numbers) if rule is not None else None
        hit = None if hit is not None and hit[0] in lacks else hit
        leads = (hit is not None and bool(hit[1]) and path in leading
                 and not set(hit[1]) & {term for term, _, _ in rule.ranges})  # words lead, a guessed number not
        if hit is not None and not (rule.tiebreak or leads or (hit[1] and set(hit[1]) <= label_forms(hit[0]))):
            hit = None  # a rule short of a tiebreak still breaks ties by the label's own name ("liability")
        if hit is not None and _form_against(hit[0], shape, (cues or {}).get(path, {})):
            hit = None  # a word may be meant otherwise ("I live at 14"), the form a message is written in not
        if hit is not None and rule.reliable:
            out.append(_glossed(shown, _unlabel(hit[0], spec), hit, spec.presence))
            continue
        record = _neighbour_vote(ranked, path, spec, shown, found_cues=[
            (t, *cues[path][t]) for t in sorted(terms | shape) if t in (cues or {}).get(path, {})], decide=decide,
            proto=(protos or {}).get(path), lacks=lacks)
        out.append(_settled(record, said, hit, leads, spec))
    for path, rule in (glossed or {}).items():  # nullable scalars no vote covers: whether they are set
        if rule.presence and path not in specs and rule.reliable and (hit := rule.decide(terms, numbers)) is not None:
            out.append(_glossed("/" + "/".join(path), hit[0], hit, True))
    return out


def _settled(record: dict[str, Any], said: list[str], hit: tuple[str, list[str]] | None, leads: bool,
             spec: VoteSpec) -> dict[str, Any]:
    """A neighbours' vote settled: by the one label the request names (a name that does not lead) or else a
    gloss rule's words, where the vote is split or open; by leading gloss words also against its winner."""
    if len(said) == 1 and len(record["allowed"]) != 1:
        record.pop("decided", None)
        record.update(allowed=said, confident=True, mention=said[0], tiebreak=True)
    elif hit is not None and hit[1]:
        label = _unlabel(hit[0], spec)
        over = leads and len(record["allowed"]) == 1 and record["allowed"] != [label]
        if len(record["allowed"]) != 1 or over:  # split, open, or a leading rule against the neighbours
            record.pop("decided", None)
            record.update(allowed=[label], confident=True, gloss=hit[1], tiebreak=True,
                          **({"leads": True} if over else {}))
    return record


def label_forms(label: str) -> set[str]:
    """How a text writes a label as words: "web_form" and "web form"."""
    return {label.lower(), label.lower().replace("_", " ")}


def _form_against(label: str, shape: set[str], cues: dict[str, tuple[str, float]]) -> bool:
    """Whether two traits of the message's form or more (a greeting line and a sign-off: a letter) are cues of
    one other label than ``label``. One trait alone ("all in lower case") may go with a label by chance."""
    others = Counter(cues[t][0] for t in shape if t in cues and cues[t][0] != label)
    return bool(others) and others.most_common(1)[0][1] >= 2


def _glossed(shown: str, value: Any, hit: tuple[str, list[str]], presence: bool) -> dict[str, Any]:
    """The vote record of a gloss rule's decision (``hit``: its label and the gloss words found)."""
    return {"path": shown, "allowed": [value], "scores": {hit[0]: 1.0}, "voters": [], "confident": True,
            "gloss": hit[1], **({"presence": True} if presence else {})}


def _neighbour_vote(ranked: list[Neighbour], path: Path, spec: VoteSpec, shown: str, *,
                    found_cues: list[tuple[str, str, float]], decide: bool,
                    proto: tuple[float, dict[str, float]] | None = None,
                    lacks: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The nearest neighbours' vote on one path (with the request's cue words), and what it admits. ``lacks``:
    labels left out of it (their necessary traits are missing), unless that leaves nothing to vote on."""
    lacks = _left_out(lacks or {}, ranked, path, spec, found_cues, proto)
    found_cues = [c for c in found_cues if c[1] not in lacks]
    if proto is not None and lacks:
        kept = {k: v for k, v in proto[1].items() if k not in lacks}
        proto = (proto[0], {k: v / sum(kept.values()) for k, v in kept.items()} if sum(kept.values()) > 0 else {})
    voters, originals = _voters(ranked, path, spec, lacks)
    record: dict[str, Any] = {"path": shown, "allowed": [], "scores": {}, "voters": [], "confident": False,
                              **({"presence": True} if spec.presence else {}), **({"lacks": lacks} if lacks else {})}
    if found_cues:
        record["cues"] = [{"term": t, "value": label, "weight": w} for t, label, w in found_cues]
    share, proto_shares = proto if proto is not None and proto[0] > 0 else (0.0, {})
    if not voters and not found_cues and not proto_shares:
        record["reason"] = "no neighbour close enough"
        return record
    best = voters[0][0].similarity if voters else 0.0
    scores: dict[str, float] = {}
    for _term, label, weight in found_cues:
        scores[label] = scores.get(label, 0.0) + weight
        originals.setdefault(label, _unlabel(label, spec))
    for n, label in voters:
        weight = math.exp((n.similarity - best) / spec.temperature) * n.trust
        scores[label] = scores.get(label, 0.0) + weight
        record["voters"].append({"id": n.id, "value": label, "similarity": round(n.similarity, 4),
                                 "weight": round(weight, 4), "reviewed": n.reviewed,
                                 "near_identical": n.near_identical})
    total = sum(scores.values())
    shares = blend({k: v / total for k, v in scores.items()} if total else {}, proto_shares, share)
    if proto_shares:
        record["prototypes"] = {k: round(v, 4) for k, v in sorted(proto_shares.items(), key=lambda kv: -kv[1])}
        for label in proto_shares:
            originals.setdefault(label, _unlabel(label, spec))
    ordered = list(shares.items())
    record["scores"] = {k: round(v, 4) for k, v in ordered}
    if decide and not spec.presence and ordered[0][1] >= spec.decide:
        record.update(allowed=[originals[ordered[0][0]]], confident=True, decided=True)
        return record
    held = 0.0
    allowed: list[str] = []
    for label, score in ordered[: spec.max_labels]:
        allowed.append(label)
        held += score
        if held >= spec.margin:
            break
    if held >= spec.margin:
        record["allowed"] = [originals[a] for a in allowed]
        record["confident"] = len(allowed) == 1
    else:
        record["reason"] = f"no {spec.max_labels} values hold {spec.margin:.0%} of the vote"
    return record


def _voters(ranked: list[Neighbour], path: Path, spec: VoteSpec, lacks: dict[str, list[str]]
            ) -> tuple[list[tuple[Neighbour, str]], dict[str, Any]]:
    """The nearest ``spec.k`` neighbours close enough that hold one label at the path (not a left-out one),
    with each label's value."""
    voters = []
    originals: dict[str, Any] = {}
    for n in ranked:
        if n.similarity < spec.min_similarity:
            break
        found = labels_at(n.answer, path, spec.presence)
        if len(found) == 1 and found[0] not in lacks:
            originals[found[0]] = found[0] if spec.presence else values_at(n.answer, path)[0]
            voters.append((n, found[0]))
        if len(voters) >= spec.k:
            break
    return voters, originals


def _left_out(lacks: dict[str, list[str]], ranked: list[Neighbour], path: Path, spec: VoteSpec,
              found_cues: list[tuple[str, str, float]], proto: tuple[float, dict[str, float]] | None
              ) -> dict[str, list[str]]:
    """``lacks``, or none when leaving those labels out would leave no neighbour, cue or prototype to vote."""
    if not lacks:
        return lacks
    near = [n for n in ranked if n.similarity >= spec.min_similarity][: spec.k]
    kept = any(lab not in lacks for n in near for lab in labels_at(n.answer, path, spec.presence)[:1])
    kept = kept or any(c[1] not in lacks for c in found_cues)
    kept = kept or any(k not in lacks for k in (proto[1] if proto is not None and proto[0] > 0 else {}))
    return lacks if kept else {}


def _unlabel(label: str, spec: VoteSpec) -> Any:
    """A cue's label back to its value (labels of non-strings are JSON)."""
    if spec.presence:
        return label
    if label in ("true", "false", "null"):
        return json.loads(label)
    return label


def margin_of(record: dict[str, Any]) -> float:
    """How far the winner is ahead of the runner-up, in vote share (1.0: unanimous; 0: a tie or no vote)."""
    scores = list(record.get("scores", {}).values())
    if not scores:
        return 0.0
    return scores[0] - (scores[1] if len(scores) > 1 else 0.0)

