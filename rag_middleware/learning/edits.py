"""What the reviewers' edits teach, per domain and per field (``rag-middleware stats --edits``).

Every interaction whose newest feedback is an edit pairs the recorded answer with the reviewer's corrected
one. :func:`mine` compares them:

- schema'd domains, per field (JSON pointers with ``*`` for array items, ``/filters/*/value``): how many edits
  changed it, and from which value to which (``/category: billing -> payments 14``);
- free-text domains: the words and sentences reviewers most often add or remove.

Each pattern seen at least ``min_count`` times gets a suggestion that :func:`apply` writes as a new override
version in the data dir (domains/overrides.py; the repo's domain.yaml is never touched):

- ``derive``: a field whose edited value is always a function of another field's (``/department`` from
  ``/claim_type``), in every edit and every curated example (which must agree with the edits: the loader
  refuses curated answers that contradict a derive map), gets a derive map: the examples' map, the edits'
  entries, merged over the map it may already have;
- ``negative``: the (oldest) answer with the wrong value, its correction, and
  ``why = "reviewers changed /field from a to b"``;
- ``rule``: a line for the domain's rules.

Applying first loads the domain with the patch, and refuses (saying why) what would not load, such as a
negative whose corrected answer contradicts a derived field. Suggestion ids are a hash of the domain, kind
and patch, so they stay the same while the edits that made them do; a suggestion already in the live override
is marked ``applied``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..domains.loader import load_domain
from ..domains.overrides import merge_override
from ..domains.paths import parse_path
from ..errors import ConfigError, DomainError, RequestError, UnknownDomainError
from .feedback import FeedbackLog
from ..memory.interaction_log import InteractionLog

if TYPE_CHECKING:
    from ..domains import DomainRegistry
    from ..domains.overrides import OverrideStore

__all__ = ["Edit", "apply", "changes", "load_edits", "mine"]

ABSENT = "(absent)"
TOP = 10  # transitions per field, words and sentences per free-text domain
_STOPWORDS_TEXT = (
    "the a an and or but if then than that this these those with without for from into onto to of in on at by "
    "is are was were be been being it its it's you your yours we our they them their he she his her i me my "
    "as so not no do does did can could will would should may might just also very more most there here what "
    "which who whom when where why how all any each some such only own same too")
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_WORD = re.compile(r"[a-z0-9][a-z0-9_'-]*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class Edit:
    interaction_id: str
    domain: str
    question: str
    before: Any  # the recorded answer (a JSON value, or text for free-text domains)
    after: Any  # the reviewer's corrected answer
    created_at: str
    free_text: bool


def load_edits(db_path: Path, *, domains: DomainRegistry, domain: str | None = None) -> list[Edit]:
    """Interactions whose newest feedback is an edit, oldest first; those with no recorded answer to compare
    (every attempt failed and none parsed) are left out."""
    if domain:
        domains.get(domain)  # an unknown domain is an error, not an empty report
    log, journal = FeedbackLog(db_path), InteractionLog(db_path)
    out: list[Edit] = []
    try:
        for iid, fb in log.effective().items():
            if fb.action != "edit":
                continue
            inter = journal.get(iid)
            if inter is None or (domain and inter.domain != domain):
                continue
            try:
                free_text = domains.get(inter.domain).free_text
            except UnknownDomainError:
                continue  # the domain was removed since
            before = _recorded(inter, free_text=free_text)
            if before is None:
                continue
            out.append(Edit(interaction_id=iid, domain=inter.domain, question=inter.question, before=before,
                            after=fb.edited_output, created_at=inter.created_at.isoformat(), free_text=free_text))
    finally:
        log.close()
        journal.close()
    return sorted(out, key=lambda e: (e.created_at, e.interaction_id))


def _recorded(inter: Any, *, free_text: bool) -> Any:
    raw = inter.attempts[-1].raw_output if inter.attempts else ""
    if free_text:
        return inter.output_text or raw or None
    if inter.output is not None:
        return inter.output
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return None


# -- schema'd answers: what changed, field by field -----------------------------------------------------------

def _leaves(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    if isinstance(value, dict) and value:
        return {k: v for key, child in value.items() for k, v in _leaves(child, (*prefix, str(key))).items()}
    if isinstance(value, list) and value:
        return {k: v for i, child in enumerate(value) for k, v in _leaves(child, (*prefix, str(i))).items()}
    return {prefix: value}


def _pointer(parts: tuple[str, ...], *, general: bool = True) -> str:
    esc = [("*" if general and p.isdigit() else p.replace("~", "~0").replace("/", "~1")) for p in parts]
    return "/" + "/".join(esc)


def label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def changes(before: Any, after: Any) -> set[tuple[str, str, str]]:
    """(field, from, to) for every leaf that differs; array indexes fold into ``*``."""
    old, new = _leaves(before), _leaves(after)
    out = set()
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, ABSENT), new.get(key, ABSENT)
        if a != b or type(a) is not type(b):
            out.add((_pointer(key), ABSENT if key not in old else label(a), ABSENT if key not in new else label(b)))
    return out


def _fields(edits: list[Edit]) -> tuple[list[dict[str, Any]], dict[tuple[str, str, str], list[Edit]]]:
    by_change: dict[tuple[str, str, str], list[Edit]] = {}
    for e in edits:
        for change in changes(e.before, e.after):
            by_change.setdefault(change, []).append(e)
    per_field: dict[str, set[str]] = {}
    for (path, _a, _b), members in by_change.items():
        per_field.setdefault(path, set()).update(m.interaction_id for m in members)
    fields = []
    for path, ids in sorted(per_field.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        moves = sorted(((a, b, len(m)) for (p, a, b), m in by_change.items() if p == path), key=lambda t: (-t[2], t))
        fields.append({"path": path, "edits": len(ids),
                       "changes": [{"from": a, "to": b, "count": n} for a, b, n in moves[:TOP]]})
    return fields, by_change


def _scalar(value: Any, parts: tuple[str, ...]) -> tuple[bool, Any]:
    for p in parts:
        if not isinstance(value, dict) or p not in value:
            return False, None
        value = value[p]
    return True, value


def _derive(domain: Any, edits: list[Edit], fields: list[dict[str, Any]], *, min_count: int) -> list[dict[str, Any]]:
    """A derive map for each changed top-level-path field whose edited values follow another field's."""
    out = []
    for field in fields:
        path = field["path"]
        if "*" in path or field["edits"] < min_count:
            continue
        target = tuple(path[1:].split("/"))
        changed = [e for e in edits if any(c[0] == path for c in changes(e.before, e.after))]
        existing = (domain.spec.derive or {}).get(path) or {}
        best = None
        curated = [x.answer for x in domain.examples]
        for source in _sources(changed, target):
            mapping = _mapping([e.after for e in changed], source, target)
            if (mapping is None or len(mapping) >= len(changed)
                    or _mapping([e.after for e in edits], source, target) is None):
                continue  # not a function of the source in every edit, or no value of it seen twice
            from_examples = _mapping(curated, source, target)
            if from_examples is None or any(from_examples.get(k, v) != v for k, v in mapping.items()):
                continue  # the curated examples say otherwise (the domain would refuse to load)
            src = _pointer(source, general=False)
            rank = (existing.get("from") != src, len(mapping), src)
            if best is None or rank < best[0]:
                best = (rank, src, mapping, from_examples)
        if best is None:
            continue
        _rank, src, mapping, from_examples = best
        base = dict(existing.get("map") or {}) if existing.get("from") == src else {}
        spec: dict[str, Any] = {"from": src, "map": {**base, **from_examples, **mapping}}
        if existing.get("precedence") is not None:
            spec["precedence"] = None
        shown = ", ".join(f"{k} -> {label(v)}" for k, v in sorted(mapping.items()))
        out.append(_suggestion(domain.name, "derive", {"derive": {path: spec}}, support=len(changed),
                               title=f"derive {path} from {src}: {shown}"))
    return out


