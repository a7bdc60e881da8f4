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
from functools import partial
from typing import Any

from .paths import Path, schema_nodes

__all__ = ["GLOSS_WEIGHT", "gloss_pairs", "label_glosses"]

GLOSS_WEIGHT = 2  # pseudo-examples per gloss: its words alone reach the two examples a cue needs
_SENTENCE = re.compile(r"[;.]\s+|:\s+|\n")
_CLAUSE = re.compile(r",\s+|[()]")
_ASIDE = re.compile(r"([\w-]+)\s*\(([^()]+)\)")  # a label and what its parentheses say of it


def _names(label: str, text: str) -> bool:
    low = text.lower()
    forms = {label.lower(), label.lower().replace("_", " ")}
    return any(re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", low) for f in forms if f)


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
                    current = named[0] if len(named) == 1 else None if named else current
                    if current is not None and clause.strip():
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
