"""Named values: a word value written beside a word that names its label ("host pay-01", "service
token-refresher", "region eu-central-1", "the checkout service").

A list item of a union shape that takes a word of the request as its value (``x-ground: words``) and says
with an enum which kind of value it is (``field: service | host | region ...``) leaves a small model to pair
each word with its kind, and it mixes them up: "excluding host pay-01" becomes a service. The words beside a
value say its kind, and the examples show which words do:

- every value of such an item in an example question is a labelled mention; the word just before it and
  the word just after it (``L:host``, ``R:service``) count for its label;
- every other word of the question counts for ``none`` beside its words, so a word that stands before
  anything ("the", "in", "for") never names a label, however many values it also stands before;
- a label's own name words ("user" and "id" of ``user_id``) count as seen twice on each side, so a kind the
  examples never wrote beside a value is still read where the request writes it.

A word names a label when at least 2 mentions carry it and at least NAMED_SHARE of all mentions beside it are
of that label. In a request, a grounded value with such a word beside it (and no word naming another label)
is admitted only as an item of that label: the item's shape splits into one branch per named label, holding
only its values, and one branch for the rest. Nothing forces a value into the list; the model still chooses
which items there are.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .annotations import annotated_paths, own_objects, own_values
from .paths import Path, schema_words
from .request_words import Text, spread_to_joined, tokens, words_of
from .used_values import USED_MIN, USED_SHARE
from .sure_items import learn_order
from .implied_labels import learn_implied
from .leftover_numbers import learn_leftover
from .likeness import Likeness, learn_likeness
from .number_labels import learn_number_labels
from .value_phrases import learn_value_phrases
from .word_shapes import word_shapes

__all__ = ["NAMED_SHARE", "NamedBank", "evidenced", "learn_named", "learn_words", "unnamed"]

NAMED_SHARE = 0.75  # of the mentions beside a word, the share that must be of one label
NAMED_MIN = 2  # mentions of that label beside the word
SEED = 2  # a label's own name words, as if seen this often beside its values on each side
EVIDENCE_MIN = 8  # example values before "every value carries evidence" is learnt
EVIDENCE_SHARE = 0.9  # of them that must
FORM_MIN = 3  # example values of one form and label before the form names that label
FORM_SHARE = 0.8  # of the examples' values of that form, the share of that label (a form is a weaker mark than a word)


def _beside(tokens: list[tuple[str, int, int]], span: tuple[int, int]) -> list[str]:
    out = []
    if span[0] > 0:
        out.append("L:" + tokens[span[0] - 1][0].lower())
    if span[1] < len(tokens):
        out.append("R:" + tokens[span[1]][0].lower())
    return out


@dataclass
class NamedBank:
    """For one item shape: which enum key names the kind (``label``), which key holds the word (``value``),
    and the words that name a label beside a value."""

    label: str
    value: str
    names: dict[str, str] = field(default_factory=dict)  # "L:host" -> "host"
    evidenced: bool = False  # the examples' values are (nearly) all named, identifiers or quoted: others are not
    forms: dict[str, str] = field(default_factory=dict)  # a value's form ("a-a") -> the one label it has taken
    marked: frozenset[str] = frozenset()  # labels whose values carry a mark of their own: an unmarked word is none
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # for --explain and the tests
    like: Likeness | None = None  # the examples' identifier values by label: a value like one label's is of it
    used: tuple[int, int] | None = None  # (seen, used): the examples always give their identifiers an item
    vocabulary: frozenset[str] = frozenset()  # the schema's own words: "info-level" is no identifier of a value
    _last: tuple[Any, dict[str, str]] | None = field(default=None, repr=False, compare=False)
    _text: Text | None = field(default=None, repr=False, compare=False)

    def labelled(self, body: str, values: list[Any]) -> dict[str, str]:
        """The grounded ``values`` that a naming word stands beside in ``body``, each with its one label (a
        value beside words naming two labels gets none). A naming word between two values names both:
        which side it names differs from word to word ("host pay-01", "the checkout service") and the
        examples are too few to tell, and the wrong one ("excluding" in "excluding host pay-01") is no
        value the model writes."""
        key = (body, tuple(v for v in values if isinstance(v, str)))
        if self._last is not None and self._last[0] == key:
            return dict(self._last[1])
        text = self._text = Text(body)
        tokens = text.tokens
        out: dict[str, str] = {}
        spans = {v: text.spans(v) for v in key[1]}
        torn = set()  # beside words naming two labels: left to the model
        for value, found in spans.items():
            named = {self.names[w] for span in found for w in _beside(tokens, span) if w in self.names}
            named = named or {self.names[w] for span in found for w in _form_key(text, span) if w in self.names}
            if len(named) == 1:
                out[value] = named.pop()
            elif named:
                torn.add(value)
        # a value joined to a named one ("host pay-01 and pay-04", "users 3318, 3319, 3320") is of its label too
        spread_to_joined(text, spans, out)
        for value in [v for v in out if " " in v and not quoted(v, body) and any(  # "excluding the mailer" of
                o != v and out[o] == out[v] and _within(spans[o], spans[v]) for o in out)]:  # "the mailer service"
            del out[value]
        for value in [v for v, label in out.items() if label in self.marked and not evidenced(v, body)]:
            del out[value]  # "per region yesterday": a region is written like one
        for value in spans:  # no word names it: a form only one label's values take ("pdf-renderer", quoted)
            form = form_of(value, body)
            if value not in out and value not in torn and (" " not in value or form == QUOTED) and (
                    label := self.forms.get(form)):
                out[value] = label
            elif value not in out and value not in torn and (label := self._alike(value, body)):
                out[value] = label  # nor a form: like one label's example values ("us-east-1" beside "eu-west-1")
        self._last = (key, dict(out))  # sure() and split() ask for the same request's values in turn
        return out

    def _alike(self, value: str, body: str) -> str | None:
        """The label whose example values ``value`` is like (likeness.py), where the likeness proved itself on
        the examples, for a value ``comparable`` by its look."""
        if self.like is None or not self.like.trusted or not comparable(value, body):
            return None
        return self.like.label_of(value)

    def sure(self, body: str, values: list[Any]) -> list[str]:
        """The values surely items: one token written like an identifier (or quoted) right after a word that
        names its label ("host pay-01", "region eu-central-1", "user 55102"), right before one the examples
        taught ("the fraud-scorer service"), or with digits and typed by its form, one that only that label's
        values take ("on web-07": ``a-9``; a hyphenated word, "sign-in", is no identifier), or by its likeness
        to that label's values ("in ap-southeast-2", like "eu-west-1"), or one of that label's example values
        itself ("stripe-gateway errors"); and, where the examples give every identifier they write an item
        (``used``), any identifier with a digit or a mark other than a hyphen, its label left open. On log_query's
        dev, fresh, fresh2 and fresh3 rows (120), every value named so was an item's."""
        named = self.labelled(body, values)
        text = self._text if self._text is not None and self._text.body == body else Text(body)
        # where the examples give every identifier they write an item, every one the request writes is one (with
        # a digit or a mark other than a hyphen: "sign-in", "double-charged" are words)
        used = [v for v in values if self.used and isinstance(v, str) and self.identifier(v, body)
                and _NOT_A_WORD.search(v)]
        return used + [v for v in named if v not in used and " " not in v and evidenced(v, body) and (any(
            (start > 0 and "L:" + text.low[start - 1] in self.names)
            or (end < len(text.low) and self._taught("R:" + text.low[end])) for start, end in text.spans(v))
            or ("9" in form_of(v, body) and named[v] in (self.forms.get(form_of(v, body)), self._alike(v, body)))
            or (self.like is not None and self.like.known(v) == named[v]))]

    def identifier(self, value: str, body: str) -> bool:
        """A value ``comparable`` by its look that is not made of the schema's own words ("info-level",
        "user_id")."""
        low = value.lower()
        return comparable(value, body) and low not in self.vocabulary and not set(re.split(r"[-_.@:]+", low)) <= \
            self.vocabulary

    def _taught(self, word: str) -> bool:
        """A naming word after its value that the examples wrote so (NAMED_MIN times; "the billing service"),
        not only a label's own name: "info-level messages" are no message."""
        return word in self.names and self.counts.get(word, {}).get(self.names[word], 0) >= NAMED_MIN

    def naming_spans(self, body: str) -> list[tuple[int, int]]:
        """Where ``body`` writes a naming word right beside a token written like an identifier that it names
        ("host pg-primary-1", "the fraud-scorer service"): the word says which kind of value that is, and asks
        for nothing else (no "per host")."""
        text = Text(body)
        out = []
        for i, (token, _, _) in enumerate(text.tokens):
            if _IDENTIFIER.search(token) is None:
                continue
            # a number before a word counts what the word names ("top 3 hosts"); after it, it is its value
            sides = ((i - 1, "L:"),) if token.isdigit() else ((i - 1, "L:"), (i + 1, "R:"))
            for j, side in sides:
                if 0 <= j < len(text.tokens) and side + text.low[j] in self.names:
                    out.append(text.tokens[j][1:])
        return out

    def split(self, union: list[Any], holder: dict[str, Any], body: str) -> tuple[list[str], int, bool]:
        """Replace ``holder`` (a grounded item shape in ``union``, its value node an enum of the request's words)
        by one branch per label named beside its values in ``body``, holding only that label and its values,
        and a branch for the other values; where the examples' values all carry evidence (``evidenced``),
        only those others that do. Returns the labels split off, how many values were left out, and whether
        none is left where this was the union's only shape (the union is unchanged: the list takes no item)."""
        props = holder.get("properties") or {}
        value_node, label_node = props.get(self.value), props.get(self.label)
        if not (isinstance(value_node, dict) and isinstance(label_node, dict)
                and isinstance(value_node.get("enum"), list) and isinstance(label_node.get("enum"), list)):
            return [], 0, False
        named = self.labelled(body, value_node["enum"])
        by_label: dict[str, list[Any]] = {}
        for value in value_node["enum"]:
            if value in named and named[value] in label_node["enum"]:
                by_label.setdefault(named[value], []).append(value)
        rest = [v for v in value_node["enum"] if not any(v in vals for vals in by_label.values())]
        # a phrase around a named value or a naming word ("excluding host pay-01"), or a word another shape's
        # value holds ("api/v1/orders" of the path "/api/v1/orders"), is none
        others = [words_of(v) for b in union if b is not holder for v in _enum_at(b, self.value)
                  if isinstance(v, str)] + [words_of(v) for v in named if " " not in v]
        # a number another shape takes is that shape's, written plain or as a plural ("499", "403s")
        numbers = {form for b in union if b is not holder for v in _enum_at(b, self.value)
                   if isinstance(v, int | float) and not isinstance(v, bool) for form in (f"{v}", f"{v}s")}
        naming = {w[2:] for w in self.names}
        others += [(form,) for form in numbers]
        # a phrase around an identifier ("customer cus_77120", "usr-90d1 containing") is none: an identifier is
        # a whole value (a quoted phrase stays: "S3 PutObject")
        marked = [words_of(v) for v in rest if isinstance(v, str) and " " not in v and _IDENTIFIER.search(v)]
        kept = [v for v in rest if not (isinstance(v, str) and _spans_other(words_of(v), others, naming))
                and not (isinstance(v, str) and " " in v and not quoted(v, body)
                         and _spans_other(words_of(v), marked, set()))
                and (not self.evidenced or evidenced(v, body))]
        if not by_label and len(kept) == len(rest):
            return [], 0, False
        if not by_label and not kept and len(union) < 2:
            return [], len(rest), True
        branches = []
        for label, values in by_label.items():
            branch = copy.deepcopy(holder)
            branch["properties"][self.label] = {**label_node, "enum": [label]}
            branch["properties"][self.value] = {**value_node, "enum": values}
            branches.append(branch)
        if kept:
            holder["properties"][self.value] = {**value_node, "enum": kept}
            branches.append(holder)
        at = next(i for i, b in enumerate(union) if b is holder)
        union[at:at + 1] = branches
        _named_numbers(union, branches, self.value, {v for vals in by_label.values() for v in vals})
        return list(by_label), len(rest) - len(kept), False


