"""Label glosses: what the domain's own words say each voted label means.

A domain author describes the labels while writing the schema and the rules: "cheapest price asc, smallest
area_sqm asc" in the description of a sort, "pet for vet care of the customer's animal" in a rule. Those
words are evidence the examples may lack ("smallest" in no example question). Each clause of a voted field's
description (and of its top-level field's), and of each rule of domain.yaml that names the top-level field,
that names exactly one of the field's labels glosses that label (and the clauses after it in the same sentence, until
another label is named: "gte for at least, minimum, or more"), and so do the parentheses after a label
("house (also home, villa, bungalow)"). Every gloss joins the cue-word mining as
GLOSS_WEIGHT pseudo-examples carrying its label (votes.mine_cues), so its words become cues unless the
examples contradict them; leave-one-out on the examples then judges the cues as usual.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from .paths import Path, parent_objects, schema_nodes, schema_words, values_at
from .ranges import NumberRange, Source, number_fields, range_glosses, unit_values
from .votes import FIELD_LINES, PRESENT, _terms, asserted_terms, field_lines, label_forms, labels_at

__all__ = ["GLOSS_WEIGHT", "GlossRule", "gloss_pairs", "gloss_rules", "glossed", "presence_glosses", "label_glosses"]

GLOSS_WEIGHT = 2  # pseudo-examples per gloss: its words alone reach the two examples a cue needs
_SENTENCE = re.compile(r"[;.]\s+|:\s+|\n")
_CLAUSE = re.compile(r",\s+|[()]")
_ASIDE = re.compile(r"([\w-]+)\s*\(([^()]+)\)")  # a label and what its parentheses say of it


def _names(label: str, text: str) -> bool:
    low = text.lower()
    forms = label_forms(label)
    return any(re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", low) for f in forms if f)


def _says_more(label: str, clause: str) -> bool:
    """Whether a clause that names ``label`` has words of its own besides the label's name."""
    rest = clause.lower()
    for form in sorted(label_forms(label), key=len, reverse=True):
        rest = re.sub(rf"(?<![\w-]){re.escape(form)}(?![\w-])", " ", rest)
    return bool(re.search(r"\w", rest))


def _without_aside(labels: list[str], match: re.Match[str]) -> str:
    """A label's parentheses are its gloss already: the clauses leave them out."""
    return match.group(1) if any(_names(label, match.group(1)) for label in labels) else match.group(0)


def label_glosses(schema: dict[str, Any] | None, paths: list[Path], labels: dict[Path, list[Any]],
                  rules: list[str]) -> dict[Path, dict[str, list[str]]]:
    """Per voted field, per label, the clauses of its descriptions and rules that name only that label."""
    out: dict[Path, dict[str, list[str]]] = {}
    if schema is None:
        return out
    for path in paths:
        mine = [label for label in labels.get(path, []) if isinstance(label, str) and label.strip()]
        if len(mine) < 2:
            continue
        texts = [str(node.get("description", "")) for at in {path[:1], path} for node in schema_nodes(schema, at)]
        texts += [rule for rule in rules if _names(path[0], rule)]
        found: dict[str, list[str]] = {}
        for text in texts:
            for word, inside in _ASIDE.findall(text):  # "townhouse (also townhome, terraced or row house)"
                named = [label for label in mine if _names(label, word)]
                if len(named) == 1:
                    found.setdefault(named[0], []).append(inside.strip())
            for sentence in _SENTENCE.split(_ASIDE.sub(partial(_without_aside, mine), text)):
                current = None  # "gte for at least, minimum, or more": a list goes on glossing its label
                for clause in _CLAUSE.split(sentence):
                    named = [label for label in mine if _names(label, clause)]
                    if len(named) == 1 and clause.strip():
                        found.setdefault(named[0], []).append(clause.strip())
                    # a label alone in its clause starts no gloss: "(how many, count, average, max)" lists
                    # examples of a statistic, and "average" is no count
                    current = (named[0] if _says_more(named[0], clause) else None) if len(named) == 1 else \
                        None if named else current
                    if current is not None and not named and clause.strip():
                        found.setdefault(current, []).append(clause.strip())
        if found:
            out[path] = {label: list(dict.fromkeys(clauses)) for label, clauses in found.items()}
    return out


