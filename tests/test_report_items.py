"""The failing-items section of replay and eval reports: order, side-by-side values, filters without scripts."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from rag_middleware.analytics.report_items import (
    ItemResult, failing_items, failing_items_html, failing_items_md, items_from_replay)

ASK = [{"role": "system", "content": "be terse"}, {"role": "user", "content": "Columns: a, b\nsort by a"}]
ITEMS = [
    ItemResult(id="ok", request=ASK, expected={"task": "sort"}, actual={"task": "sort"}, fields={"task": True},
               status="pass", baseline_status="pass"),
    ItemResult(id="wrong-chart", request=ASK, expected={"task": "sort", "chart_type": "bar"},
               actual={"task": "sort", "chart_type": "none"}, fields={"task": True, "chart_type": False},
               selected=["ex-1", "ex-2"], status="fail", baseline_status="fail"),
    {"id": "regressed", "request": "remove duplicates", "expected": {"task": "clean", "chart_type": "none"},
     "actual": None, "fields": {"task": False, "chart_type": False}, "selected": ["ex-9"], "selected_then": ["ex-3"],
     "status": "invalid", "baseline_status": "pass", "errors": ["task: field required"],
     "raw_answer": "Sure! Here is a plan."},
    ItemResult(id="broken", request="hi", status="error", errors=["unknown domain 'nope'"]),
]


def test_failing_items_put_regressions_first_and_leave_passes_out():
    failing = failing_items(ITEMS)
    assert [i.id for i in failing] == ["regressed", "broken", "wrong-chart"]
    assert [i.label for i in failing] == ["regression", "error", "fail"]
    assert failing[0].wrong_fields() == ["task", "chart_type"]  # nothing came back: every field is wrong


class _Items(HTMLParser):
    """The failing items of the HTML (id -> classes) and the CSS rules that hide items per radio."""

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[str, set[str]] = {}
        self.radios: list[str] = []
        self.css = ""
        self.scripts = 0
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "details":
            self.items[a["id"]] = set(a["class"].split())
        elif tag == "input":
            self.radios.append(a["id"])
        elif tag == "style":
            self._in_style = True
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        self._in_style = self._in_style and tag != "style"

    def handle_data(self, data):
        if self._in_style:
            self.css += data

    def visible(self, radio: str) -> set[str]:
        """The items left visible when ``radio`` is checked, as the page's CSS says."""
        rule = rf"#{re.escape(radio)}:checked~\.items \.item:not\(\.([\w-]+)\)\{{display:none\}}"
        hidden = re.findall(rule, self.css)
        return {i for i, classes in self.items.items() if all(c in classes for c in hidden)}


def test_html_filters_by_status_and_field_with_css_only():
    page = failing_items_html(ITEMS)
    parsed = _Items()
    parsed.feed(page)
    assert parsed.scripts == 0
    assert set(parsed.items) == {"fi-item-regressed", "fi-item-broken", "fi-item-wrong-chart"}
    assert list(parsed.items)[0] == "fi-item-regressed"  # regressions first
    assert parsed.visible("fi-s-all") == set(parsed.items)
    assert parsed.visible("fi-s-regression") == {"fi-item-regressed"}
    assert parsed.visible("fi-s-error") == {"fi-item-broken"}
    field = re.search(r'<label for="(fi-f\d+)">chart_type \(2\)</label>', page).group(1)
    assert parsed.visible(field) == {"fi-item-regressed", "fi-item-wrong-chart"}
    task = re.search(r'<label for="(fi-f\d+)">task \(1\)</label>', page).group(1)
    assert parsed.visible(task) == {"fi-item-regressed"}


