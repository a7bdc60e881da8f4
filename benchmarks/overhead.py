"""Per-request overhead of the middleware before the model is called: embed, search, select, render.

For each memory size (default 1k, 10k, 100k records) this builds a fresh data dir, fills the memory store of
tenant ``bench`` / domain ``data_ops`` with approved (reviewed) interactions, then times ``Middleware.render`` (no model
call) on fresh, never-seen data_ops requests and reports p50/p95 per stage (``Assembly.timings_ms``) and of
the wall time of the whole ``render`` call.

What is real and what is synthetic:

- The query path is the production one: ``Middleware`` with the default settings (embedded backend, so the
  token counter is the packaged Gemma GGUF tokenizer), the embedder the default settings make
  (all-MiniLM-L6-v2 on ``embedding.runtime``, onnx by default) wrapped by the Middleware's
  ``CachedEmbedder``, the SQLite memory store, the real
  templates and knowledge base. Every measured query is a text never embedded before, so its embedding is
  really computed (checked with ``CachedEmbedder.computed``).
- Memory records are realistic data_ops requests ("Columns: a, b, c\\n<request>") with ActionPlan answers
  that pass the domain's own validator. Embedding 100k of them with MiniLM on 2 cores would take far too
  long, so their vectors are synthetic: a few hundred of the records (anchors) are embedded for real, every
  other record gets ``normalize(anchor + s * u)`` where the anchor is one with the same table and first
  operation (else the same table), ``u`` a random unit vector and ``s ~ U(0.4, 1.0)`` (cosine to its anchor
  0.71-0.93), and a small share get pure random unit vectors. Vectors go straight into ``store.upsert``.

Usage::

    python benchmarks/overhead.py                       # 1k, 10k, 100k records, 200 queries each
    python benchmarks/overhead.py --sizes 10000 --queries 100 --check
    python benchmarks/overhead.py --sizes 100000 --profile   # plus a cProfile of extra queries

``--check`` makes the exit status 1 when a target is missed (targets: total p50 <= 25 ms at 10k and
<= 60 ms at 100k records, on a 2-core machine).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, UTC
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rag_middleware import MemoryRecord, Middleware, load_settings  # noqa: E402
from rag_middleware.memory.embedding import Embedder, normalize  # noqa: E402
from rag_middleware.memory.onnx_embedding import make_embedder  # noqa: E402

DOMAIN = "data_ops"
TENANT = "bench"
STAGES = ("embed", "search", "select", "render")  # always reported; other timings_ms keys (e.g. guide) too
OTHER = "other"  # wall time of render() outside every timed stage
TARGETS_MS = {10_000: 25.0, 100_000: 60.0}  # total (wall) p50 per request, 2-core machine
SEED = 20240611
NOISE_RANGE = (0.4, 1.0)  # s in normalize(anchor + s*u); cos(v, anchor) = 1/sqrt(1+s^2)
RANDOM_SHARE = 0.05  # records whose vector is a pure random unit vector
UPSERT_BATCH = 2000
BUSY_SHARE = 0.10  # other processes above this share of the CPUs make a measurement suspect

console = Console() if sys.stdout.isatty() else Console(width=150)  # wide enough for the table in a log


# -- realistic data_ops requests ---------------------------------------------------------------------

@dataclass
class TableSpec:
    name: str
    entity: str  # what a row is, for phrases like "the 10 players with the most points"
    cols: list[str]  # the table's columns, in order
    cat: dict[str, list[str]] = field(default_factory=dict)  # categorical column -> plausible values
    num: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    ident: str = ""


def _t(name: str, entity: str, ident: str, cat: dict[str, list[str]], num: list[str], text: list[str],
       extra: list[str] = ()) -> TableSpec:
    cols = [ident, *text, *cat, *num, *extra]
    return TableSpec(name=name, entity=entity, cols=cols, cat=cat, num=num, text=text, ident=ident)


TABLES: list[TableSpec] = [
    _t("orders", "orders", "order_id", {"region": ["north", "south", "east", "west"],
                                        "status": ["shipped", "delivered", "pending", "cancelled"]},
       ["amount", "quantity", "discount"], ["customer"], ["order_date"]),
    _t("employees", "employees", "employee_id", {"department": ["Sales", "Engineering", "HR", "Finance"],
                                                 "office": ["Berlin", "Paris", "Austin"]},
       ["salary", "age", "tenure_years"], ["name", "email"], ["hire_date"]),
    _t("products", "products", "sku", {"category": ["toys", "garden", "kitchen", "books"],
                                       "supplier": ["Acme", "Globex", "Initech"]},
       ["price", "stock", "weight_kg"], ["product_name"]),
    _t("tickets", "tickets", "ticket_id", {"priority": ["low", "medium", "high", "urgent"],
                                           "status": ["open", "closed", "waiting"]},
       ["resolution_hours", "reopen_count"], ["subject", "assignee"], ["created_at"]),
    _t("players", "players", "player_id", {"team": ["Lions", "Tigers", "Bears", "Wolves"],
                                           "position": ["guard", "forward", "center"]},
       ["points", "assists", "rebounds", "minutes"], ["player"]),
    _t("countries", "countries", "iso_code", {"continent": ["Europe", "Asia", "Africa", "Americas"]},
       ["gdp", "population", "life_expectancy", "area_km2"], ["country"]),
    _t("houses", "houses", "house_id", {"neighborhood": ["Downtown", "Riverside", "Hillcrest"],
                                        "house_type": ["detached", "condo", "townhouse"]},
       ["price", "bedrooms", "bathrooms", "sqft"], ["address"], ["listed_on"]),
    _t("invoices", "invoices", "invoice_id", {"currency": ["EUR", "USD", "GBP"],
                                              "payment_status": ["paid", "overdue", "draft"]},
       ["amount", "tax", "days_late"], ["client"], ["issued_on"]),
    _t("flights", "flights", "flight_no", {"carrier": ["AF", "LH", "BA", "KL"],
                                           "origin": ["CDG", "FRA", "LHR", "AMS"]},
       ["delay_minutes", "distance_km", "passengers"], ["route"], ["departure"]),
    _t("students", "students", "student_id", {"class_name": ["A1", "B2", "C3"],
                                              "gender": ["female", "male", "other"]},
       ["score", "attendance_rate", "age"], ["student_name"]),
    _t("web_sessions", "sessions", "session_id", {"device": ["mobile", "desktop", "tablet"],
                                                  "country": ["FR", "DE", "US", "JP"]},
       ["duration", "pages_viewed", "bounce_rate"], ["user_agent", "username"], ["started_at"]),
    _t("movies", "movies", "movie_id", {"genre": ["drama", "comedy", "horror", "documentary"],
                                        "rating_band": ["G", "PG", "R"]},
       ["rating", "votes", "runtime_min", "box_office"], ["title"], ["release_year"]),
    _t("stores", "stores", "store_id", {"city": ["Lyon", "Nantes", "Lille", "Nice"],
                                        "format": ["mall", "street", "outlet"]},
       ["sales", "visitors", "staff"], ["manager"], ["month"]),
    _t("shipments", "shipments", "shipment_id", {"warehouse": ["WH1", "WH2", "WH3"],
                                                 "mode": ["air", "sea", "road"]},
       ["weight", "cost", "transit_days"], ["destination"], ["ship_date"]),
    _t("patients", "patients", "patient_id", {"ward": ["cardiology", "oncology", "pediatrics"],
                                              "blood_type": ["A", "B", "AB", "O"]},
       ["heart_rate", "temperature", "length_of_stay"], ["patient_name"], ["admitted_on"]),
    _t("sensors", "readings", "reading_id", {"sensor_type": ["humidity", "pressure", "co2"],
                                             "site": ["roof", "basement", "lab"]},
       ["value", "battery_pct", "signal_db"], ["sensor_label"], ["timestamp"]),
    _t("transactions", "transactions", "txn_id", {"merchant_category": ["grocery", "travel", "fuel", "dining"],
                                                  "card_type": ["debit", "credit"]},
       ["amount", "fee", "cashback"], ["merchant"], ["txn_date"]),
    _t("survey", "responses", "response_id", {"age_group": ["18-24", "25-34", "35-54", "55+"],
                                              "channel": ["email", "phone", "web"]},
       ["satisfaction", "nps", "completion_time"], ["comment"]),
    _t("energy", "meters", "meter_id", {"tariff": ["peak", "offpeak", "flat"],
                                        "building": ["north_wing", "south_wing", "annex"]},
       ["kwh", "cost_eur", "peak_kw"], ["meter_name"], ["reading_date"]),
    _t("courses", "courses", "course_id", {"level": ["beginner", "intermediate", "advanced"],
                                           "language": ["English", "French", "Spanish"]},
       ["enrollments", "completion_rate", "price"], ["course_title", "instructor"]),
    _t("restaurants", "restaurants", "restaurant_id", {"cuisine": ["thai", "italian", "mexican", "indian"],
                                                       "district": ["center", "harbor", "old_town"]},
       ["avg_bill", "seats", "review_score"], ["restaurant_name"]),
    _t("cars", "cars", "vin", {"make": ["Toyota", "Ford", "Renault", "Kia"],
                               "fuel": ["petrol", "diesel", "electric", "hybrid"]},
       ["mileage", "price", "engine_cc", "year"], ["model_name"]),
    _t("loans", "loans", "loan_id", {"grade": ["A", "B", "C", "D"], "purpose": ["car", "home", "education"]},
       ["principal", "interest_rate", "term_months"], ["borrower"], ["issue_date"]),
    _t("inventory", "items", "item_code", {"aisle": ["A", "B", "C", "D"], "unit": ["box", "pallet", "piece"]},
       ["on_hand", "reorder_level", "unit_cost"], ["description"], ["last_counted"]),
]

AGG_WORDS = {
    "sum": ["total", "sum of", "combined"],
    "mean": ["average", "mean"],
    "median": ["median"],
    "max": ["maximum", "highest", "largest"],
    "min": ["minimum", "lowest", "smallest"],
}
DTYPES = {"integer": "int", "int": "int", "float": "float", "a decimal number": "float", "string": "str",
          "text": "str", "a date": "datetime64[ns]"}
CHARTS = [  # phrase, chart_type (named types win over generic chart words; see expected_chart)
    ("and show it as a bar chart", "bar"), ("as a bar graph", "bar"), ("and plot it as a line chart", "line"),
    ("and draw a line graph", "line"), ("as a pie chart", "pie"), ("and show a histogram", "histogram"),
    ("and make a scatter plot", "scatter"), ("for a dashboard", "bar"), ("as a visual", "bar"),
    ("and plot the result", "bar"), ("and chart it", "bar"),
]
PREFIXES = ["", "", "", "", "Please ", "Can you ", "I need to ", "Could you "]
METHODS = {
    "remove_duplicates": "pandas.DataFrame.drop_duplicates", "remove_empty_rows": "pandas.DataFrame.dropna",
    "drop_missing": "pandas.DataFrame.dropna", "fill_missing": "pandas.DataFrame.fillna",
    "filter_rows": "pandas.DataFrame.query", "group_by": "pandas.DataFrame.groupby",
    "sort": "pandas.DataFrame.sort_values", "top_n": "pandas.DataFrame.nlargest",
    "aggregate": "pandas.DataFrame.agg", "rename_column": "pandas.DataFrame.rename",
    "drop_column": "pandas.DataFrame.drop", "convert_type": "pandas.DataFrame.astype",
    "trim_whitespace": "pandas.Series.str.strip", "describe": "pandas.DataFrame.describe",
}


def _op(kind: str, args: list | None = None, kwargs: dict | None = None) -> dict[str, Any]:
    return {"type": kind, "execution_instructions": {"method": METHODS[kind], "args": args or [],
                                                     "kwargs": kwargs or {}}}


def _num_value(r: random.Random) -> int | float:
    return r.choice([r.randint(1, 99), r.randint(1, 20) * 50, r.randint(1, 400) * 25, round(r.uniform(0.5, 9.5), 1)])


_Op = tuple[str, dict[str, Any], list[str]]  # (phrase, ActionPlan operation, columns it names)


def _gen_op(kind: str, t: TableSpec, r: random.Random) -> _Op:
    """One operation: (phrase, ActionPlan operation, columns it names)."""
    gen = _GENERATORS.get(kind)
    if gen is None:
        raise ValueError(kind)
    return gen(t, r)


def _gen_remove_duplicates(t: TableSpec, r: random.Random) -> _Op:
    cats = list(t.cat)
    if r.random() < 0.5:
        col = r.choice([t.ident, *t.text, *cats])
        phrase = r.choice([f"drop rows that repeat the same {col}", f"remove duplicate {col} values",
                           f"keep one row per {col}"])
        return phrase, _op("remove_duplicates", kwargs={"subset": [col]}), [col]
    return r.choice(["remove duplicate rows", "drop duplicates", "deduplicate the rows",
                     "get rid of repeated rows"]), _op("remove_duplicates"), []


def _gen_remove_empty_rows(t: TableSpec, r: random.Random) -> _Op:
    return r.choice(["remove rows that are completely empty", "drop fully empty rows",
                     "delete blank rows"]), _op("remove_empty_rows", kwargs={"how": "all"}), []


def _gen_drop_missing(t: TableSpec, r: random.Random) -> _Op:
    cats, nums = list(t.cat), t.num
    col = r.choice([*nums, *cats, *t.text])
    phrase = r.choice([f"drop rows where {col} is missing", f"remove rows with no {col}",
                       f"discard {t.entity} without a {col}"])
    return phrase, _op("drop_missing", kwargs={"subset": [col]}), [col]


def _gen_fill_missing(t: TableSpec, r: random.Random) -> _Op:
    nums = t.num
    if t.text and r.random() < 0.3:
        col = r.choice(t.text)
        val = r.choice(["unknown", "n/a", "missing"])
        return f"fill missing {col} with '{val}'", _op("fill_missing", kwargs={"value": {col: val}}), [col]
    col, val = r.choice(nums), r.choice([0, 0, 1, r.randint(2, 500)])
    phrase = r.choice([f"fill missing {col} with {val}", f"replace empty {col} values by {val}",
                       f"set {col} to {val} where it is missing"])
    return phrase, _op("fill_missing", kwargs={"value": {col: val}}), [col]


def _gen_filter_rows(t: TableSpec, r: random.Random) -> _Op:
    cats, nums = list(t.cat), t.num
    style = r.randrange(4)
    num, v = r.choice(nums), _num_value(r)
    if style == 0:
        op, words = r.choice([(">", ["above", "greater than", "over", "more than"]),
                              ("<", ["below", "less than", "under"]), (">=", ["at least"]),
                              ("<=", ["at most", "no more than"])])
        phrase = r.choice([f"keep rows where {num} is {r.choice(words)} {v}",
                           f"only {t.entity} with {num} {r.choice(words)} {v}",
                           f"filter to {num} {r.choice(words)} {v}"])
        return phrase, _op("filter_rows", args=[f"{num} {op} {v}"]), [num]
    cat = r.choice(cats)
    if style == 1:
        val = r.choice(t.cat[cat])
        phrase = r.choice([f"only rows where {cat} is {val}", f"keep {t.entity} with {cat} {val}",
                           f"show only the {val} {cat}"])
        return phrase, _op("filter_rows", args=[f"{cat} == '{val}'"]), [cat]
    if style == 2:
        a, b = r.sample(t.cat[cat], 2)
        phrase = f"only {t.entity} whose {cat} is {a} or {b}"
        return phrase, _op("filter_rows", args=[f"{cat} in ['{a}', '{b}']"]), [cat]
    val = r.choice(t.cat[cat])
    phrase = f"keep {t.entity} in {cat} {val} with {num} above {v}"
    return phrase, _op("filter_rows", args=[f"{cat} == '{val}' and {num} > {v}"]), [cat, num]


def _gen_group_by(t: TableSpec, r: random.Random) -> _Op:
    cats, nums = list(t.cat), t.num
    cat = r.choice(cats)
    if r.random() < 0.2:
        phrase = r.choice([f"count {t.entity} per {cat}", f"number of {t.entity} by {cat}"])
        return phrase, _op("group_by", args=[cat], kwargs={"agg": {t.ident: "count"}}), [cat, t.ident]
    func = r.choice(list(AGG_WORDS))
    num = r.choice(nums)
    word = r.choice(AGG_WORDS[func])
    phrase = r.choice([f"{word} {num} per {cat}", f"{word} {num} by {cat}",
                       f"group by {cat} and compute the {word} {num}"])
    return phrase, _op("group_by", args=[cat], kwargs={"agg": {num: func}}), [cat, num]


def _gen_sort(t: TableSpec, r: random.Random) -> _Op:
    nums = t.num
    col = r.choice([*nums, *t.text])
    asc = r.random() < 0.5
    word = r.choice(["ascending", "from lowest to highest", "smallest first"] if asc else
                    ["descending", "from highest to lowest", "largest first"])
    return f"sort by {col} {word}", _op("sort", kwargs={"by": col, "ascending": asc}), [col]


def _gen_top_n(t: TableSpec, r: random.Random) -> _Op:
    nums = t.num
    n, num = r.choice([3, 5, 10, 15, 20, 25, 50, 100]), r.choice(nums)
    phrase = r.choice([f"show the {n} {t.entity} with the highest {num}", f"top {n} {t.entity} by {num}",
                       f"list the {n} {t.entity} with the most {num}"])
    return phrase, _op("top_n", args=[n, num]), [num]


def _gen_aggregate(t: TableSpec, r: random.Random) -> _Op:
    nums = t.num
    picks = r.sample(nums, min(len(nums), r.choice([1, 1, 2])))
    funcs = {c: r.choice(list(AGG_WORDS)) for c in picks}
    parts = [f"the {r.choice(AGG_WORDS[f])} {c}" for c, f in funcs.items()]
    phrase = r.choice(["compute ", "what is ", "give me "]) + " and ".join(parts)
    return phrase, _op("aggregate", kwargs={"func": funcs}), picks


def _gen_rename_column(t: TableSpec, r: random.Random) -> _Op:
    cats, nums = list(t.cat), t.num
    picks = r.sample([*t.text, *nums, *cats], r.choice([1, 1, 2]))
    new = {c: r.choice([f"{c}_clean", f"new_{c}", f"{c}_v2", f"{c}_label"]) for c in picks}
    phrase = "rename " + " and ".join(f"{c} to {n}" for c, n in new.items())
    return phrase, _op("rename_column", kwargs={"columns": new}), picks


def _gen_drop_column(t: TableSpec, r: random.Random) -> _Op:
    cats, nums = list(t.cat), t.num
    picks = r.sample([*t.text, *cats, *nums], r.choice([1, 1, 2]))
    phrase = (f"drop the {picks[0]} column" if len(picks) == 1
              else f"remove the {picks[0]} and {picks[1]} columns")
    return phrase, _op("drop_column", kwargs={"columns": picks}), picks


def _gen_convert_type(t: TableSpec, r: random.Random) -> _Op:
    nums = t.num
    picks = r.sample(nums, r.choice([1, 1, 2]))
    words = {c: r.choice(list(DTYPES)) for c in picks}
    phrase = "convert " + " and ".join(f"{c} to {w}" for c, w in words.items())
    return phrase, _op("convert_type", kwargs={"dtype": {c: DTYPES[w] for c, w in words.items()}}), picks


def _gen_trim_whitespace(t: TableSpec, r: random.Random) -> _Op:
    cats = list(t.cat)
    col = r.choice(t.text or cats)
    phrase = r.choice([f"trim whitespace in {col}", f"strip spaces around {col}"])
    return phrase, _op("trim_whitespace", args=[col]), [col]


def _gen_describe(t: TableSpec, r: random.Random) -> _Op:
    return r.choice(["summarize the dataset with basic statistics", "describe the data",
                     "give me summary statistics"]), _op("describe"), []


_GENERATORS: dict[str, Callable[[TableSpec, random.Random], _Op]] = {
    "remove_duplicates": _gen_remove_duplicates,
    "remove_empty_rows": _gen_remove_empty_rows,
    "drop_missing": _gen_drop_missing,
    "fill_missing": _gen_fill_missing,
    "filter_rows": _gen_filter_rows,
    "group_by": _gen_group_by,
    "sort": _gen_sort,
    "top_n": _gen_top_n,
    "aggregate": _gen_aggregate,
    "rename_column": _gen_rename_column,
    "drop_column": _gen_drop_column,
    "convert_type": _gen_convert_type,
    "trim_whitespace": _gen_trim_whitespace,
    "describe": _gen_describe,
}


OP_WEIGHTS = {
    "filter_rows": 14, "group_by": 14, "sort": 9, "top_n": 8, "aggregate": 7, "remove_duplicates": 7,
    "fill_missing": 6, "drop_missing": 6, "remove_empty_rows": 4, "rename_column": 5, "drop_column": 5,
    "convert_type": 5, "trim_whitespace": 5, "describe": 3,
}


def _load_expected_task() -> Callable[[list[str]], str]:
    """The task precedence the domain declares (domain.yaml ``derive: /task``), so the benchmark never
    restates it."""
    from rag_middleware.domains import load_domain

    rule = load_domain(ROOT / "knowledge_base" / DOMAIN).declarative.spec.derive[("task",)]
    return lambda types: rule.derive(list(types))[1]


_expected_task = _load_expected_task()


@dataclass
class Request:
    question: str
    answer: dict[str, Any]
    key: tuple[str, str]  # (table, first operation): which anchor vector a synthetic record leans on


def gen_request(r: random.Random) -> Request:
    t = r.choice(TABLES)
    kinds, weights = list(OP_WEIGHTS), list(OP_WEIGHTS.values())
    n_ops = r.choices([1, 2, 3], weights=[5, 4, 1])[0]
    chosen: list[str] = []
    while len(chosen) < n_ops:
        k = r.choices(kinds, weights=weights)[0]
        if k not in chosen:
            chosen.append(k)
    phrases, ops, used = [], [], set()
    for k in chosen:
        phrase, op, cols = _gen_op(k, t, r)
        phrases.append(phrase)
        ops.append(op)
        used.update(cols)
    if len(phrases) == 1:
        body = phrases[0]
    elif len(phrases) == 2:
        body = phrases[0] + r.choice([", then ", " and ", ", and then "]) + phrases[1]
    else:
        body = phrases[0] + ", " + phrases[1] + r.choice([", then ", " and "]) + phrases[2]
    chart = "none"
    if r.random() < 0.25:
        chart_phrase, chart = r.choice(CHARTS)
        body += " " + chart_phrase
    prefix = r.choice(PREFIXES)
    body = (prefix + body) if prefix else body[0].upper() + body[1:]
    body += "?" if prefix in ("Can you ", "Could you ") else "."
    columns = [c for c in t.cols if c in used or r.random() < 0.8]
    question = f"Columns: {', '.join(columns)}\n{body}"
    answer = {"task": _expected_task(chosen), "chart_type": chart, "operations": ops}
    return Request(question=question, answer=answer, key=(t.name, chosen[0]))


def gen_unique(r: random.Random, n: int, seen: set[str]) -> list[Request]:
    out: list[Request] = []
    while len(out) < n:
        req = gen_request(r)
        if req.question not in seen:
            seen.add(req.question)
            out.append(req)
    return out


# -- memory ------------------------------------------------------------------------------------------

def choose_anchors(pool: list[Request], limit: int) -> list[int]:
    """Indices of the first record of each (table, first operation), then fill up to ``limit``."""
    picked, keys = [], set()
    for i, req in enumerate(pool):
        if req.key not in keys:
            keys.add(req.key)
            picked.append(i)
            if len(picked) >= limit:
                return picked
    taken = set(picked)
    extra = (i for i in range(len(pool)) if i not in taken)
    return picked + [next(extra) for _ in range(min(limit, len(pool)) - len(picked))]


def synth_vectors(pool: list[Request], start: int, stop: int, anchors: dict[int, np.ndarray], size: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Vectors for records start..stop-1: real for anchors, anchor + noise for the rest."""
    usable = {i: v for i, v in anchors.items() if i < size}
    by_key: dict[tuple[str, str], list[int]] = {}
    by_table: dict[str, list[int]] = {}
    for i in usable:
        by_key.setdefault(pool[i].key, []).append(i)
        by_table.setdefault(pool[i].key[0], []).append(i)
    all_ids = sorted(usable)
    dim = next(iter(usable.values())).shape[0]
    out = np.empty((stop - start, dim), dtype=np.float32)
    for j, i in enumerate(range(start, stop)):
        if i in usable:
            out[j] = usable[i]
            continue
        if rng.random() < RANDOM_SHARE:
            out[j] = rng.standard_normal(dim)
            continue
        choices = by_key.get(pool[i].key) or by_table.get(pool[i].key[0]) or all_ids
        anchor = usable[choices[int(rng.integers(len(choices)))]]
        u = rng.standard_normal(dim)
        u /= np.linalg.norm(u)
        out[j] = anchor + rng.uniform(*NOISE_RANGE) * u
    return normalize(out)


