"""tune: fold splitting, the coordinate search, the promotion tests, and the command end to end."""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import FakeLLM, HashEmbedder, run_cli, use_cli_backend

from rag_middleware import Middleware, load_settings
from rag_middleware.records import MemoryRecord
from rag_middleware.llm.tokens import ApproxTokenCounter

from rag_middleware.domains.overrides import OverrideStore
from rag_middleware.errors import ConfigError
from rag_middleware.learning.tune import (
    coordinate_search,
    decide,
    mcnemar_exact,
    neighbours,
    override_patch,
    paired_bootstrap,
    split_folds,
)

# -- folds ---------------------------------------------------------------------------------------------


def test_folds_are_deterministic_balanced_and_disjoint():
    ids = [f"item-{i}" for i in range(20)]
    folds = split_folds(ids, folds=3)
    assert sorted(len(f) for f in folds) == [6, 7, 7]
    assert sorted(i for f in folds for i in f) == sorted(ids)
    assert split_folds(list(reversed(ids)), folds=3) == folds  # by id hash, not by input order
    assert split_folds(ids + ["item-0"], folds=3) == folds  # duplicates count once


def test_a_new_item_does_not_reshuffle_everything():
    ids = [f"q{i}" for i in range(30)]
    before = split_folds(ids, folds=3)
    after = split_folds(ids + ["q-new"], folds=3)
    moved = sum(1 for n, f in enumerate(before) for i in f if i not in after[n])
    assert moved < len(ids)  # dealt by hash rank: later ranks shift by one, earlier ones stay


def test_folds_need_two():
    with pytest.raises(ConfigError):
        split_folds(["a", "b"], folds=1)


# -- search --------------------------------------------------------------------------------------------


def test_neighbours_on_and_off_the_grid():
    grid = (1, 2, 3, 4, 6, 8)
    assert neighbours(grid, 4) == [3, 6]
    assert neighbours(grid, 5) == [4, 6]
    assert neighbours(grid, 1) == [2]
    assert neighbours((False, True), False) == [True]
    assert neighbours((0.5, 0.6, 0.7, 0.8), None, anchor=0.65) == [0.6, 0.7]
    assert neighbours((0.5, 0.6), None) == []


def scripted(table):
    """A scoring function from a dict of setting -> score (default 0.5), recording every call."""
    calls = []

    def evaluate(config):
        calls.append(dict(config))
        return table(config)

    return evaluate, calls


SPACE = {"k": (1, 2, 3, 4, 5, 6, 8), "cot": (False, True), "margin": (0.5, 0.6, 0.7, 0.8, 0.9)}


def test_search_walks_to_the_peak_one_parameter_at_a_time():
    # best at k=2, margin=0.8, cot off; each parameter helps on its own
    evaluate, calls = scripted(lambda c: 1.0 - 0.1 * abs(c["k"] - 2) - 0.2 * c["cot"] - abs(c["margin"] - 0.8))
    result = coordinate_search(start={"k": 5, "cot": False, "margin": 0.6}, space=SPACE, evaluate=evaluate)
    assert result.best == {"k": 2, "cot": False, "margin": 0.8}
    assert result.stopped == "converged"
    keys = [tuple(sorted(c.items())) for c in calls]
    assert len(keys) == len(set(keys))  # never the same setting twice
    assert calls[0] == {"k": 5, "cot": False, "margin": 0.6}
    assert [t.param for t in result.trials][:4] == ["", "k", "k", "k"]


def test_ties_keep_the_current_setting():
    evaluate, calls = scripted(lambda c: 0.7)
    result = coordinate_search(start={"k": 4, "cot": False, "margin": 0.7}, space=SPACE, evaluate=evaluate)
    assert result.best == {"k": 4, "cot": False, "margin": 0.7}
    assert len(calls) == 1 + 2 + 1 + 2  # the start, then each parameter's neighbours once


def test_the_budget_ends_the_search_with_the_best_so_far():
    budget = [4]

    def evaluate(config):
        if budget[0] == 0:
            return None
        budget[0] -= 1
        return 0.5 + 0.1 * (config["k"] == 3)

    result = coordinate_search(start={"k": 4, "cot": False, "margin": 0.7}, space=SPACE, evaluate=evaluate)
    assert result.stopped == "budget"
    assert result.best["k"] == 3 and len(result.trials) == 4


def test_a_per_path_start_uses_its_anchor():
    evaluate, _ = scripted(lambda c: {None: 0.6, 0.6: 0.5, 0.7: 0.65, 0.8: 0.7, 0.9: 0.6}[c["margin"]])
    result = coordinate_search(start={"margin": None}, space={"margin": SPACE["margin"]}, evaluate=evaluate,
                               anchors={"margin": 0.65})
    assert result.best == {"margin": 0.8}