def _within(inner: list[tuple[int, int]], outer: list[tuple[int, int]]) -> bool:
    """Whether a span of ``inner`` lies within one of ``outer`` (token index ranges)."""
    return any(a <= c and d <= b for c, d in inner for a, b in outer)


_KEY = re.compile(r"[ \t]*([^\W\d_][\w \t-]{0,40}?)[ \t]*:[ \t]*")


def _form_key(text: Text, span: tuple[int, int]) -> list[str]:
    """The words of a form line's label ("L:message", "L:contains" of "Message contains: replication lag") where
    the value at ``span`` (token indexes) is that line's whole value."""
    body, toks = text.body, text.tokens
    start, end = toks[span[0]][1], toks[span[1] - 1][2]
    line = body.rfind("\n", 0, start) + 1
    key = _KEY.fullmatch(body, line, start)
    if key is None or body[end:].split("\n", 1)[0].strip(" \t.,;\"'"):
        return []
    return ["L:" + w for w in words_of(key.group(1))]


def _named_numbers(union: list[Any], mine: list[Any], key: str, named: set[Any]) -> None:
    """A number a word names as this shape's value ("user 5519023") is no other shape's number: the other
    branches of ``union`` no longer admit it, and one left with none is taken out."""
    taken = {float(v) for v in named if isinstance(v, str) and re.fullmatch(r"\d+(?:\.\d+)?", v)}
    if not taken:
        return
    for branch in [b for b in union if not any(b is m for m in mine)]:
        node = (branch.get("properties") or {}).get(key) if isinstance(branch, dict) else None
        enum = node.get("enum") if isinstance(node, dict) else None
        if not isinstance(enum, list) or not any(_number(v) in taken for v in enum):
            continue
        kept = [v for v in enum if _number(v) not in taken]
        if kept:
            node["enum"] = kept
        elif len(union) > 1:
            del union[next(i for i, b in enumerate(union) if b is branch)]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _enum_at(branch: Any, key: str) -> list[Any]:
    node = (branch.get("properties") or {}).get(key) if isinstance(branch, dict) else None
    return node.get("enum") or [] if isinstance(node, dict) else []