def load_memory(mw: Middleware, pool: list[Request], size: int, anchors: dict[int, np.ndarray],
                progress: Progress, seed: int) -> None:
    validator = mw.domains.get(DOMAIN).validator
    rng = np.random.default_rng(seed)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    task = progress.add_task(f"[{size:,}] loading memory", total=size)
    for start in range(0, size, UPSERT_BATCH):
        stop = min(size, start + UPSERT_BATCH)
        records = []
        for i in range(start, stop):
            req = pool[i]
            outcome = validator.validate_value(req.answer, req.question)
            if not outcome.ok:  # a bug in the generator, never expected
                raise SystemExit(f"generated answer is not a valid ActionPlan: {req.question!r}: {outcome.errors}")
            records.append(MemoryRecord(
                id=f"bench-{i:07d}", tenant=TENANT, domain=DOMAIN, kind="interaction", status="approved",
                source="interaction", question=req.question,
                answer=json.dumps(req.answer, ensure_ascii=False, separators=(", ", ": ")),
                created_at=base + timedelta(seconds=int(rng.integers(0, 365 * 86400))),
            ))
        mw.store.upsert(records, synth_vectors(pool, start, stop, anchors, size, rng))
        progress.advance(task, stop - start)


# -- measurement ---------------------------------------------------------------------------------------