def test_the_override_holds_only_what_changed_cot_included():
    start = {"k": 6, "fetch_k": 20, "mmr_lambda": 0.7, "negatives_k": 2, "cot": False, "vote_margin": None,
             "vote_min_similarity": 0.3}
    winner = {**start, "k": 4, "cot": True, "vote_margin": 0.8}
    patch = override_patch(winner, vote_paths=["/a", "/b"], only_changed_from=start)
    assert patch == {"selection": {"k": 4}, "vote": {"/a": {"margin": 0.8}, "/b": {"margin": 0.8}},
                     "cot": {"enabled": True}}
    full = override_patch(start, vote_paths=["/a"])
    assert full == {"cot": {"enabled": False},
                    "selection": {"k": 6, "fetch_k": 20, "mmr_lambda": 0.7, "negatives_k": 2},
                    "vote": {"/a": {"min_similarity": 0.3}}}


# -- the promotion tests -------------------------------------------------------------------------------


def rows(exact, accuracy=None):
    return [{"exact": e, "accuracy": (1.0 if e else 0.5) if accuracy is None else accuracy[i]}
            for i, e in enumerate(exact)]


def test_mcnemar_exact_values():
    assert mcnemar_exact(worse=0, better=0) == 1.0
    assert mcnemar_exact(worse=5, better=0) == pytest.approx(1 / 32)
    assert mcnemar_exact(worse=1, better=1) == pytest.approx(0.75)
    assert mcnemar_exact(worse=0, better=6) == 1.0


@pytest.mark.parametrize("test", ["mcnemar", "bootstrap"])
def test_a_clearly_worse_setting_is_refused(test):
    current = rows([True] * 20)
    worse = rows([True] * 5 + [False] * 15)
    d = decide(current=current, new=worse, test=test)
    assert d["significantly_worse"] and not d["promote"] and d["p_value"] < 0.05
    assert d["reason"].startswith("refused")


@pytest.mark.parametrize("test", ["mcnemar", "bootstrap"])
def test_an_equal_setting_is_accepted(test):
    current = rows([True, False] * 10)
    d = decide(current=current, new=[dict(r) for r in current], test=test)
    assert d["promote"] and d["p_value"] == 1.0 and d["worse"] == d["better"] == 0


def test_lower_accuracy_is_refused_even_when_not_significant():
    current = rows([True, True, False, False], accuracy=[1.0, 1.0, 0.8, 0.8])
    new = rows([True, True, False, False], accuracy=[1.0, 1.0, 0.6, 0.8])
    d = decide(current=current, new=new)
    assert not d["significantly_worse"] and not d["promote"] and "below" in d["reason"]


def test_a_better_setting_is_accepted():
    d = decide(current=rows([False] * 6 + [True] * 4), new=rows([True] * 10), test="mcnemar")
    assert d["promote"] and d["better"] == 6 and d["new_accuracy"] > d["current_accuracy"]


def test_bootstrap_is_reproducible_and_needs_pairs():
    a, b = [1.0, 0.5, 0.75, 1.0] * 5, [1.0, 0.25, 0.75, 0.5] * 5
    assert paired_bootstrap(current=a, new=b) == paired_bootstrap(current=a, new=b)
    with pytest.raises(ConfigError):
        paired_bootstrap(current=a, new=b[:-1])


# -- the command end to end ----------------------------------------------------------------------------


class ExamplesOracle(FakeLLM):
    """Answers a curated question right only when the prompt holds at most ``max_examples`` examples (else an
    invalid answer): fewer examples score better, so the search finds a smaller k."""

    def __init__(self, answers: dict[str, dict], *, max_examples: int) -> None:
        super().__init__()
        self.answers, self.max_examples = answers, max_examples

    def generate(self, request):
        self.requests.append(request)
        turns = [m for m in request.messages if m["role"] == "user"]
        right = next((a for q, a in self.answers.items() if q in turns[-1]["content"]), None)
        text = json.dumps(right) if right is not None and len(turns) - 1 <= self.max_examples else "{}"
        from rag_middleware.llm.base import Completion

        return Completion(text=text, done_reason="stop", prompt_tokens=100, completion_tokens=20, model=self.model)


@pytest.fixture
def oracle(cli_project, monkeypatch):
    examples = [json.loads(line) for line in
                (cli_project / "knowledge_base/claims_intake/examples.jsonl").read_text().splitlines() if line.strip()]
    llm = ExamplesOracle({e["question"]: e["answer"] for e in examples}, max_examples=5)
    use_cli_backend(monkeypatch, lambda: llm)
    return llm