def _spans_other(words: tuple[str, ...], others: list[tuple[str, ...]], naming: set[str]) -> bool:
    """Whether a candidate's words hold, or lie within, another value's words, or (a phrase) hold a naming
    word."""
    if len(words) > 1 and naming & set(words):
        return True
    for other in filter(None, others):
        small, big = sorted((other, words), key=len)
        if any(big[i:i + len(small)] == small for i in range(len(big) - len(small) + 1)):
            return True
    return False


_IDENTIFIER = re.compile(r"[\d_./@:-]|[a-z][A-Z]")  # "web-03", "u_48213", "eu-west-1", "NullPointerException"
_MARKED = re.compile(r"[-_.@:]")  # an identifier's joining marks: the values likeness.py compares
_NOT_A_WORD = re.compile(r"[\d_.@:]")  # what a hyphenated English word ("sign-in") never holds
_QUOTES = "\"'“”‘’`"
QUOTED = "<quoted>"  # the form of a value quoted in the request ("contains 'card declined'")


def unnamed(body: str, banks: Any) -> str:
    """``body`` with the naming words beside its identifiers blanked (NamedBank.naming_spans), for reading which
    label the request itself names for another field: "max duration on host pg-1" names no group_by host."""
    spans = sorted({span for bank in banks for span in bank.naming_spans(body)})
    for start, end in reversed(spans):
        body = body[:start] + " " * (end - start) + body[end:]
    return body