class OtherLoad:
    """CPU used by *other* processes while measuring (from /proc/stat minus our own CPU time), as a share of
    all CPUs. Other work on a 2-core box inflates every stage, the OpenMP-threaded embedder most of all."""

    def __init__(self) -> None:
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / hz  # everything but idle and iowait
        own = os.times()
        return time.monotonic(), busy, own.user + own.system

    def share(self) -> float | None:
        end = self._sample()
        if self._start is None or end is None:
            return None
        wall = end[0] - self._start[0]
        other = (end[1] - self._start[1]) - (end[2] - self._start[2])
        return max(0.0, other / (wall * (os.cpu_count() or 1))) if wall > 0 else None


def wait_idle(limit_s: float, threshold: float = BUSY_SHARE) -> None:
    """Wait (up to limit_s) until other processes use less than ``threshold`` of the CPUs for 3 s."""
    deadline = time.monotonic() + limit_s
    said = 0.0
    while True:
        probe = OtherLoad()
        time.sleep(3.0)
        share = probe.share()
        if share is None or share < threshold:
            return
        if time.monotonic() >= deadline:
            console.print(f"[yellow]machine still busy ({share:.0%} of the CPUs used by other processes); "
                          "measuring anyway[/]")
            return
        if time.monotonic() - said >= 60:  # one line a minute, not one per probe
            console.print(f"waiting for an idle machine: other processes use {share:.0%} of the CPUs", highlight=False)
            said = time.monotonic()