def test_tune_promotes_a_better_setting_and_writes_the_report(cli_project, oracle, capsys, tmp_path):
    data, out = cli_project / "data", tmp_path / "report"
    code, stdout, err = run_cli(capsys, "--data-dir", str(data), "tune", "--domain", "claims_intake", "--budget", "40",
                                "--items", "9", "--out", str(out))
    assert code == 0, stdout + err
    store = OverrideStore(data / "overrides")
    live = store.live_name("claims_intake")
    assert live is not None and store.live("claims_intake")["selection"]["k"] <= 5
    assert "tune" in store.live("claims_intake")["reason"]
    assert "decision: promoted" in stdout and f"live override {live}" in stdout and "McNemar" in stdout
    assert "k=5" in stdout and "current" in stdout
    for name in ("report.md", "tune.json", "chart.png"):
        assert (out / name).is_file()
    body = json.loads((out / "tune.json").read_text())
    assert body["decision"]["promote"] and body["live_version"] == live and body["calls"] <= 40
    assert body["trials"][0]["current"] and body["trials"][0]["accuracy"] == 0.0
    assert "promoted" in (out / "report.md").read_text()
    conn = sqlite3.connect(data / "rag.db")  # the replays stay out of the traffic and out of memory
    marks = [r[0] for r in conn.execute("SELECT json_extract(body, '$.replay_of') FROM interactions")]
    assert marks and all(m.startswith("tune:") for m in marks)
    assert conn.execute("SELECT COUNT(*) FROM memory").fetchone()[0] == 0


def test_with_enough_reviewed_answers_the_decision_replays_them(cli_project, oracle, capsys, tmp_path):
    data = cli_project / "data"
    settings = load_settings(data_dir=data, knowledge_base=cli_project / "knowledge_base",
                             prompts_dir=cli_project / "prompts")
    questions = list(oracle.answers.items())[:10]
    records = [MemoryRecord(id=f"rev-{i}", tenant="default", domain="claims_intake", kind="interaction",
                            status="approved", source="review", question=q + " (sent again)", answer=json.dumps(a))
               for i, (q, a) in enumerate(questions)]
    with Middleware(settings, backend=oracle, embedder=HashEmbedder(), token_counter=ApproxTokenCounter()) as mw:
        mw.store.upsert(records, HashEmbedder().encode([r.question for r in records]))
    code, stdout, err = run_cli(capsys, "--data-dir", str(data), "tune", "--domain", "claims_intake", "--budget", "60",
                                "--items", "9", "--out", str(tmp_path / "r"))
    assert code == 0, stdout + err
    body = json.loads((tmp_path / "r" / "tune.json").read_text())
    assert body["items"] == {"search": 9, "decision": 9, "curated": 36, "reviewed": 10}
    searched = {r["id"] for t in body["trials"] for r in t["rows"]}
    assert searched and not any(i.startswith("rev-") for i in searched)  # the decision set is fresh
    assert body["decision"]["on"].startswith("9 reviewed answers") and body["decision"]["n"] == 9
    assert body["calls"] <= 60 and "reviewed answers" in stdout


def test_tune_with_dry_run_writes_nothing_live(cli_project, oracle, capsys, tmp_path):
    data = cli_project / "data"
    code, stdout, err = run_cli(capsys, "--data-dir", str(data), "tune", "--domain", "claims_intake", "--budget", "30",
                                "--items", "9", "--dry-run", "--out", str(tmp_path / "r"))
    assert code == 0, stdout + err
    assert "dry run: nothing written" in stdout
    assert OverrideStore(data / "overrides").versions("claims_intake") == []
    assert (tmp_path / "r" / "report.md").is_file()


def test_tune_refuses_a_budget_below_one_pass(cli_project, oracle, capsys):
    code, _, err = run_cli(capsys, "--data-dir", str(cli_project / "data"), "tune", "--domain", "claims_intake",
                           "--budget", "5", "--items", "9")
    assert code == 2 and "--budget 5" in err


def test_tune_unknown_domain(cli_project, oracle, capsys):
    code, _, err = run_cli(capsys, "--data-dir", str(cli_project / "data"), "tune", "--domain", "nope")
    assert code == 2 and "nope" in err


def test_the_vote_decide_knob_is_searched_and_written_per_path():
    from rag_middleware.learning.tune import SPACE

    assert "vote_decide" in SPACE and 0.55 in SPACE["vote_decide"]
    start = {"k": 6, "vote_margin": None, "vote_decide": 0.55}
    patch = override_patch({**start, "vote_decide": 0.8}, vote_paths=["/a"], only_changed_from=start)
    assert patch == {"vote": {"/a": {"decide": 0.8}}}