def comparable(value: str, body: str) -> bool:
    """Whether a value's look says its kind (likeness.py): one unquoted token written like an identifier with a
    joining mark ("us-east-1", "u_5521"; not "502s", "p95" or a path's words)."""
    return " " not in value and _MARKED.search(value) is not None and "/" not in value and not quoted(value, body)


def quoted(value: str, body: str) -> bool:
    return re.search(f"[{_QUOTES}]\\s*{re.escape(value)}\\s*[{_QUOTES}]", body, re.I) is not None


def evidenced(value: Any, body: str) -> bool:
    """A word value with a mark of one: written like an identifier, or quoted in the request."""
    if not isinstance(value, str):
        return True
    return _IDENTIFIER.search(value) is not None or quoted(value, body)


def form_of(value: str, body: str = "") -> str:
    """A value's form: letters as ``a``, digits as ``9``, marks kept ("web-03" and "db-7" are ``a-9``); a value
    quoted in ``body`` is QUOTED, whatever its words."""
    if body and quoted(value, body):
        return QUOTED
    return re.sub(r"\d+", "9", re.sub(r"[^\W\d_]+", "a", value))


def _forms(values: list[tuple[str, Any, str]]) -> dict[str, str]:
    """The forms with a mark (not a plain word's ``a`` or a number's ``9``; quotes are one) that FORM_MIN or
    more of the examples' values (``(value, label, request body)``) of one label take, and FORM_SHARE of all
    their values of that form: one odd value ("db-analytics" a host among services) does not unlearn a form
    as reviewed answers add up."""
    seen: dict[str, Counter[str]] = {}
    for value, label, body in values:
        form = form_of(value, body)
        if " " not in value or form == QUOTED:
            seen.setdefault(form, Counter())[str(label)] += 1
    return {form: label for form, c in seen.items() for label, n in c.most_common(1)
            if n >= FORM_MIN and n >= FORM_SHARE * sum(c.values()) and re.search(r"[^a9]", form)}