@dataclass
class SizeResult:
    size: int
    stages: dict[str, np.ndarray]  # STAGES, any extra stage the assembly timed, then OTHER
    total: np.ndarray
    fresh: int  # requests whose query embedding was really computed (not served from a cache)
    computed: int  # texts the embedder computed in all (the query, plus e.g. step-guidance clauses)
    queries: int
    load_s: float
    memory_selected: float
    best_similarity: float
    prompt_tokens: float
    other_load: float | None

    def pct(self, values: np.ndarray) -> tuple[float, float]:
        return float(np.percentile(values, 50)), float(np.percentile(values, 95))

    @property
    def target(self) -> float | None:
        return TARGETS_MS.get(self.size)

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "-"
        return "PASS" if self.pct(self.total)[0] <= self.target else "FAIL"


def _measure(mw: Middleware, size: int, queries: list[Request], progress: Progress) -> tuple:
    """Time render() on each query; returns per-stage lists, wall times, counters and the other-process load."""
    timings: list[dict[str, float]] = []
    total_ms, memory_sel, best_sim, tokens = [], [], [], []
    fresh = computed = 0
    task = progress.add_task(f"[{size:,}] measuring render", total=len(queries))
    load = OtherLoad()
    for req in queries:
        before = mw.embedder.computed
        started = time.perf_counter()
        assembly = mw.render(req.question, domain=DOMAIN, tenant=TENANT)
        total_ms.append((time.perf_counter() - started) * 1000)
        delta = mw.embedder.computed - before
        fresh += delta >= 1  # the query text was embedded, not served from a cache
        computed += delta
        timings.append(dict(assembly.timings_ms))
        memory_sel.append(sum(1 for e in assembly.selected if e.source == "memory"))
        best_sim.append(max((e.similarity for e in assembly.selected), default=0.0))
        tokens.append(assembly.prompt_tokens)
        progress.advance(task)
    other_load = load.share()
    stage_ms: dict[str, list[float]] = {}
    extra = sorted({k for t in timings for k in t} - set(STAGES))
    for s in (*STAGES, *extra):
        stage_ms[s] = [t.get(s, 0.0) for t in timings]
    stage_ms[OTHER] = [wall - sum(t.values()) for wall, t in zip(total_ms, timings, strict=True)]
    return stage_ms, total_ms, fresh, computed, memory_sel, best_sim, tokens, other_load