def gloss_pairs(glosses: dict[Path, dict[str, list[str]]]) -> list[tuple[str, Any]]:
    """The glosses as (text, answer) pseudo-examples for cue mining, GLOSS_WEIGHT of each."""
    out: list[tuple[str, Any]] = []
    for path, found in glosses.items():
        for label, clauses in found.items():
            answer: dict[str, Any] = {}
            node = answer
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = label
            out += [(clause, answer) for clause in clauses for _ in range(GLOSS_WEIGHT)]
    return out


GLOSS_RELIABLE = 0.9  # leave-one-out precision a field's gloss decisions need on the examples
GLOSS_MIN = 3  # ... over at least this many examples (its words and its default together)
WORDS_RELIABLE = 0.8  # ... and its words alone
DEFAULT_SHARE = 0.9  # the examples holding no gloss word of a field: the share one label needs to be its default
DEFAULT_MIN = 5  # ... of at least this many examples


@dataclass(frozen=True)
class GlossRule:
    """A field's gloss words decide it: a request holding words that gloss one label only ("calling" the phone
    channel; "cheapest" a sort that is set) takes that label. A word some example contradicts (it holds the
    word and carries another label) is no gloss word; so the examples, curated and reviewed, have the last
    word. ``default``: the label of a request holding no gloss word, when the examples holding none agree on
    it ("email otherwise"). Judged by leave-one-out on the examples: only a ``reliable`` rule decides."""

    path: Path
    terms: dict[str, str]  # gloss word or word pair -> the one label it glosses, no example contradicting it
    default: str | None
    decided: int  # leave-one-out: examples a gloss word decided, and how many of them it got right
    right: int
    defaulted: int = 0  # ... examples the default decided, and how many of them it got right
    default_right: int = 0
    presence: bool = False  # a nullable scalar with no vote of its own: the rule decides whether it is set
    ranges: tuple[tuple[str, Source, NumberRange], ...] = ()  # (its term, numeric field or unit, range): ranges.py
    ranks: tuple[str, ...] = ()  # ordered labels, lowest first: the highest label hit wins ("the highest level
    # any condition reaches"); empty: a request hitting two labels' words is undecided
    shaped: str | None = None  # the label of the examples written as forms ("Label: value" lines), when it is
    # not the default: such a request holding no gloss word takes it instead of the default
    decisions: tuple[tuple[int, bool], ...] = ()  # leave-one-out: (example index, right) of each word decision,
    # so the neighbours' vote can be judged on the same examples (judgement.reliability: ``gloss_leads``)

    @property
    def tiebreak(self) -> bool:
        """Its words right WORDS_RELIABLE of the time over GLOSS_MIN examples: when the neighbours' vote admits
        several labels or none, the words' label is admitted alone, even one the neighbours left out (short of
        ``reliable``, they decide no more than that; a vote for one label stands)."""
        return self.decided >= GLOSS_MIN and self.right >= WORDS_RELIABLE * self.decided

    def range_terms(self, numbers: dict[Source, Any] | None) -> set[str]:
        """The range terms a request's numbers hit (``numbers``: numeric field -> its likeliest value, unit word
        -> the numbers written with it)."""
        return {term for term, source, found in self.ranges if found.holds((numbers or {}).get(source))}

    @property
    def reliable(self) -> bool:
        """Right GLOSS_RELIABLE of the time over its words and its default together, and its words alone at least
        WORDS_RELIABLE of the time. A rule of levels never decides alone: the highest level its words reach is
        only as high as the conditions the domain's words name (a surgery they do not name reads as medium), so
        it breaks ties at most."""
        done, right = self.decided + self.defaulted, self.right + self.default_right
        return (not self.ranks and self.decided >= GLOSS_MIN and self.right >= WORDS_RELIABLE * self.decided
                and right >= GLOSS_RELIABLE * done)

    def decide(self, terms: set[str], numbers: dict[Source, Any] | None = None) -> tuple[str, list[str]] | None:
        """(label, the gloss words found; none for the default) for a request's terms (``votes._terms``; their
        singulars count too) and its numeric fields' likeliest values, or None."""
        hits: dict[str, list[str]] = {}
        names = {t for t, label in self.terms.items() if t in label_forms(label)} if not self.presence else set()
        found = singulars(terms) | inflected(terms, names) | self.range_terms(numbers)
        for term in sorted(found & self.terms.keys()):
            hits.setdefault(self.terms[term], []).append(term)
        if hits and self.ranks:
            top = max(hits, key=self.ranks.index)
            return top, hits[top]
        if len(hits) == 1:
            return next(iter(hits.items()))
        if not hits and self.shaped is not None and FIELD_LINES in terms:
            return self.shaped, [FIELD_LINES]
        if not hits and any(len(name) >= 4 and len(word) > len(name) and word.startswith(name)
                            for word in terms for name in names):
            return None  # a word built on a label's name ("condominium"): no default over it, nor a reading
        return (self.default, []) if not hits and self.default is not None else None

    def judged(self) -> dict[str, Any]:
        return {"decided": self.decided, "right": self.right, "defaulted": self.defaulted,
                "default_right": self.default_right, "default": self.default, "reliable": self.reliable}


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def inflected(terms: set[str], names: set[str]) -> set[str]:
    """The label names among ``names`` that the terms write as a verb's -ing or -ed form ("renting", "rented":
    rent; "phoned": phone; "emailed": email). Only a label's own name is read so: other gloss words in -ed and
    -ing ("referred", "listed") read as guesses broke more requests than they fixed."""
    out = set()
    for word in terms:
        for end in ("ing", "ed"):
            stem = word[: -len(end)]
            if " " not in word and word.endswith(end) and len(stem) >= 3:
                doubled = {stem[:-1]} if len(stem) > 3 and stem[-1] == stem[-2] else set()
                out |= {stem, stem + "e", *doubled} & names
    return out