def _marked(values: list[tuple[str, Any, str]]) -> frozenset[str]:
    """The labels whose example values (``(value, label, request body)``) nearly all carry a mark of their own
    (written like an identifier, or quoted): NAMED_MIN or more, EVIDENCE_SHARE of them. A region is
    "eu-west-1", never "yesterday"; a service may be "checkout"."""
    seen: dict[str, list[bool]] = {}
    for value, label, body in values:
        seen.setdefault(str(label), []).append(evidenced(value, body))
    return frozenset(label for label, marks in seen.items()
                     if len(marks) >= NAMED_MIN and sum(marks) >= EVIDENCE_SHARE * len(marks))


def _label_key(holder: dict[str, Any], value_key: str) -> tuple[str, list[str]] | None:
    for key, node in (holder.get("properties") or {}).items():
        enum = node.get("enum") if isinstance(node, dict) else None
        if key != value_key and isinstance(enum, list) and len(enum) > 1 and all(isinstance(v, str) for v in enum):
            return key, enum
    return None


def learn_named(found: list[Any], pairs: list[tuple[str, Any]], vocabulary: frozenset[str] = frozenset()
                ) -> dict[Path, NamedBank]:
    """Per word-grounded item path of ``found`` (annotations.Annotated) whose holder has a string enum key,
    the naming words learnt from ``pairs`` (request body, answer), and whether the examples always give the
    identifiers their questions write an item (``used``; ``vocabulary``: the schema's own words)."""
    out: dict[Path, NamedBank] = {}
    for item in found:
        if item.holder is None or "*" not in item.path or item.path in out:
            continue
        labelled = _label_key(item.holder, item.path[-1])
        if labelled is None:
            continue
        key, labels = labelled
        counts: dict[str, Counter[str]] = {}
        objects = own_objects([item], [a for _, a in pairs])
        for (body, _), items in zip(pairs, objects, strict=True):
            _count(body, [(o.get(item.path[-1]), o.get(key)) for o in items if o.get(key) in labels], counts)
        names = _names(counts, _seeds(labels))
        if names:
            bank = NamedBank(key, item.path[-1], names, counts={w: dict(c) for w, c in counts.items()})
            marks = [bank.labelled(body, [v]).get(v) is not None or evidenced(v, body) for (body, _), items
                     in zip(pairs, objects, strict=True) for o in items if isinstance(v := o.get(item.path[-1]), str)]
            bank.evidenced = len(marks) >= EVIDENCE_MIN and sum(marks) >= EVIDENCE_SHARE * len(marks)
            bank.forms = _forms([(v, o.get(key), body) for (body, _), items in zip(pairs, objects, strict=True)
                                 for o in items if isinstance(v := o.get(item.path[-1]), str)])
            bank.like = learn_likeness([(v, str(o.get(key))) for (body, _), items in zip(pairs, objects, strict=True)
                                        for o in items if isinstance(v := o.get(item.path[-1]), str)
                                        and comparable(v, body)])
            bank.vocabulary = vocabulary
            bank.used = _used([(body, {str(o.get(item.path[-1])).casefold() for o in items}) for (body, _), items
                               in zip(pairs, objects, strict=True)], bank)
            bank.marked = _marked([(v, o.get(key), body) for (body, _), items in zip(pairs, objects, strict=True)
                                   for o in items if isinstance(v := o.get(item.path[-1]), str)])
            out[item.path] = bank
    return out


