"""``tune``: choose a domain's selection and vote settings by cross-validated replay on the real model.

The items are the domain's curated examples and the tenant's reviewed (approved) answers. They are dealt
into K folds by the hash of their id; an item is answered with its whole fold held out of the prompt
(``exclude_ids`` removes curated examples, negatives and memory records alike), so no item ever sees itself;
and with its fold's domain loaded from the training examples only (fold_domains.py), so what the domain learns
from its examples (inferred mechanisms, cue words, the clause bank, anchored lists, the vote judgement) never
saw the held-out answers either.

A setting is a flat dict: ``k``, ``fetch_k``, ``mmr_lambda``, ``negatives_k`` (selection), ``cot``, and
``vote_margin`` / ``vote_decide`` / ``vote_min_similarity`` (applied to every voted path; None keeps each
path's own). A
coordinate search moves one parameter at a time to its neighbours on a small grid and keeps a neighbour
only when it scores strictly better (mean field accuracy), within a budget of model calls.

The winner goes live only when a paired comparison with the current settings shows it is not significantly
worse (exact McNemar test on per-item exact match, or a paired bootstrap on field accuracy) and its mean
field accuracy is at least the current one. The comparison runs on reviewed answers when there are enough
of them (then the search uses the curated examples only, so the decision set is fresh), else on the
search's held-out answers. Candidates are applied in memory (a temporary override store); only a promotion
writes to ``<data_dir>/overrides``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..request.ask import Switches
from ..domains.overrides import OverrideStore
from ..domains.votes import REVIEWED_STATUSES, parse_answer
from ..errors import ConfigError, RagMiddlewareError
from ..analytics.evaluation import score
from ..records import MemoryFilter
from .fold_domains import FoldDomains

__all__ = [
    "SPACE", "SearchResult", "TuneItem", "TuneOptions", "coordinate_search", "decide", "mcnemar_exact",
    "neighbours", "paired_bootstrap", "promote", "run_tune", "split_folds",
]

SELECTION_KEYS = ("k", "fetch_k", "mmr_lambda", "negatives_k")
VOTE_KNOBS = (("vote_margin", "margin"), ("vote_decide", "decide"), ("vote_min_similarity", "min_similarity"))
# the order is the search order: the parameters that matter most on a small model first
SPACE: dict[str, tuple[Any, ...]] = {
    "k": (1, 2, 3, 4, 5, 6, 8, 10),
    "vote_margin": (0.5, 0.6, 0.7, 0.8, 0.9),
    "vote_decide": (0.5, 0.55, 0.65, 0.8, 1.0),
    "cot": (False, True),
    "mmr_lambda": (0.3, 0.5, 0.7, 0.9, 1.0),
    "negatives_k": (0, 1, 2, 3, 4),
    "fetch_k": (10, 20, 40),
    "vote_min_similarity": (0.1, 0.2, 0.3, 0.4, 0.5),
}
EPS = 1e-9


# -- pure parts: folds, search, decision ---------------------------------------------------------------

def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_folds(ids: Sequence[str], *, folds: int) -> list[list[str]]:
    """Deal the ids into ``folds`` folds in the order of their hash: deterministic, balanced (sizes differ by
    at most one) and independent of the order the ids come in."""
    if folds < 2:
        raise ConfigError("cross-validation needs at least 2 folds")
    out: list[list[str]] = [[] for _ in range(folds)]
    for rank, item_id in enumerate(sorted(set(ids), key=lambda i: (_hash(i), i))):
        out[rank % folds].append(item_id)
    return out


def neighbours(grid: Sequence[Any], value: Any, *, anchor: float | None = None) -> list[Any]:
    """The grid values next to ``value`` (below, then above). A value off the grid sits between its grid
    neighbours; None (each path keeps its own) uses ``anchor`` as its position. Booleans: the other one."""
    if isinstance(value, bool) or (value is None and anchor is None and all(isinstance(g, bool) for g in grid)):
        return [g for g in grid if g != value]
    at = anchor if value is None else value
    if at is None:
        return []
    below = [g for g in grid if g < at]
    above = [g for g in grid if g > at]
    return ([below[-1]] if below else []) + ([above[0]] if above else [])


@dataclass
class Trial:
    config: dict[str, Any]
    score: float | None
    param: str = ""  # the parameter this trial moved ("" for the start)


@dataclass
class SearchResult:
    start: dict[str, Any]
    best: dict[str, Any]
    best_score: float | None
    trials: list[Trial] = field(default_factory=list)
    stopped: str = "converged"  # converged | budget | rounds


def _key(config: dict[str, Any]) -> tuple:
    return tuple(sorted(config.items()))


def coordinate_search(*, start: dict[str, Any], space: dict[str, Sequence[Any]],
                      evaluate: Callable[[dict[str, Any]], float | None],
                      anchors: dict[str, float] | None = None, rounds: int = 2) -> SearchResult:
    """One parameter at a time (in ``space``'s order): try its grid neighbours around the best setting so
    far, move to the best of them only if it scores strictly better, and keep stepping that way while it
    improves. Passes repeat while a pass improves, at most ``rounds``. ``evaluate`` returns None when the
    budget is spent, which ends the search. A setting is never evaluated twice."""
    anchors = anchors or {}
    seen: dict[tuple, float | None] = {}
    result = SearchResult(start=dict(start), best=dict(start), best_score=None)

    def run(config: dict[str, Any], param: str) -> tuple[bool, float | None]:
        key = _key(config)
        if key in seen:
            return True, seen[key]
        value = evaluate(config)
        if value is None:
            result.stopped = "budget"
            return False, None
        seen[key] = value
        result.trials.append(Trial(dict(config), value, param))
        return True, value

    ok, result.best_score = run(dict(start), "")
    if not ok:
        return result
    for _ in range(rounds):
        improved = False
        for name, grid in space.items():
            old = result.best[name]
            candidates = neighbours(grid, old, anchor=anchors.get(name))
            while candidates:
                scored: list[tuple[float, Any]] = []
                for value in candidates:
                    ok, s = run({**result.best, name: value}, name)
                    if not ok:
                        return result
                    scored.append((s if s is not None else -1.0, value))
                s, value = max(scored, key=lambda t: t[0])
                if s <= result.best_score + EPS:
                    break
                position = anchors.get(name) if old is None else old
                result.best, result.best_score, improved = {**result.best, name: value}, s, True
                candidates = []
                if not isinstance(value, bool) and position is not None:  # keep stepping the same way
                    further = [g for g in grid if (g > value if value > position else g < value)]
                    if further:
                        candidates = [min(further) if value > position else max(further)]
                old = value
        if not improved:
            result.stopped = "converged"
            return result
    result.stopped = "rounds"
    return result


def mcnemar_exact(*, worse: int, better: int) -> float:
    """One-sided exact McNemar p-value that the new setting is worse: of the discordant items, ``worse`` were
    exact under the current setting only, ``better`` under the new one only. P(X >= worse), X ~ Bin(n, 1/2)."""
    n = worse + better
    if n == 0:
        return 1.0
    return min(1.0, sum(math.comb(n, i) for i in range(worse, n + 1)) / 2 ** n)


def paired_bootstrap(*, current: Sequence[float], new: Sequence[float], resamples: int = 2000,
                     seed: int = 0) -> float:
    """One-sided paired bootstrap p-value that the new setting is worse: the share of resamples of the items
    in which the new setting's mean field accuracy is at least the current one's."""
    if len(current) != len(new):
        raise ConfigError("a paired comparison needs the same items on both sides")
    diffs = [b - a for a, b in zip(current, new, strict=True)]
    if not diffs or all(abs(d) < EPS for d in diffs):
        return 1.0
    rng = random.Random(seed)
    n = len(diffs)
    hits = sum(sum(diffs[rng.randrange(n)] for _ in range(n)) >= -EPS for _ in range(resamples))
    return hits / resamples


def decide(*, current: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]], test: str = "mcnemar",
           alpha: float = 0.05) -> dict[str, Any]:
    """Promote when the new setting is not significantly worse on the paired items and its mean field
    accuracy is at least the current one's. Rows carry ``exact`` (bool) and ``accuracy`` (0..1), paired by
    position."""
    if len(current) != len(new) or not current:
        raise ConfigError("a paired comparison needs the same, non-empty items on both sides")
    acc_cur = sum(r["accuracy"] for r in current) / len(current)
    acc_new = sum(r["accuracy"] for r in new) / len(new)
    worse = sum(1 for a, b in zip(current, new, strict=True) if a["exact"] and not b["exact"])
    better = sum(1 for a, b in zip(current, new, strict=True) if b["exact"] and not a["exact"])
    if test == "mcnemar":
        p = mcnemar_exact(worse=worse, better=better)
        name = "exact McNemar test on per-item exact match (one-sided: new worse)"
    elif test == "bootstrap":
        p = paired_bootstrap(current=[r["accuracy"] for r in current], new=[r["accuracy"] for r in new])
        name = "paired bootstrap on field accuracy (2000 resamples, one-sided: new worse)"
    else:
        raise ConfigError(f"unknown test {test!r}: mcnemar or bootstrap")
    significantly_worse = p < alpha
    promote = not significantly_worse and acc_new >= acc_cur - EPS
    if significantly_worse:
        reason = f"refused: significantly worse (p = {p:.4f} < {alpha})"
    elif not promote:
        reason = f"refused: mean field accuracy {acc_new:.3f} is below the current {acc_cur:.3f}"
    else:
        reason = f"promoted: not significantly worse (p = {p:.4f}) and field accuracy {acc_new:.3f} >= {acc_cur:.3f}"
    return {"test": name, "alpha": alpha, "n": len(current), "p_value": round(p, 6), "worse": worse,
            "better": better, "current_accuracy": acc_cur, "new_accuracy": acc_new,
            "significantly_worse": significantly_worse, "promote": promote, "reason": reason}


# -- settings <-> overrides ----------------------------------------------------------------------------

def current_config(domain: Any, params: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """The domain's settings in use as a flat setting, and the anchors of the per-path vote knobs."""
    config: dict[str, Any] = {k: getattr(params, k) for k in SELECTION_KEYS}
    config["cot"] = bool(domain.spec.cot.enabled)
    votes = list((domain.declarative.spec.vote or {}).values()) if domain.declarative is not None else []
    anchors: dict[str, float] = {}
    for knob, attr in VOTE_KNOBS:
        if not votes:
            continue
        values = {getattr(v, attr) for v in votes}
        config[knob] = values.pop() if len(values) == 1 else None
        anchors[knob] = sum(getattr(v, attr) for v in votes) / len(votes)
    return config, anchors


def override_patch(config: dict[str, Any], *, vote_paths: Sequence[str],
                   only_changed_from: dict[str, Any] | None = None) -> dict[str, Any]:
    """The override that applies ``config`` (``only_changed_from``: just what differs from that setting)."""
    base = only_changed_from or {}
    keep = [k for k in config if only_changed_from is None or config[k] != base.get(k)]
    patch: dict[str, Any] = {}
    if "cot" in keep:
        patch["cot"] = {"enabled": bool(config["cot"])}
    selection = {k: config[k] for k in SELECTION_KEYS if k in keep}
    if selection:
        patch["selection"] = selection
    vote: dict[str, dict[str, Any]] = {}
    for path in vote_paths:
        for knob, attr in VOTE_KNOBS:
            if knob in keep and config.get(knob) is not None:
                vote.setdefault(path, {})[attr] = config[knob]
    if vote:
        patch["vote"] = vote
    return patch


def describe(config: dict[str, Any], start: dict[str, Any]) -> str:
    changed = [f"{k}={'declared' if v is None else v}" for k, v in config.items() if start.get(k) != v]
    return " ".join(changed) or "current"


# -- the replay ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TuneItem:
    id: str
    question: str
    expected: Any
    source: str  # curated | reviewed


@dataclass(frozen=True)
class TuneOptions:
    tenant: str | None = None
    folds: int = 3
    budget: int = 96
    items: int = 24
    max_attempts: int = 1
    test: str = "mcnemar"
    alpha: float = 0.05
    min_reviewed: int = 8  # reviewed answers needed to decide on them (else: on the held-out folds)
    rounds: int = 2


def collect_items(mw: Any, *, domain: Any, tenant: str) -> tuple[list[TuneItem], list[TuneItem]]:
    """(curated examples, the tenant's reviewed answers), each in hash order."""
    curated = [TuneItem(e.id, e.question, e.answer, "curated") for e in domain.examples]
    reviewed: list[TuneItem] = []
    offset = 0
    while True:
        page = mw.store.list(MemoryFilter(domain=domain.name, tenant=tenant, kinds=("example", "interaction"),
                                          statuses=REVIEWED_STATUSES), limit=500, offset=offset)
        for rec in page:
            value = parse_answer(rec.answer) if not domain.free_text else rec.answer
            if value is not None:
                reviewed.append(TuneItem(rec.id, rec.question, value, "reviewed"))
        if len(page) < 500:
            break
        offset += 500
    order = lambda i: (_hash(i.id), i.id)  # noqa: E731
    return sorted(curated, key=order), sorted(reviewed, key=order)


class Replayer:
    """Answers item sets under a setting, applied in memory through a temporary override store, counting
    model calls against the budget. Rows are cached per (setting, item): decoding is deterministic."""

    def __init__(self, mw: Any, *, domain: str, options: TuneOptions, vote_paths: Sequence[str], budget: int,
                 on_call: Callable[[int, str], None] | None = None) -> None:
        self.mw, self.domain, self.options, self.vote_paths = mw, domain, options, list(vote_paths)
        self.budget, self.calls, self.on_call = budget, 0, on_call
        self._cache: dict[tuple, dict[str, Any]] = {}
        self._per_item: list[int] = []
        self._loaded: list[Any] = []  # every fold's domain, kept alive: caches keyed by id() never mix them up

    def __enter__(self) -> Replayer:
        registry = self.mw.domains
        self._saved = registry.overrides
        self._tmp = tempfile.TemporaryDirectory(prefix="rag-mw-tune-")
        self._store = OverrideStore(Path(self._tmp.name))
        base = self._saved.live(self.domain) if self._saved is not None else {}
        self._base = self._store.write(self.domain, {k: v for k, v in base.items()
                                                     if k not in ("reason", "created_at", "based_on")},
                                       reason="tune: the live override")
        registry.overrides = self._store  # the registry reloads the domain whenever the live version changes
        self._root = registry.root
        self._folds = FoldDomains(registry.root / self.domain)
        return self

    def __exit__(self, *exc: object) -> None:
        self.mw.domains.overrides = self._saved
        self.mw.domains.root = self._root
        self._tmp.cleanup()
        self._folds.close()

    def _apply(self, config: dict[str, Any], held_out: frozenset[str]) -> None:
        """The setting, on the domain learnt without ``held_out``: a new live version makes the registry load
        the domain afresh, from the fold's copy (or the domain's own directory when nothing is held out)."""
        self.mw.domains.root = self._folds.root(held_out) or self._root
        self._store.set_live(self.domain, self._base)
        self._store.write(self.domain, override_patch(config, vote_paths=self.vote_paths), reason="tune: candidate")
        with contextlib.suppress(RagMiddlewareError):  # else each item's ask fails, and its row says why
            self._loaded.append(self.mw.domains.get(self.domain))

    def affordable(self, n: int, *, limit: int) -> bool:
        """Whether ``n`` more items fit under ``limit`` calls at the calls per item seen so far."""
        rate = max(1.0, sum(self._per_item) / len(self._per_item)) if self._per_item else 1.0
        return limit - self.calls >= math.ceil(n * rate)

    def rows(self, config: dict[str, Any], items: Sequence[TuneItem], folds: list[list[str]], *,
             label: str, limit: int | None = None) -> list[dict[str, Any]] | None:
        """One row per item, or None when the budget (or ``limit``, a lower cap on all calls) cannot cover
        the set. An item never gets more attempts than the calls left."""
        limit = self.budget if limit is None else min(limit, self.budget)
        todo = [i for i in items if (_key(config), i.id) not in self._cache]
        if todo and not self.affordable(len(todo), limit=limit):
            return None
        fold_of = {i: n for n, ids in enumerate(folds) for i in ids}
        for fold in sorted({fold_of[i.id] for i in todo}):  # fold by fold: one domain load each
            held_out = frozenset(folds[fold])
            self._apply(config, held_out)
            for item in (i for i in todo if fold_of[i.id] == fold):
                left = limit - self.calls
                if left <= 0:
                    return None
                row = self._answer(item, config, fold, held_out, min(self.options.max_attempts, left))
                self._cache[(_key(config), item.id)] = row
                if self.on_call is not None:
                    self.on_call(row["calls"], label)
        return [self._cache[(_key(config), i.id)] for i in items]

    def _answer(self, item: TuneItem, config: dict[str, Any], fold: int, held_out: frozenset[str],
                attempts: int) -> dict[str, Any]:
        try:
            result = self.mw.ask(item.question, domain=self.domain, tenant=self.options.tenant,
                                 exclude_ids=held_out, switches=Switches(memory=True, cot=config["cot"]),
                                 learn=False, max_attempts=attempts, raise_on_invalid=False,
                                 replay_of=f"tune:{item.id}")
            output, valid, calls = result.output, result.valid, max(1, len(result.attempts))
        except RagMiddlewareError as exc:
            output, valid, calls = {"error": exc.one_line()}, False, max(1, len(getattr(exc, "attempts", []) or []))
        self.calls += calls
        self._per_item.append(calls)
        fields = score(item.expected, output, valid)
        return {"id": item.id, "source": item.source, "fold": fold, "fields": fields, "valid": valid,
                "exact": all(fields.values()), "accuracy": sum(fields.values()) / max(1, len(fields)),
                "calls": calls, "output": output}


def _summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    n = max(1, len(rows))
    return {"accuracy": sum(r["accuracy"] for r in rows) / n, "exact": sum(r["exact"] for r in rows) / n,
            "valid": sum(r["valid"] for r in rows) / n}


def run_tune(mw: Any, *, domain: str, options: TuneOptions,
             on_call: Callable[[int, str], None] | None = None) -> dict[str, Any]:
    """Search, then the paired decision. Writes nothing: ``promote`` does, when the result says so."""
    dom = mw.domains.get(domain)
    if dom.free_text:
        raise ConfigError(f"domain {domain!r} has no output schema: tune scores fields of JSON answers")
    tenant = options.tenant or mw.settings.default_tenant
    options = replace(options, tenant=tenant)
    curated, reviewed = collect_items(mw, domain=dom, tenant=tenant)
    on_reviewed = len(reviewed) >= options.min_reviewed
    search_items = (curated if on_reviewed else [*reviewed, *curated])[: options.items]
    decision_items = reviewed[: options.items] if on_reviewed else []
    if len(search_items) < options.folds:
        raise ConfigError(f"domain {domain!r} has {len(search_items)} item(s) to tune on; {options.folds} folds "
                          "need at least as many (curated examples or reviewed answers)")
    reserve = 2 * len(decision_items)
    if options.budget < len(search_items) + reserve:
        raise ConfigError(f"--budget {options.budget} cannot cover one pass over {len(search_items)} item(s)"
                          + (f" plus {reserve} calls for the paired replay on reviewed answers" if reserve else "")
                          + "; raise --budget or lower --items")
    vote_paths = ["/" + "/".join(p) for p in (dom.declarative.spec.vote or {})] if dom.declarative else []
    start, anchors = current_config(dom, mw.assembler.selection_params(dom))
    space = {k: v for k, v in SPACE.items() if k in start}
    folds = split_folds([i.id for i in search_items], folds=options.folds)
    rows_of: dict[tuple, list[dict[str, Any]]] = {}
    with Replayer(mw, domain=dom.name, options=options, vote_paths=vote_paths, budget=options.budget,
                  on_call=on_call) as replay:
        def evaluate(config: dict[str, Any]) -> float | None:
            rows = replay.rows(config, search_items, folds, label=describe(config, start),
                               limit=options.budget - reserve)  # the paired replay's calls are kept back
            if rows is None:
                return None
            rows_of[_key(config)] = rows
            return _summary(rows)["accuracy"]

        search = coordinate_search(start=start, space=space, evaluate=evaluate, anchors=anchors,
                                   rounds=options.rounds)
        scored = [t for t in search.trials if t.score is not None]
        winner = max(scored, key=lambda t: t.score).config if scored else dict(start)  # first best: start wins ties
        best_any = search.best
        decision: dict[str, Any]
        if _key(winner) == _key(start):
            acc = search.trials[0].score if search.trials else None
            decision = {"promote": False, "reason": "kept: no setting scored better than the current one",
                        "test": "", "p_value": None, "on": "", "n": 0, "current_accuracy": acc,
                        "new_accuracy": acc}
        else:
            if on_reviewed:
                dfolds = split_folds([i.id for i in decision_items], folds=options.folds)
                cur = replay.rows(start, decision_items, dfolds, label="paired replay: current")
                new = replay.rows(winner, decision_items, dfolds, label="paired replay: winner")
                on = f"{len(decision_items)} reviewed answers (held out of the search)"
            else:
                cur, new = rows_of[_key(start)], rows_of[_key(winner)]
                on = f"the search's {len(search_items)} held-out answers (no {options.min_reviewed}+ reviewed answers)"
            if cur is None or new is None:
                decision = {"promote": False, "reason": "refused: the budget ran out before the paired replay",
                            "test": "", "p_value": None, "on": on, "n": 0}
            else:
                decision = {**decide(current=cur, new=new, test=options.test, alpha=options.alpha), "on": on}
    trials = []
    for n, t in enumerate(search.trials):
        rows = rows_of.get(_key(t.config), [])
        trials.append({"n": n + 1, "label": describe(t.config, start), "param": t.param, "config": t.config,
                       **_summary(rows), "calls": sum(r["calls"] for r in rows),
                       "current": _key(t.config) == _key(start), "winner": _key(t.config) == _key(winner),
                       "rows": rows})
    notes = []
    if decision.get("test", "").startswith("exact McNemar") and decision["worse"] + decision["better"] < 5:
        notes.append(f"only {decision['worse'] + decision['better']} item(s) changed exact match, too few for the "
                     "McNemar test to ever refuse (it needs 5 against); --test bootstrap compares field accuracy")
    if search.stopped == "budget":
        notes.append(f"the budget of {options.budget} model calls ended the search; a larger --budget tries more")
    return {"domain": dom.name, "tenant": tenant, "notes": notes, "options": asdict(options), "start": start,
            "winner": winner, "best_any": best_any, "winner_label": describe(winner, start),
            "patch": override_patch(winner, vote_paths=vote_paths, only_changed_from=start),
            "items": {"search": len(search_items), "decision": len(decision_items), "curated": len(curated),
                      "reviewed": len(reviewed)},
            "folds": folds, "calls": replay.calls, "stopped": search.stopped, "trials": trials, "decision": decision}


def promote(data_dir: Path, result: dict[str, Any]) -> str | None:
    """Write the winner as the domain's live override (data dir only), if the decision says so."""
    if not result["decision"].get("promote") or not result["patch"]:
        return None
    d = result["decision"]
    reason = (f"tune {result['winner_label']}: field accuracy {d['current_accuracy']:.3f} -> "
              f"{d['new_accuracy']:.3f}, p = {d['p_value']:.4f} ({d['on']})")
    return OverrideStore(Path(data_dir) / "overrides").write(result["domain"], result["patch"], reason=reason)