def singulars(terms: set[str]) -> set[str]:
    """The terms and their singulars ("cottages": cottage), so a gloss word matches its plural and back."""
    return terms | {" ".join(map(_singular, t.split())) for t in terms}


def glossed(words: list[str], tiebreak: bool = False, leads: bool = False) -> str:
    """How a gloss decision is explained (``--explain``, the replay report)."""
    shown = "gloss words: " + ", ".join(words) if words else "no gloss word: the examples' default"
    if leads:
        return shown + ", over the neighbours' vote (right more often on the examples both decide)"
    return shown + ", breaking the neighbours' tie" if tiebreak else shown


def gloss_rules(schema: dict[str, Any] | None, specs: dict[Path, Any], labels: dict[Path, list[Any]], rules: list[str],
                examples: list[tuple[str, Any]], *, derived: set[Path] | frozenset[Path] = frozenset()
                ) -> dict[Path, GlossRule]:
    """The gloss rule of every voted field (not per clause, not in a list) that has gloss words, judged on the
    examples (``(request body, answer)``). A presence vote (an optional object) takes the glosses of the
    labels voted inside the object as glosses of its being set. So does a nullable top-level scalar that is
    neither voted nor derived (a limit, a time window, a city), from its own description and rules
    (``presence_glosses``)."""
    from .narrowing import types_of

    texts = [singulars(_terms(q)) for q, _ in examples]
    out = _presence_rules(schema, set(specs) | set(derived), rules, texts, examples)
    said = [singulars(asserted_terms(q)) for q, _ in examples]  # a label's words count where not denied
    plain = [p for p, s in specs.items() if not s.per_clause and "*" not in p]
    labels = {**labels, **{p: ["true", "false"] for p in plain if not labels.get(p) and any(
        types_of(node) - {"null"} == {"boolean"} for node in schema_nodes(schema or {}, p))}}  # "true when ..."
    found = label_glosses(schema, [p for p in plain if not specs[p].presence], labels, rules)
    fields = number_fields(schema)
    fields_named = {n for n in schema_words(schema, labels=False) if "_" in n}
    forms = [field_lines(q) for q, _ in examples]
    property_words = {w for n in schema_words(schema, labels=False) for w in re.split(r"[\W_]+", n.lower()) if w}
    for path in plain:
        presence = bool(specs[path].presence)
        inner = [p for p in plain if len(p) > len(path) and p[: len(path)] == path and always_set(schema, path, p)
                 ] if presence else [path]
        # a presence vote's gloss words name no property ("a limit, not an aggregate"; "count has field null")
        unnamed = (property_words | _LITERALS) - set(path) if presence else set()
        names = {form for p in inner for label in labels.get(p, []) if isinstance(label, str)
                 for form in label_forms(label)}
        parts = {w for name in names for w in re.split(r"[\s_-]+", name)} if presence else names
        # "price" in "cheapest price asc" glosses no label (nor, for a presence vote, "area" of area_sqm whether
        # the object is set); a label's own name glosses that label
        pairs = [(term, PRESENT if presence else label) for p in inner
                 for label, clauses in found.get(p, {}).items() for clause in clauses
                 for term in singulars(_terms(affirmed(clause, fields_named)))
                 if ((term in names and not presence) or not (parts & {term, *term.split()}))
                 and not unnamed & set(term.split())]
        candidates = _one_label(pairs)
        if not presence:  # a label's own name glosses it, though another label's clause uses it ("row house")
            glossing = {term for term, _ in pairs}
            candidates |= {form: label for label in labels.get(path, []) if isinstance(label, str)
                           for form in label_forms(label) if form in glossing}
        about = [] if presence else range_glosses(found.get(path, {}), fields, path)
        ranges = tuple((f"{'/'.join(source)} {span.shown}" if isinstance(source, tuple) else f"{span.shown} {source}",
                        source, span) for source, span, _ in about)
        candidates |= _one_label((term, label) for (term, _, _), (_, _, label) in zip(ranges, about, strict=True))
        if not candidates:
            continue
        base = texts if presence else [text | inflected(text, names & candidates.keys()) for text in said]
        hit = [base[i] | {t for t, source, r in ranges if r.holds(
            next(iter(values_at(a, source)), None) if isinstance(source, tuple) else unit_values(q, source))}
               for i, (q, a) in enumerate(examples)] if ranges else base
        truths = [labels_at(a, path, presence) for _, a in examples]
        ordered = [str(v) for v in labels.get(path, []) if isinstance(v, str)] if _ranked(schema, path, rules) else []
        declared = None if presence else declared_default(found.get(path, {}))
        rule = max((_judge_rule(path, candidates, hit, truths, ranks, forms=forms, measured={t for t, _, _ in ranges},
                                declared=declared)
                    for ranks in
                    ((), *((tuple(ordered), tuple(ordered[::-1])) if len(ordered) >= 3 and not presence else ()))),
                   key=lambda r: (r.tiebreak, 2 * r.right + r.default_right - r.decided))
        out[path] = replace(rule, ranges=tuple(r for r in ranges if r[0] in rule.terms),
                            shaped=rule.shaped or _shaped(rule, examples, truths))
    return out