def _used(pairs: list[tuple[str, set[str]]], bank: NamedBank) -> tuple[int, int] | None:
    """(seen, used) where at least USED_MIN example questions write identifiers (``NamedBank.identifier``) and
    USED_SHARE of them give every one an item (``pairs``: request body, its items' values), else None."""
    seen = used = 0
    for body, given in pairs:
        found = [t for t, _, _ in tokens(body) if bank.identifier(t, body)]
        if found:
            seen += 1
            used += all(t.casefold() in given for t in found)
    return (seen, used) if seen >= USED_MIN and used >= USED_SHARE * seen else None


def _seeds(labels: list[str]) -> dict[str, str]:
    """A label's own name words and their plurals, on each side ("L:user", "L:users", "R:id" for ``user_id``);
    a word two labels share is none's."""
    seen: dict[str, set[str]] = {}
    for label in labels:
        for word in filter(None, re.split(r"[\W_]+", label.lower())):
            for side in ("L:", "R:"):
                for form in {word, word + "s"}:  # "host", "hosts"
                    seen.setdefault(side + form, set()).add(label)
    return {word: next(iter(owners)) for word, owners in seen.items() if len(owners) == 1}


def _count(body: str, items: list[tuple[Any, str]], counts: dict[str, Counter[str]]) -> None:
    """The words beside each item's value in ``body`` count for its label; those beside any other word count
    for none (counting only the words a value could be let "the" name a service from 7 values and 3 others)."""
    text = Text(body)
    tokens = text.tokens
    taken: set[int] = set()
    for value, label in items:
        for span in text.spans(value) if isinstance(value, str) else ():
            taken.update(range(*span))
            for word in _beside(tokens, span):
                counts.setdefault(word, Counter())[label] += 1
    for i in range(len(tokens)):
        if i not in taken:
            for word in _beside(tokens, (i, i + 1)):
                counts.setdefault(word, Counter())["none"] += 1


def _names(counts: dict[str, Counter[str]], seeds: dict[str, str]) -> dict[str, str]:
    """The words that name one label: at least NAMED_MIN of the values beside them (a label's own name words
    counting SEED more) and NAMED_SHARE of them of that label; a word the examples taught, not a label's
    name, must also stand beside that label's values at least twice as often as beside other words."""
    names = {}
    for word in set(counts) | set(seeds):
        seen = Counter(counts.get(word, {}))
        none = seen.pop("none", 0)
        if word in seeds:
            seen[seeds[word]] += SEED
        if not seen:
            continue
        best, n = seen.most_common(1)[0]
        if n >= NAMED_MIN and n >= NAMED_SHARE * sum(seen.values()) and (seeds.get(word) == best or 2 * none <= n):
            names[word] = best
    return names


def learn_words(spec: Any, schema: dict[str, Any] | None, pairs: list[tuple[str, Any]], rules: list[str]) -> None:
    """What the examples (``(request body, answer)``) teach a domain's grounded fields, set on ``spec``
    (DeclarativeSpec): their word shapes, the words that name an item's label beside its value, and the
    phrases before an item's value that decide its other labels (value_phrases.py; ``rules``: domain.yaml's),
    the labels of an item that imply its others (implied_labels.py), the label words beside its numbers
    (number_labels.py), whether its lists keep the question's order (sure_items.learn_order), and whether the
    numbers no other field takes are always items (leftover_numbers.py)."""
    found = annotated_paths(schema) if schema is not None else []
    worded = [a for a in found if "words" in a.sources]
    spec.shape = word_shapes([p for p, g in spec.ground.items() if g.source == "words"], pairs,
                             own_values(worded, [a for _, a in pairs]))
    vocabulary = frozenset(w.lower() for w in schema_words(schema)) if schema is not None else frozenset()
    spec.named = learn_named(worded, pairs, vocabulary)
    spec.phrased = learn_value_phrases(schema, found, pairs, rules, spec.named) if schema is not None else {}
    spec.numbered = learn_number_labels(found, pairs, spec.phrased)
    spec.implied = learn_implied(found, pairs, spec.phrased)
    spec.ordered = learn_order(found, pairs)
    spec.leftover = learn_leftover(found, pairs, spec.unit_words)