def run_size(size: int, pool: list[Request], queries: list[Request], warmup: list[Request],
             profile_queries: list[Request], anchors: dict[int, np.ndarray], inner: Embedder,
             workdir: Path, keep: bool, profile_top: int, idle_wait: float,
             more_queries: Callable[[int], list[Request]]) -> SizeResult:
    data_dir = Path(tempfile.mkdtemp(prefix=f"rag-mw-bench-{size}-", dir=workdir))
    try:
        # the memory's records are approved, so the domain learns from them (request/taught.py) in a background
        # build; the first warm-up request waits for it: the benchmark measures the steady request path
        settings = load_settings(data_dir=data_dir, knowledge_base=ROOT / "knowledge_base",
                                 prompts_dir=ROOT / "prompts", selection={"teach_wait": 600.0})
        if settings.llm.backend != "embedded":
            console.print(f"[yellow]warning: llm.backend is {settings.llm.backend!r} (from the environment or a "
                          "config file), so the token counter is not the Gemma GGUF one[/]")
        with Middleware(settings, embedder=inner) as mw, _progress() as progress:
            t0 = time.perf_counter()
            load_memory(mw, pool, size, anchors, progress, SEED + size)
            load_s = time.perf_counter() - t0
            for req in warmup:  # loads the partition, the tokenizer, the templates, the curated vectors
                mw.render(req.question, domain=DOMAIN, tenant=TENANT)
            deadline = time.monotonic() + idle_wait
            while True:
                if idle_wait > 0:
                    wait_idle(max(0.0, deadline - time.monotonic()))
                measured = _measure(mw, size, queries, progress)
                other_load = measured[-1]
                if idle_wait <= 0 or other_load is None or other_load <= BUSY_SHARE or time.monotonic() >= deadline:
                    break
                console.print(f"[yellow][{size:,}] other processes used {other_load:.0%} of the CPUs while "
                              "measuring; measuring again with fresh queries[/]", highlight=False)
                queries = more_queries(len(queries))
            stage_ms, total_ms, fresh, computed, memory_sel, best_sim, tokens, other_load = measured
            if profile_queries:
                profiler = cProfile.Profile()
                ptask = progress.add_task(f"[{size:,}] profiling", total=len(profile_queries))
                for req in profile_queries:
                    profiler.enable()
                    mw.render(req.question, domain=DOMAIN, tenant=TENANT)
                    profiler.disable()
                    progress.advance(ptask)
        if profile_queries:
            _print_profile(profiler, size, len(profile_queries), profile_top)
        return SizeResult(size=size, stages={s: np.array(v) for s, v in stage_ms.items()}, total=np.array(total_ms),
                          fresh=fresh, computed=computed, queries=len(queries), load_s=load_s,
                          memory_selected=float(np.mean(memory_sel)), best_similarity=float(np.median(best_sim)),
                          prompt_tokens=float(np.median(tokens)), other_load=other_load)
    finally:
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            console.print(f"kept data dir {data_dir}")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=False)