_LITERALS = frozenset({"null", "true", "false"})


def always_set(schema: dict[str, Any] | None, path: Path, inner: Path) -> bool:
    """Whether ``inner`` (below ``path``) is required and never null wherever the object at ``path`` is set: a
    statistic's ``func``, not its ``field`` or ``group_by`` (what it measures, or groups by, is there only with
    some). Only such a field's glosses say that the object is asked for ("how many"), where "took" or "payload
    size" also describe a plain list of log lines."""
    from .narrowing import nullable

    for i in range(len(path), len(inner)):
        parents = parent_objects(schema or {}, inner[: i + 1])
        # an object that lists no required keys at all says nothing of them: its nullable ones are the optional
        if not parents or any((isinstance(p.get("required"), list) and inner[i] not in p["required"])
                              or nullable(p["properties"][inner[i]]) for p in parents):
            return False
    return True


def declared_default(clauses: dict[str, list[str]]) -> str | None:
    """The one label whose clauses say it holds when the question says nothing of the field ("buy when the
    question says neither"); None when no label's or several labels' do."""
    found = {label for label, said in clauses.items() if any(_ABSENCE.search(c) for c in said)}
    return next(iter(found)) if len(found) == 1 else None


def _shaped(rule: GlossRule, examples: list[tuple[str, Any]], truths: list[list[str]]) -> str | None:
    """The one label (not the default) that the examples written as forms carry: at least 2, 90% of them."""
    if rule.default is None or rule.presence:
        return None
    found = Counter(t[0] for (q, _), t in zip(examples, truths, strict=True) if len(t) == 1 and field_lines(q))
    if not found:
        return None
    label, count = found.most_common(1)[0]
    return label if count >= 2 and count >= DEFAULT_SHARE * sum(found.values()) and label != rule.default else None