def _sources(edits: list[Edit], target: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Label-valued (string or boolean), non-array fields present in every edited answer."""
    common: set[tuple[str, ...]] | None = None
    for e in edits:
        keys = {k for k, v in _leaves(e.after).items()
                if k and k != target and not any(p.isdigit() for p in k) and isinstance(v, (str, bool))}
        common = keys if common is None else common & keys
    return sorted(common or ())


def _mapping(answers: list[Any], source: tuple[str, ...], target: tuple[str, ...]) -> dict[str, Any] | None:
    """{source label: target value} over the answers that have both, or None when a label maps to two values."""
    mapping: dict[str, Any] = {}
    for answer in answers:
        has_s, s = _scalar(answer, source)
        has_t, t = _scalar(answer, target)
        if not (has_s and has_t) or isinstance(s, (dict, list)):
            continue
        key = label(s)
        if key in mapping and mapping[key] != t:
            return None
        mapping[key] = t
    return mapping


def _transitions(domain: Any, by_change: dict[tuple[str, str, str], list[Edit]], derived: set[str], *,
                 min_count: int) -> list[dict[str, Any]]:
    out = []
    for (path, a, b), members in sorted(by_change.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if len(members) < min_count or path in derived:
            continue
        first = members[0]  # the oldest: the suggestion stays the same as more edits arrive
        why = f"reviewers changed {path} from {a} to {b}"
        negative = {"id": f"edit-{first.interaction_id[:12]}", "question": first.question, "wrong": first.before,
                    "why": why, "right": first.after}
        out.append(_suggestion(domain.name, "negative", {"negatives": [negative]}, support=len(members),
                               title=f"{why} ({len(members)} times)"))
        rule = (f'{path}: prefer {b} over {a} '
                f'(reviewers corrected {a} to {b} in requests like "{_clip(first.question)}")')
        out.append(_suggestion(domain.name, "rule", {"rules": [rule]}, support=len(members), title=rule))
    return out


# -- free text: what reviewers add and remove -----------------------------------------------------------------

def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in STOPWORDS}


def _sentences(text: str) -> dict[str, str]:
    """normalised -> as written."""
    out = {}
    for s in _SENTENCE.split(text):
        s = s.strip()
        if len(s) > 3:
            out.setdefault(" ".join(s.lower().split()).rstrip(".!?"), s)
    return out


def _text_diff(edits: list[Edit]) -> dict[str, Any]:
    counts = {k: Counter() for k in ("added_words", "removed_words", "added_sentences", "removed_sentences")}
    shown: dict[str, str] = {}
    first: dict[tuple[str, str], Edit] = {}
    for e in edits:
        old, new = str(e.before), str(e.after)
        wo, wn, so, sn = _words(old), _words(new), _sentences(old), _sentences(new)
        for kind, items in (("added_words", wn - wo), ("removed_words", wo - wn),
                            ("added_sentences", set(sn) - set(so)), ("removed_sentences", set(so) - set(sn))):
            for item in items:
                counts[kind][item] += 1
                first.setdefault((kind, item), e)
                shown.setdefault(item, sn.get(item) or so.get(item) or item)
    top = {k: [[shown[i], n] for i, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]]
           for k, c in counts.items()}
    return {**top, "_counts": counts, "_first": first, "_shown": shown}


def _text_suggestions(domain: Any, diff: dict[str, Any], *, min_count: int) -> list[dict[str, Any]]:
    out = []
    phrase = {"added_sentences": 'Add "{}" where it applies', "removed_sentences": 'Do not write "{}"',
              "removed_words": 'Avoid the word "{}"', "added_words": 'Mention "{}" where it applies'}
    for kind, template in phrase.items():
        for item, n in sorted(diff["_counts"][kind].items(), key=lambda kv: (-kv[1], kv[0]))[:3]:
            if n < min_count:
                continue
            text, what = diff["_shown"][item], kind.split("_")[0]
            rule = template.format(text)
            out.append(_suggestion(domain.name, "rule", {"rules": [rule]}, support=n,
                                   title=f"{rule} (reviewers {what} it {n} times)"))
            e = diff["_first"][(kind, item)]
            why = f'reviewers {what} "{text}"'
            negative = {"id": f"edit-{e.interaction_id[:12]}", "question": e.question, "wrong": e.before, "why": why,
                        "right": e.after}
            out.append(_suggestion(domain.name, "negative", {"negatives": [negative]}, support=n,
                                   title=f"{why} ({n} times)"))
    return out


# -- the report and applying a suggestion ---------------------------------------------------------------------

def _clip(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _suggestion(domain: str, kind: str, patch: dict[str, Any], *, support: int, title: str) -> dict[str, Any]:
    key = json.dumps({"domain": domain, "kind": kind, "patch": patch}, sort_keys=True, ensure_ascii=False)
    return {"id": hashlib.sha256(key.encode()).hexdigest()[:8], "domain": domain, "kind": kind, "support": support,
            "title": title, "patch": patch, "applied": False}


def _applied(domain: Any, s: dict[str, Any]) -> bool:
    patch = s["patch"]
    if s["kind"] == "rule":
        return all(r in domain.spec.rules for r in patch["rules"])
    if s["kind"] == "negative":
        return {n["id"] for n in patch["negatives"]} <= {n.id for n in domain.negatives}
    for path, spec in patch["derive"].items():  # declared, applied or inferred from the examples
        live = domain.declarative.spec.derive.get(parse_path(path)) if domain.declarative is not None else None
        if live is None or live.source != spec["from"] or any((live.map or {}).get(k, ABSENT) != v
                                                              for k, v in spec["map"].items()):
            return False
    return True


def mine(db_path: Path, *, domains: DomainRegistry, domain: str | None = None, min_count: int = 2) -> dict[str, Any]:
    """{"min_count", "domains": [per-domain patterns], "suggestions": [numbered, most supported first]}."""
    if min_count < 1:
        raise RequestError("--min-count must be 1 or more")
    edits = load_edits(db_path, domains=domains, domain=domain)
    by_domain: dict[str, list[Edit]] = {}
    for e in edits:
        by_domain.setdefault(e.domain, []).append(e)
    reports, suggestions = [], []
    for name, members in sorted(by_domain.items()):
        dom = domains.get(name)
        report: dict[str, Any] = {"domain": name, "edits": len(members), "free_text": dom.free_text}
        if dom.free_text:
            diff = _text_diff(members)
            report.update({k: v for k, v in diff.items() if not k.startswith("_")})
            found = _text_suggestions(dom, diff, min_count=min_count)
        else:
            fields, by_change = _fields(members)
            report["fields"] = fields
            found = _derive(dom, members, fields, min_count=min_count)
            derived = {path for s in found for path in s["patch"]["derive"]}
            found += _transitions(dom, by_change, derived, min_count=min_count)
        for s in found:
            s["applied"] = _applied(dom, s)
        reports.append(report)
        suggestions += found
    kinds = {"derive": 0, "negative": 1, "rule": 2}
    suggestions.sort(key=lambda s: (s["applied"], -s["support"], s["domain"], kinds[s["kind"]], s["id"]))
    unique: dict[str, dict[str, Any]] = {}
    for s in suggestions:
        unique.setdefault(s["id"], s)
    numbered = [{"n": i, **s} for i, s in enumerate(unique.values(), start=1)]
    return {"min_count": min_count, "edits": len(edits), "domains": reports, "suggestions": numbered}


def apply(db_path: Path, *, domains: DomainRegistry, overrides: OverrideStore, selector: str,
          domain: str | None = None, min_count: int = 2) -> dict[str, Any]:
    """Write the suggestion ``selector`` (its id, or its number in :func:`mine`'s list) as a new override
    version and make it live. Returns {"version", "suggestion"}."""
    found = mine(db_path, domains=domains, domain=domain, min_count=min_count)["suggestions"]
    chosen = [s for s in found if s["id"] == selector or str(s["n"]) == selector]
    if not chosen:
        known = ", ".join(f"{s['n']}={s['id']}" for s in found) or "none (no edit pattern seen often enough)"
        raise RequestError(f"no suggestion {selector!r}; suggestions: {known}")
    s = chosen[0]
    try:  # what the loader would make of it: a curated answer the patch contradicts makes the domain unloadable
        load_domain(domains.root / s["domain"], override=merge_override(overrides.live(s["domain"]), s["patch"]))
    except (DomainError, ConfigError) as exc:
        raise RequestError(f"suggestion {s['id']} was not applied: {s['domain']} would not load with it "
                           f"({exc.one_line()})") from None
    version = overrides.write(s["domain"], s["patch"], reason=f"stats --edits suggestion {s['id']}: {s['title']}")
    return {"version": version, "suggestion": s}
