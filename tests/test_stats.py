"""Analytics over recorded interactions and feedback: each number, each grouping, the since filter, plots."""

from __future__ import annotations

import json
from datetime import datetime, UTC

import pytest

from rag_middleware.memory.db import connect
from rag_middleware.errors import RequestError
from rag_middleware.learning.feedback import Feedback, FeedbackLog
from rag_middleware.memory.interaction_log import InteractionLog
from rag_middleware.records import Attempt, Interaction
from rag_middleware.analytics.stats import compute, error_path, load_rows, percentile, plot, read_stats


def record(log: InteractionLog, *, day: int, domain: str = "data_ops", status: str = "validated",
           errors: list[list[str]] = (), total_ms: float = 100.0, tokens: tuple[int, int] = (100, 20),
           template: str = "aaaaaaaaaaaa", model: str = "m1", variant: str = "") -> str:
    attempts = [Attempt(number=i + 1, messages=[], errors=list(e)) for i, e in enumerate(errors)]
    if status in ("validated", "answered"):
        attempts.append(Attempt(number=len(attempts) + 1, messages=[]))
    inter = Interaction(tenant="acme", domain=domain, status=status, request={}, question=f"q{day}-{total_ms}",
                        template_version=template, model=model, backend="fake", attempts=attempts,
                        timings_ms={"total": total_ms}, prompt_tokens=tokens[0], completion_tokens=tokens[1],
                        created_at=datetime(2026, 3, day, 12, tzinfo=UTC), variant=variant)
    log.write(inter)
    return inter.id


@pytest.fixture
def db(settings):
    log = InteractionLog(settings.db_path)
    fb = FeedbackLog(settings.db_path)
    ids = {
        "a": record(log, day=1, total_ms=100),
        "b": record(log, day=1, total_ms=200, errors=[["operations.0.type: must be one of [...]"]]),
        "c": record(log, day=2, status="failed", total_ms=300, errors=[
            ["operations.1.type: must be one of [...]", "task: required field is missing"],
            ["operations.0.type: must be one of [...]"], ["(root): no JSON object found"]]),
        "d": record(log, day=2, domain="shop_query", total_ms=400, template="bbbbbbbbbbbb", model="m2",
                    variant="terse"),
        "e": record(log, day=3, domain="assistant", status="answered", total_ms=500, tokens=(50, 50)),
    }
    fb.put(Feedback(interaction_id=ids["a"], action="approve", reviewer="ana"))
    fb.put(Feedback(interaction_id=ids["b"], action="reject", reason="wrong", reviewer="ana"))
    fb.put(Feedback(interaction_id=ids["d"], action="edit", edited_output={}, reviewer="ana"))
    log.close()
    fb.close()
    return settings.db_path


def test_overall_numbers(db):
    out = read_stats(db)
    m = out["overall"]
    assert m["requests"] == 5
    assert m["valid_rate"] == 0.8  # c failed
    assert m["first_try_valid_rate"] == 0.6  # a, d, e
    assert m["mean_attempts"] == pytest.approx((1 + 2 + 3 + 1 + 1) / 5)
    assert m["top_error_paths"][0] == ["operations.*.type", 3]
    assert ["task", 1] in m["top_error_paths"] and ["(root)", 1] in m["top_error_paths"]
    assert m["reviewed"] == 3
    assert m["approval_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["rejection_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["latency_ms"] == {"p50": 300.0, "p95": 480.0}
    assert m["tokens_per_request"] == pytest.approx((120 * 4 + 100) / 5)


@pytest.mark.parametrize("by,keys", [
    ("domain", ["assistant", "data_ops", "shop_query"]),
    ("template", ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]),
    ("model", ["m1", "m2"]),
    ("day", ["2026-03-01", "2026-03-02", "2026-03-03"]),
    ("variant", ["(none)", "terse"]),
])
def test_groupings(db, by, keys):
    out = read_stats(db, by=by)
    assert [g["key"] for g in out["groups"]] == keys
    assert sum(g["requests"] for g in out["groups"]) == 5


def test_group_numbers_and_trend(db):
    groups = {g["key"]: g for g in read_stats(db, by="domain")["groups"]}
    assert groups["data_ops"]["requests"] == 3 and groups["data_ops"]["valid_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert groups["shop_query"]["approval_rate"] == 1.0
    trend = read_stats(db)["trend"]
    assert [t["day"] for t in trend] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert trend[1]["valid_rate"] == 0.5 and "top_error_paths" not in trend[0]


def test_since_filter(db):
    out = read_stats(db, since=datetime(2026, 3, 2, tzinfo=UTC))
    assert out["overall"]["requests"] == 3 and out["since"].startswith("2026-03-02")
    assert read_stats(db, since=datetime(2026, 4, 1, tzinfo=UTC))["overall"]["requests"] == 0


def test_bad_grouping_and_helpers(db):
    with pytest.raises(RequestError, match="--by must be one of"):
        read_stats(db, by="color")
    path = error_path("operations.12.execution_instructions.kwargs.by: bad")
    assert path == "operations.*.execution_instructions.kwargs.by"
    assert error_path("no colon here") == "(root)"
    assert percentile([], 50) is None and percentile([1, 2, 3, 4], 50) == 2.5


def test_empty_log(settings):
    conn = connect(settings.db_path)
    out = compute(load_rows(conn), by="domain")
    conn.close()
    assert out["overall"]["requests"] == 0 and out["overall"]["valid_rate"] is None and out["groups"] == []


def test_plots(db, tmp_path):
    stats = read_stats(db)
    png = plot(stats, tmp_path / "trend.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    page = plot(stats, tmp_path / "trend.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 3 and "<script" not in page and "2026-03-02" in page
    assert json.loads(page.split("<pre>")[1].split("</pre>")[0].replace("&quot;", '"'))["requests"] == 5
    with pytest.raises(RequestError, match=".png or .html"):
        plot(stats, tmp_path / "trend.pdf")
    with pytest.raises(RequestError, match="nothing to plot"):
        plot(read_stats(db, since=datetime(2027, 1, 1, tzinfo=UTC)), tmp_path / "x.png")


def test_stats_from_the_pipeline(mw, fake_llm):
    """Real interactions: attempts, errors and tokens come from the pipeline's records."""
    good = {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
        "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": "a", "ascending": True}}}]}
    fake_llm.enqueue(json.dumps({**good, "operations": [{"type": "teleport"}]}), json.dumps(good))
    mw.ask("Columns: a, b\nsort by a", domain="data_ops")
    m = read_stats(mw.settings.db_path)["overall"]
    assert m["requests"] == 1 and m["valid_rate"] == 1.0 and m["first_try_valid_rate"] == 0.0
    assert m["mean_attempts"] == 2 and m["top_error_paths"][0][0].startswith("operations.*")
    assert m["tokens_per_request"] > 0 and m["latency_ms"]["p50"] is not None


def test_replays_are_not_traffic(settings):
    log = InteractionLog(settings.db_path)
    live = record(log, day=1)
    replay = Interaction(tenant="acme", domain="data_ops", status="failed", request={}, question="q",
                         template_version="cccccccccccc", model="m1", backend="fake", replay_of=live)
    log.write(replay)
    conn = connect(settings.db_path)
    assert [r.id for r in load_rows(conn)] == [live]
    assert [i.id for i in log.list()] == [live]
    assert {i.id for i in log.list(replays=True)} == {live, replay.id}