_RANKED = re.compile(r"\b(?:highest|lowest|maximum|minimum|worst|(?:most|least) (?:severe|serious|urgent|important))\b",
                     re.I)  # not a bare "most" or "best": "most recent first" is a sort, not a level


def _ranked(schema: dict[str, Any] | None, path: Path, rules: list[str]) -> bool:
    """Whether the field's words say its labels are levels, the highest (or lowest) one reached winning
    ("the highest level any condition reaches"); the examples then judge either order against none."""
    texts = [str(node.get("description", "")) for node in schema_nodes(schema or {}, path)]
    return any(_RANKED.search(t) for t in texts + [r for r in rules if _names(path[-1], r)])


_NEGATED = re.compile(r"\b(?:without|not|no|never|except|excluding|unless)\b.*", re.I | re.S)
# "buy when the question says neither", "apartment when no type is named": a condition of absence, which glosses
# nothing (its words are about the question, not the label) and declares the label the field's default; a
# condition joined to another ("when the customer praises or thanks and complains of nothing") is no absence
_ABSENCE = re.compile(r"\b(?:when|if)\b(?:(?!\b(?:and|or|but)\b)[^,;:])*?\b(?:no|neither|none|nothing|nor)\b.*",
                      re.I | re.S)


_IDENTIFIER = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", re.I)


def affirmed(clause: str, fields: frozenset[str] | set[str] = frozenset()) -> str:
    """A clause without its negated tail ("a person hurt without hospital care" glosses its label by "person
    hurt", not by "hospital": a request that names a hospital is the very case the clause leaves out), and
    without a condition of absence ("buy when the question says neither" glosses buy by its name only), and
    without the snake_case field names it writes ("injury_reported is true when ...": a field's name is no
    evidence; a label's, such as web_form, is)."""
    kept = _NEGATED.sub("", _ABSENCE.sub("", clause))
    return _IDENTIFIER.sub(lambda m: " " if m.group(0) in fields else m.group(0), kept)



_LEVELS = frozenset({"none", "minor", "low", "normal", "medium", "moderate", "mild", "high", "major", "severe",
                     "critical", "urgent", "blocker", "trivial", "p0", "p1", "p2", "p3", "p4"})
_DEFAULTING = re.compile(r"\b(?:otherwise|by default|unless|(?:when|if) (?:no|neither|none|nothing)\b)", re.I)