def test_html_shows_request_values_side_by_side_and_examples():
    page = failing_items_html(ITEMS)
    item = page[page.index('id="fi-item-wrong-chart"'):]
    item = item[:item.index("</details>")]
    assert "sort by a" in item and "be terse" in item  # the request, every message
    assert re.search(r'<td>chart_type</td><td class="exp"><pre>bar</pre></td><td class="act"><pre>none</pre></td>',
                     item)
    assert "<td>task</td>" not in item  # only the wrong fields
    assert "ex-1, ex-2" in item
    regressed = page[page.index('id="fi-item-regressed"'):]
    regressed = regressed[:regressed.index("</details>")]
    assert "baseline pass → now invalid" in regressed and "ex-3" in regressed and "task: field required" in regressed
    assert '<td>chart_type</td><td class="exp"><pre>none</pre></td><td class="act"><pre>null</pre></td>' in regressed
    assert "Sure! Here is a plan." in regressed


def test_html_escapes_what_the_items_carry():
    page = failing_items_html([ItemResult(id="x<y", status="fail", request="<script>alert(1)</script>",
                                          expected={"a": "<i>"}, actual={"a": "b"}, fields={"a": False})])
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;i&gt;" in page


def test_markdown_has_anchored_indexes_per_status_and_field():
    md = failing_items_md(ITEMS)
    assert "## Failing items (3)" in md
    assert "[regression (1)](#status-regression)" in md and "[chart_type (2)](#field-chart-type)" in md
    field_section = md[md.index('<a id="field-chart-type"></a>'):md.index('<a id="field-task"></a>')]
    assert "[regressed](#item-regressed)" in field_section and "[wrong-chart](#item-wrong-chart)" in field_section
    assert "broken" not in field_section
    assert md.index('<a id="item-regressed"></a>') < md.index('<a id="item-wrong-chart"></a>')
    assert "| chart_type | `bar` | `none` |" in md
    assert "Selected examples: ex-1, ex-2" in md and "Selected in the baseline: ex-3" in md
    assert "> **user:** Columns: a, b\n> sort by a" in md
    assert failing_items_md(ITEMS[:1]).endswith("Every item passed.\n")


def test_items_from_replay_rows_mark_baseline_status():
    rows = [{"id": "a", "request": ASK, "expected": {"t": 1}, "output": {"t": 2}, "valid": True, "match": False,
             "attempts": 1, "fields": {"t": False}, "selected": ["e"], "errors": []},
            {"id": "b", "request": ASK, "expected": None, "output": None, "valid": False, "attempts": 0,
             "errors": ["no domain"]}]
    before = [{"id": "a", "valid": True, "match": True, "attempts": 1, "selected": ["f"]}]
    got = {i.id: i for i in items_from_replay(rows, baseline=before)}
    assert got["a"].status == "fail" and got["a"].baseline_status == "pass" and got["a"].regression
    assert got["a"].selected_then == ["f"] and got["a"].actual == {"t": 2}
    assert got["b"].status == "error" and got["b"].baseline_status is None and not got["b"].regression


def test_a_failing_item_says_why_its_values_were_chosen():
    from rag_middleware.analytics.report_items import failing_items_md, items_from_replay

    row = {"id": "q1", "request": "refund for ORD-1", "expected": {"category": "billing"},
           "output": {"category": "bug"}, "valid": True, "match": False, "fields": {"category": False},
           "votes": [{"path": "/category", "allowed": [], "scores": {"bug": 0.55, "billing": 0.45},
                      "reason": "votes on this field were right 5 of 9 times"},
                     {"path": "/chart", "allowed": ["none"], "rule": "^", "scores": {"none": 1.0}}],
           "repairs": ['/team: missing -> "engineering" (derived from /category)']}
    [item] = items_from_replay([row])
    assert item.why == ["vote /category: left open (votes on this field were right 5 of 9 times); "
                        "scores bug 0.55, billing 0.45", "vote /chart: rule '^'",
                        'repair /team: missing -> "engineering" (derived from /category)']
    md = failing_items_md([item], title="t")
    assert "- vote /category: left open" in md and "- repair /team" in md