def _print_profile(profiler: cProfile.Profile, size: int, n: int, top: int) -> None:
    for key in ("cumulative", "tottime"):
        buf = io.StringIO()
        stats = pstats.Stats(profiler, stream=buf)
        stats.sort_stats(key).print_stats(top)
        console.rule(f"cProfile, {size:,} records, {n} fresh queries, sorted by {key} (times are inflated)")
        console.print(buf.getvalue().split("\n", 6)[-1], markup=False, highlight=False, soft_wrap=True)


# -- report --------------------------------------------------------------------------------------------

def _cell(res: SizeResult, values: np.ndarray) -> str:
    p50, p95 = res.pct(values)
    return f"{p50:.1f} / {p95:.1f}"


def report(results: list[SizeResult], method: str) -> None:
    columns = [s for s in STAGES]
    columns += sorted({s for res in results for s in res.stages} - set(STAGES) - {OTHER}) + [OTHER]

    def cells(res: SizeResult) -> list[str]:
        return [_cell(res, res.stages[s]) if s in res.stages else "-" for s in columns]

    table = Table(title="Middleware.render overhead per request, ms (p50 / p95)", show_lines=False)
    table.add_column("records", justify="right")
    for s in columns:
        table.add_column(s, justify="right")
    table.add_column("total (wall)", justify="right")
    table.add_column("target p50", justify="right")
    table.add_column("result", justify="center")
    for res in results:
        verdict = res.verdict
        style = {"PASS": "bold green", "FAIL": "bold red"}.get(verdict, "dim")
        table.add_row(f"{res.size:,}", *cells(res), _cell(res, res.total),
                      f"<= {res.target:g}" if res.target else "-", f"[{style}]{verdict}[/]")
    console.print()
    console.print(table)
    for res in results:
        console.print(f"  {res.size:>7,} records: {res.queries} queries, {res.fresh} with a freshly computed embedding "
                      f"({res.computed / res.queries:.1f} texts embedded per request), memory loaded in "
                      f"{res.load_s:.1f} s, median prompt {res.prompt_tokens:.0f} tokens, "
                      f"{res.memory_selected:.1f} memory examples selected on average, median best similarity "
                      f"{res.best_similarity:.2f}", highlight=False)
        if res.other_load is not None:
            busy = res.other_load > BUSY_SHARE
            console.print(f"{'':11}other processes used {res.other_load:.0%} of the CPUs while measuring"
                          + (" [bold yellow](busy machine: these timings are inflated)[/]" if busy else ""),
                          highlight=False)
    console.print(method, highlight=False)
    console.print(f"'{OTHER}' = wall time of Middleware.render outside the timed stages (request parsing, "
                  "template version check, grammar schema, building the Assembly).", highlight=False)
    lines = ["| records | " + " | ".join(columns) + " | total (wall) | target p50 | result |",
             "|---:|" + "---:|" * len(columns) + "---:|---:|:---:|"]
    for res in results:
        lines.append(f"| {res.size:,} | " + " | ".join(cells(res))
                     + f" | {_cell(res, res.total)} | " + (f"<= {res.target:g}" if res.target else "-")
                     + f" | {res.verdict} |")
    console.print()
    console.print("Markdown (ms, p50 / p95):", highlight=False)
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