def label_kinds(glosses: dict[Path, dict[str, list[str]]], rules: dict[Path, GlossRule]) -> set[Path]:
    """The voted fields whose labels are kinds: a request that says nothing about the field has no label of its
    own. Not a field whose examples show a default, whose labels are levels, or whose words give one label to a
    request that names none ("apartment when no type is named", "otherwise low"): there, what a model answers
    for an empty request is that label, no lean to divide out (request/calibration.py)."""
    out = set()
    for path, by_label in glosses.items():
        rule = rules.get(path)
        if rule is not None and (rule.default is not None or rule.ranks):
            continue
        if len({label.lower() for label in by_label} & _LEVELS) >= 2:  # "low", "high": levels by their names
            continue
        if not any(_DEFAULTING.search(clause) for clauses in by_label.values() for clause in clauses):
            out.add(path)
    return out


_NULL_CLAUSE = re.compile(r"\b(?:null|none|otherwise)\b", re.I)
_NEGATION = re.compile(r"\b(?:never|not|no)\b", re.I)


def presence_glosses(schema: dict[str, Any] | None, rules: list[str], skip: set[Path]
                     ) -> dict[Path, list[tuple[str, str]]]:
    """Per nullable top-level scalar field not in ``skip``: (clause, "set" or "null") for each clause of its
    description and of the rules that name it; a clause saying null, none or otherwise glosses its being null
    ("null when the question sets no time window"), any other its being set ("yesterday or the last day 1").
    A sentence that negates (never, not, no) without saying null speaks of what the values are not ("years,
    dates, ages or reference numbers are never amounts"): its words gloss neither."""
    from .narrowing import nullable, types_of

    out: dict[Path, list[tuple[str, str]]] = {}
    for name, node in ((schema or {}).get("properties") or {}).items():
        if (name,) in skip or not isinstance(node, dict) or not nullable(node) or types_of(node) & {"object", "array"}:
            continue
        if not types_of(node) - {"null"} and not [v for v in node.get("enum") or [] if v is not None]:
            continue
        texts = [str(node.get("description", "")), *(rule for rule in rules if _names(name, rule))]
        clauses = [c.strip() for text in texts for sentence in _SENTENCE.split(text) for c in _CLAUSE.split(sentence)
                   if _NULL_CLAUSE.search(sentence) or not _NEGATION.search(sentence)]
        found = [(c, "null" if _NULL_CLAUSE.search(c) else "set") for c in clauses if c]
        if found:
            out[(name,)] = found
    return out


def _one_label(pairs: Any) -> dict[str, str]:
    """``{term: label}`` of the (term, label) pairs whose term glosses one label only."""
    labels: dict[str, set[str]] = {}
    for term, label in pairs:
        labels.setdefault(term, set()).add(label)
    return {t: next(iter(found)) for t, found in labels.items() if len(found) == 1}


def _presence_rules(schema: dict[str, Any] | None, skip: set[Path], rules: list[str], texts: list[set[str]],
                    examples: list[tuple[str, Any]]) -> dict[Path, GlossRule]:
    out: dict[Path, GlossRule] = {}
    for path, clauses in presence_glosses(schema, rules, skip).items():
        candidates = _one_label((term, label) for clause, label in clauses for term in singulars(_terms(clause)))
        if candidates:
            rule = _judge_rule(path, candidates, texts, [labels_at(a, path, True) for _, a in examples])
            out[path] = replace(rule, presence=True)
    return out


def _judge_rule(path: Path, candidates: dict[str, str], texts: list[set[str]], found: list[list[str]],
                ranks: tuple[str, ...] = (), *, forms: list[bool] | None = None,
                measured: set[str] | frozenset[str] = frozenset(), declared: str | None = None) -> GlossRule:
    """The rule judged with each example left out in turn: its own contradictions and its own vote for the
    default do not count. A word an example holding it contradicts is dropped: the example carries another
    label, or with ``ranks`` a lower one (a lower level's words may well be there too). ``forms``: which
    examples are written as forms ("Label: value" lines); when the examples holding no gloss word agree on no
    default together, the forms among them may take a label of their own (``shaped``) and the rest the
    default, each judged on its own examples: reviewed forms must not cost the plain messages their default.
    ``measured``: the range terms, which hold on an example's true value of another field; a request has only a
    guess of that value, so a decision they take part in is left out of ``decisions`` (the rule against the
    neighbours is judged on its words alone). ``declared``: the default the field's words declare
    (``declared_default``); it is the rule's default when the examples learn none and no more than a tenth of
    those holding no gloss word carry another label (none hold none where every example names its label)."""
    truths = [labels[0] if len(labels) == 1 else None for labels in found]
    if ranks and any(t is not None and t not in ranks for t in truths):
        ranks = ()

    def contradicts(label: str, truth: str) -> bool:
        return ranks.index(label) > ranks.index(truth) if ranks and label in ranks else label != truth

    against: dict[str, int] = {}
    for text, truth in zip(texts, truths, strict=True):
        for term in text & candidates.keys():
            if truth is not None and contradicts(candidates[term], truth):
                against[term] = against.get(term, 0) + 1
    terms = {t: label for t, label in candidates.items() if not against.get(t)}
    shapes = forms or [False] * len(texts)
    unhit = {shape: Counter(truth for text, truth, form in zip(texts, truths, shapes, strict=True)
                            if truth is not None and form == shape and not text & terms.keys())
             for shape in (False, True)}
    unhit_all = unhit[False] + unhit[True]
    split = _default(unhit_all) is None and _split_defaults(unhit[False], unhit[True]) is not None
    decided = right = defaulted = default_right = 0
    decisions: list[tuple[int, bool]] = []
    for index, (text, truth, form) in enumerate(zip(texts, truths, shapes, strict=True)):
        if truth is None:
            continue
        own = {t: label for t, label in candidates.items()
               if t in text and against.get(t, 0) == contradicts(label, truth)}  # contradicted by this example alone
        hits = {label for t, label in {**terms, **own}.items() if t in text}
        if len(hits) == 1 or (hits and ranks and hits <= set(ranks)):
            decided += 1
            ok = max(hits, key=ranks.index) == truth if ranks else hits == {truth}
            right += ok
            if not text & measured:
                decisions.append((index, ok))
        elif not hits:
            if split:
                left = {shape: unhit[shape] - Counter({truth: 1} if shape == form else {}) for shape in unhit}
                default = (_split_defaults(left[False], left[True]) or (None, None))[form]
            else:
                default = _default(unhit_all - Counter({truth: 1}))
            if default is not None:
                defaulted += 1
                default_right += default == truth
    both = _split_defaults(unhit[False], unhit[True]) if split else None
    default, shaped = both if both is not None else (_default(unhit_all), None)
    if default is not None and defaulted and default_right >= GLOSS_RELIABLE * defaulted:
        return GlossRule(path, terms, default, decided, right, defaulted, default_right, ranks=ranks, shaped=shaped,
                         decisions=tuple(decisions))
    if declared is not None and unhit_all[declared] >= DEFAULT_SHARE * sum(unhit_all.values()):
        return GlossRule(path, terms, declared, decided, right, sum(unhit_all.values()), unhit_all[declared],
                         ranks=ranks, decisions=tuple(decisions))
    return GlossRule(path, terms, None, decided, right, ranks=ranks, decisions=tuple(decisions))


def _split_defaults(plain: Counter[str], shaped: Counter[str]) -> tuple[str, str] | None:
    """(the plain examples' default, the forms' label) when each agrees on its own label and they differ."""
    default = _default(plain)
    if default is None or sum(shaped.values()) < 2:
        return None
    label, count = shaped.most_common(1)[0]
    return (default, label) if label != default and count >= DEFAULT_SHARE * sum(shaped.values()) else None


def _default(unhit: Counter[str]) -> str | None:
    total = sum(unhit.values())
    if total < DEFAULT_MIN:
        return None
    label, count = unhit.most_common(1)[0]
    return label if count >= DEFAULT_SHARE * total else None