# -- main ----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="memory sizes, comma separated")
    parser.add_argument("--queries", type=int, default=200, help="measured queries per size")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured queries per size before measuring")
    parser.add_argument("--anchors", type=int, default=384, help="memory questions embedded for real")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--profile", type=int, nargs="?", const=40, default=0, metavar="N",
                        help="also profile N extra fresh queries per size with cProfile")
    parser.add_argument("--profile-top", type=int, default=25, help="lines of each cProfile listing")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()), help="where data dirs go")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to SECONDS (per size) for other processes to go quiet before measuring, "
                             "and measure again with fresh queries if they got busy meanwhile")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 1 or args.queries < 1:
        parser.error("sizes and --queries must be positive")

    r = random.Random(SEED)
    seen = {json.loads(line)["question"] for line in (ROOT / "knowledge_base" / DOMAIN / "examples.jsonl")
            .read_text(encoding="utf-8").splitlines() if line.strip()}
    seen |= {json.loads(line)["question"] for line in (ROOT / "knowledge_base" / DOMAIN / "negatives.jsonl")
             .read_text(encoding="utf-8").splitlines() if line.strip()}
    # the queries first, then memory: no query text is ever in memory, the curated set or another query
    per_size = {n: (gen_unique(r, args.warmup, seen), gen_unique(r, args.queries, seen),
                    gen_unique(r, args.profile, seen)) for n in sizes}
    pool = gen_unique(r, max(sizes), seen)

    console.print(f"[bold]rag_middleware render overhead[/] - {os.cpu_count()} CPU(s), sizes "
                  f"{', '.join(f'{n:,}' for n in sizes)}, {args.queries} queries per size ({args.warmup} warm-up)")
    t0 = time.perf_counter()
    embedding = load_settings(None).embedding  # the production embedder: the runtime the settings choose
    inner = make_embedder(embedding.model, runtime=embedding.runtime, batch_size=embedding.batch_size,
                          device=embedding.device, quantize=embedding.quantize)
    anchor_ids = choose_anchors(pool, min(args.anchors, len(pool)))
    vectors = inner.encode([pool[i].question for i in anchor_ids])
    anchors = dict(zip(anchor_ids, vectors, strict=True))
    runtime = embedding.runtime + (f", {embedding.quantize}" if embedding.quantize != "none" else "")
    console.print(f"embedded {len(anchor_ids)} anchor questions with {embedding.model} ({runtime}) in "
                  f"{time.perf_counter() - t0:.1f} s (model load included)")
    results = []
    for n in sizes:
        warm, measured, profiled = per_size[n]
        results.append(run_size(n, pool, measured, warm, profiled, anchors, inner, args.workdir, args.keep,
                                args.profile_top, args.wait_idle, lambda k: gen_unique(r, k, seen)))
    lo, hi = NOISE_RANGE
    method = (f"Memory vectors: {len(anchor_ids)} anchor questions (the first record of each table x first "
              f"operation, then the next ones; a size uses those among its records) embedded for "
              f"real with all-MiniLM-L6-v2; every other record = normalize(anchor + s*u) with an anchor of the same "
              f"table and first operation (else same table), u a random unit vector, s ~ U({lo}, {hi}) "
              f"(cosine to the anchor {1 / np.sqrt(1 + hi * hi):.2f}-{1 / np.sqrt(1 + lo * lo):.2f}); "
              f"{RANDOM_SHARE:.0%} are pure random unit vectors. Queries: fresh data_ops requests embedded by the "
              f"real all-MiniLM-L6-v2 through the Middleware's CachedEmbedder; token counts by the backend's "
              f"tokenizer (packaged Gemma GGUF). Seed {SEED}.")
    report(results, method)
    failed = [res.size for res in results if res.verdict == "FAIL"]
    if failed:
        console.print(f"[bold red]FAIL[/]: total p50 above target at {', '.join(f'{n:,}' for n in failed)} records")
    elif any(res.target for res in results):
        console.print("[bold green]PASS[/]: every size with a target is within it")
    return 1 if (failed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
