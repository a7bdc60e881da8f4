"""The failing items of a replay or an eval, rendered for people who fix templates.

Each failing item shows its request, the expected and actual value of every wrong field side by side, the
examples that were selected for it and, against a baseline, whether it is a regression. Regressions come first.
Both renderings can be filtered by field and by status without scripts: the HTML with radio buttons and CSS
(``:checked ~``), the Markdown with anchored index sections that link to each item.

The renderers take plain per-item results, so any command that compares answers with expectations (a replay,
a ``domains eval``) can call them::

    from rag_middleware.analytics.report_items import ItemResult, failing_items_html, failing_items_md

    items = [ItemResult(id="q1", request=[{"role": "user", "content": "sort by a"}], expected={...},
                        actual={...}, fields={"chart_type": False, "task": True}, selected=["ex1", "ex7"],
                        status="fail", baseline_status="pass")]
    html_section = failing_items_html(items)
    md_section = failing_items_md(items)
"""

from __future__ import annotations

import html
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..domains.anchors import describe
from ..domains.glosses import glossed
from ..request.calibration import calibrated

__all__ = [
    "ItemResult", "diff_values", "failing_items", "failing_items_html", "failing_items_md", "items_from_replay",
]

Status = Literal["pass", "fail", "invalid", "error"]
_STATUS_ORDER = {"regression": 0, "error": 1, "invalid": 2, "fail": 3}
_MAX_TEXT = 2000  # characters of one request message or value shown


class ItemResult(BaseModel):
    """One item's outcome.

    - ``request``: what was asked (a list of chat messages ``{"role", "content"}`` or a text);
    - ``expected`` / ``actual``: the reference and the answer (``actual`` is None when there was no valid answer);
    - ``fields``: top-level field -> correct? (empty for free text; then the whole answer is one field);
    - ``selected``: ids of the examples put in the prompt (``selected_then``: in the baseline run);
    - ``status``: ``pass``, ``fail`` (valid, but differs), ``invalid`` (no valid answer) or ``error``
      (the request could not be answered at all); ``baseline_status``: the same for the baseline run, or None;
    - ``errors``: validator or request errors of the last attempt; ``raw_answer``: what the model said when
      it gave no valid answer.
    """

    id: str
    request: Any = None
    expected: Any = None
    actual: Any = None
    fields: dict[str, bool] = Field(default_factory=dict)
    selected: list[str] = Field(default_factory=list)
    selected_then: list[str] | None = None
    status: Status
    baseline_status: Status | None = None
    errors: list[str] = Field(default_factory=list)
    why: list[str] = Field(default_factory=list)  # label votes and repairs: why a value was chosen
    raw_answer: str = ""

    @property
    def regression(self) -> bool:
        return self.baseline_status == "pass" and self.status != "pass"

    @property
    def label(self) -> str:
        """The status shown and filtered on: ``regression`` wins over the item's own status."""
        return "regression" if self.regression else self.status

    def wrong_fields(self) -> list[str]:
        wrong = [k for k, ok in self.fields.items() if not ok]
        if wrong or self.status == "pass":
            return wrong
        return ["(root)"] if self.expected is not None or self.actual is not None else []

    def diff(self) -> list[dict[str, Any]]:
        """``{"path", "expected", "actual"}`` for every differing leaf (lists of unequal length as one value)."""
        if isinstance(self.expected, dict) and self.actual is None:  # no answer: every expected field is missing
            return diff_values(self.expected, {})
        return diff_values(self.expected, self.actual)


def diff_values(expected: Any, actual: Any, path: str = "") -> list[dict[str, Any]]:
    """Field paths where two JSON values differ, with both values."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out: list[dict[str, Any]] = []
        for key in sorted(set(expected) | set(actual), key=str):
            out += diff_values(expected.get(key), actual.get(key), f"{path}.{key}" if path else str(key))
        return out
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        out = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out += diff_values(e, a, f"{path}.{i}" if path else str(i))
        return out
    return [] if expected == actual else [{"path": path or "(root)", "expected": expected, "actual": actual}]


def _status_of(row: dict[str, Any]) -> Status:
    if row.get("errors") and not row.get("attempts") and not row.get("valid"):
        return "error"
    if not row.get("valid"):
        return "invalid"
    return "fail" if row.get("match") is False else "pass"


def items_from_replay(rows: list[dict[str, Any]], *, baseline: list[dict[str, Any]] | None = None) -> list[ItemResult]:
    """Replay rows (``results.jsonl``) as item results; ``baseline`` is the baseline run's rows, if any."""
    then = {r["id"]: r for r in baseline or []}
    out = []
    for row in rows:
        before = then.get(row["id"])
        out.append(ItemResult(
            id=str(row["id"]), request=row.get("request"), expected=row.get("expected"), actual=row.get("output"),
            fields=row.get("fields") or {}, selected=row.get("selected") or [], status=_status_of(row),
            selected_then=None if before is None else before.get("selected") or [],
            baseline_status=None if before is None else _status_of(before), errors=row.get("errors") or [],
            raw_answer=row.get("raw_output") or "", why=explain(row),
        ))
    return out


def left_out(vote: dict[str, Any]) -> str:
    """The labels a vote left out for the traits the request lacks (domains/necessary.py), or ""."""
    return "; ".join(f"{label} (lacks {', '.join(traits)})" for label, traits in (vote.get("lacks") or {}).items())


def explain(row: dict[str, Any]) -> list[str]:
    """One line per label vote (what it admitted, the scores, a rule or why it stayed open) and per repair."""
    lines = []
    for vote in row.get("votes") or []:
        scores = ", ".join(f"{k} {v:.2f}" for k, v in list((vote.get("scores") or {}).items())[:4])
        if vote.get("items") is not None:
            decided = describe(vote)
        elif vote.get("rule"):
            decided = f"rule {vote['rule']!r}"
        elif vote.get("mention"):
            decided = f"admitted {vote['mention']} (the request names it)"
        elif vote.get("leftover"):
            decided = f"sure items {vote['leftover']} ({vote.get('reason', '')})"
        elif vote.get("implied"):
            decided = f"admitted {', '.join(map(str, vote['allowed']))} (implied by {vote['implied']})"
        elif vote.get("gloss") is not None:
            why = glossed(vote["gloss"], bool(vote.get("tiebreak")), bool(vote.get("leads")))
            decided = f"admitted {', '.join(map(str, vote['allowed']))} ({why})"
        elif vote.get("allowed"):
            decided = f"admitted {', '.join(map(str, vote['allowed']))}" + (" (a clear winner)" if vote.get("decided")
                                                                           else "")
        else:
            decided = f"left open ({vote.get('reason', 'no confident vote')})"
        shown = f"; scores {scores}" if scores and not vote.get("rule") else ""
        lacks = left_out(vote)
        lines.append(f"vote {vote['path']}: {decided}{shown}" + (f"; left out: {lacks}" if lacks else ""))
    lines += [f"calibrated {calibrated(c)}" for c in row.get("calibration") or [] if c.get("changed")]
    lines += [f"repair {r}" for r in row.get("repairs") or []]
    return lines


def failing_items(items: list[ItemResult | dict[str, Any]]) -> list[ItemResult]:
    """The items that did not pass, regressions first, then errors, invalid answers and wrong answers."""
    parsed = [i if isinstance(i, ItemResult) else ItemResult.model_validate(i) for i in items]
    return sorted((i for i in parsed if i.status != "pass"), key=lambda i: (_STATUS_ORDER[i.label], i.id))


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + f"… ({len(text) - _MAX_TEXT} more characters)"


def _request_lines(request: Any) -> list[tuple[str, str]]:
    """(role, text) pairs of the request."""
    if isinstance(request, list):
        return [(str(m.get("role", "?")), _text(m.get("content", ""))) if isinstance(m, dict) else ("?", _text(m))
                for m in request]
    return [] if request is None else [("user", _text(request))]


def _counts(failing: list[ItemResult]) -> tuple[dict[str, int], dict[str, int]]:
    statuses: dict[str, int] = {}
    fields: dict[str, int] = {}
    for item in failing:
        statuses[item.label] = statuses.get(item.label, 0) + 1
        for name in item.wrong_fields():
            fields[name] = fields.get(name, 0) + 1
    ordered = dict(sorted(statuses.items(), key=lambda kv: _STATUS_ORDER[kv[0]]))
    return ordered, dict(sorted(fields.items()))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _baseline_note(item: ItemResult) -> str:
    if item.baseline_status is None:
        return ""
    return f"baseline {item.baseline_status} → now {item.status}"


# ---------------------------------------------------------------- HTML

_CSS = """.fi .flt{position:absolute;opacity:0;pointer-events:none}
.fi .filters label{display:inline-block;margin:2px 4px 2px 0;padding:2px 8px;border:1px solid #bbb;border-radius:10px;
cursor:pointer;font-size:13px}.fi .filters{margin:8px 0}
.fi details{border:1px solid #ddd;border-radius:4px;margin:6px 0;padding:4px 8px}
.fi summary{cursor:pointer;font-size:14px}.fi .tag{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;
color:#fff;margin-right:6px}.fi .regression{background:#B22222}.fi .error{background:#555}
.fi .invalid{background:#E45756}
.fi .fail{background:#F58518}.fi pre{white-space:pre-wrap;margin:2px 0;font-size:12px;background:#f7f7f7;padding:4px}
.fi table{width:100%}.fi td.exp{background:#eef7ee}.fi td.act{background:#fbeeee}"""


def failing_items_html(items: list[ItemResult | dict[str, Any]], *, title: str = "Failing items",
                       prefix: str = "fi") -> str:
    """An HTML section (with its own ``<style>``) listing the failing items of ``items``.

    ``items`` are :class:`ItemResult` objects or dicts of the same shape. Filtering needs no script: radio
    buttons for status and for field hide, through CSS, every item that lacks the chosen status or wrong field
    (the two filters combine). ``prefix`` keeps ids unique when one page holds several sections. Each item is a
    ``<details>`` element with id ``<prefix>-item-<slug of id>``.
    """
    failing = failing_items(items)
    statuses, fields = _counts(failing)
    field_ids = {name: f"{prefix}-f{i}" for i, name in enumerate(fields)}
    esc = html.escape
    rules = [_CSS.replace(".fi", f".{prefix}")]
    radios = [f'<input type="radio" class="flt" name="{prefix}-status" id="{prefix}-s-all" checked>']
    radios += [f'<input type="radio" class="flt" name="{prefix}-status" id="{prefix}-s-{s}">' for s in statuses]
    radios.append(f'<input type="radio" class="flt" name="{prefix}-field" id="{prefix}-f-all" checked>')
    radios += [f'<input type="radio" class="flt" name="{prefix}-field" id="{fid}">' for fid in field_ids.values()]
    for rid, cls in [(f"{prefix}-s-{s}", f"st-{s}") for s in statuses] + [(fid, fid) for fid in field_ids.values()]:
        rules.append(f"#{rid}:checked~.items .item:not(.{cls}){{display:none}}"
                     f"#{rid}:checked~.filters label[for={rid}]{{background:#4C78A8;color:#fff}}")
    for rid in (f"{prefix}-s-all", f"{prefix}-f-all"):
        rules.append(f"#{rid}:checked~.filters label[for={rid}]{{background:#4C78A8;color:#fff}}")
    status_labels = [f'<label for="{prefix}-s-all">all ({len(failing)})</label>'] + [
        f'<label for="{prefix}-s-{s}">{s} ({n})</label>' for s, n in statuses.items()]
    field_labels = [f'<label for="{prefix}-f-all">all</label>'] + [
        f'<label for="{field_ids[f]}">{esc(f)} ({n})</label>' for f, n in fields.items()]
    filters = (f'<div class="filters">Status: {"".join(status_labels)}<br>Wrong field: {"".join(field_labels)}'
               "</div>")
    body = [_item_html(item, prefix=prefix, field_ids=field_ids, open_=item.regression or n < 20)
            for n, item in enumerate(failing)]
    if not failing:
        body = ["<p>Every item passed.</p>"]
    return (f'<section class="{prefix}" id="{prefix}"><style>{"".join(rules)}</style>'
            f"<h2>{esc(title)} ({len(failing)})</h2>{''.join(radios)}{filters}"
            f'<div class="items">{"".join(body)}</div></section>')


def _item_html(item: ItemResult, *, prefix: str, field_ids: dict[str, str], open_: bool) -> str:
    esc = html.escape
    wrong = item.wrong_fields()
    classes = " ".join(["item", f"st-{item.label}"] + [field_ids[f] for f in wrong if f in field_ids])
    note = _baseline_note(item)
    summary = (f'<summary><span class="tag {item.label}">{item.label}</span><b>{esc(item.id)}</b>'
               + (f" · wrong: {esc(', '.join(wrong))}" if wrong else "")
               + (f" · {esc(note)}" if note else "") + "</summary>")
    parts = [summary, "<h4>Request</h4>"]
    parts += [f"<pre><b>{esc(role)}:</b> {esc(text)}</pre>" for role, text in _request_lines(item.request)]
    diff = item.diff() if item.expected is not None else []
    if diff:
        rows = "".join(f'<tr><td>{esc(d["path"])}</td><td class="exp"><pre>{esc(_text(d["expected"]))}</pre></td>'
                       f'<td class="act"><pre>{esc(_text(d["actual"]))}</pre></td></tr>' for d in diff)
        parts.append(f"<table><thead><tr><th>field</th><th>expected</th><th>actual</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
    elif item.actual is not None:
        parts.append(f"<h4>Answer</h4><pre>{esc(_text(item.actual))}</pre>")
    if item.raw_answer:
        parts.append(f"<h4>Answer given (not valid)</h4><pre>{esc(_text(item.raw_answer))}</pre>")
    if item.errors:
        parts.append("<h4>Errors</h4><ul>" + "".join(f"<li>{esc(e)}</li>" for e in item.errors[:10]) + "</ul>")
    if item.why:
        parts.append("<h4>Why</h4><ul>" + "".join(f"<li>{esc(w)}</li>" for w in item.why[:12]) + "</ul>")
    parts.append(f"<p>Selected examples: {esc(', '.join(item.selected)) or '(none)'}"
                 + (f"<br>Selected in the baseline: {esc(', '.join(item.selected_then)) or '(none)'}"
                    if item.selected_then is not None else "") + "</p>")
    return (f'<details class="{classes}" id="{prefix}-item-{_slug(item.id)}"{" open" if open_ else ""}>'
            f"{''.join(parts)}</details>")


# ---------------------------------------------------------------- Markdown

def _cell(value: Any) -> str:
    text = _text(value).replace("|", "\\|").replace("\n", " ")
    return f"`{text}`" if "`" not in text else text


def failing_items_md(items: list[ItemResult | dict[str, Any]], *, title: str = "Failing items",
                     level: int = 2) -> str:
    """A Markdown section listing the failing items of ``items`` (see :func:`failing_items_html`).

    Filtering is by anchored index sections: one per status and one per wrong field, each linking to the items
    (``#item-<slug of id>``). ``level`` is the heading level of the section title.
    """
    failing = failing_items(items)
    statuses, fields = _counts(failing)
    h = "#" * level
    out = [f"{h} {title} ({len(failing)})", ""]
    if not failing:
        return "\n".join(out + ["Every item passed.", ""])
    out.append("Filter by status: " + " · ".join(f"[{s} ({n})](#status-{s})" for s, n in statuses.items()))
    out.append("")
    out.append("Filter by wrong field: " + " · ".join(f"[{f} ({n})](#field-{_slug(f)})" for f, n in fields.items()))
    out.append("")
    for s in statuses:
        out += [f'<a id="status-{s}"></a>', "", f"{h}# Status: {s}", ""]
        out += [f"- [{i.id}](#item-{_slug(i.id)})" + (f" — {', '.join(i.wrong_fields())}" if i.wrong_fields() else "")
                for i in failing if i.label == s] + [""]
    for f in fields:
        out += [f'<a id="field-{_slug(f)}"></a>', "", f"{h}# Field: {f}", ""]
        out += [f"- [{i.id}](#item-{_slug(i.id)}) ({i.label})" for i in failing if f in i.wrong_fields()] + [""]
    out += [f"{h}# Items", ""]
    for item in failing:
        note = _baseline_note(item)
        out += [f'<a id="item-{_slug(item.id)}"></a>', "",
                f"{h}## {item.id} · {item.label}" + (f" ({note})" if note else ""), "", "Request:", ""]
        out += [f"> **{role}:** {text}".replace("\n", "\n> ") for role, text in _request_lines(item.request)] + [""]
        diff = item.diff() if item.expected is not None else []
        if diff:
            out += ["| field | expected | actual |", "| --- | --- | --- |"]
            out += [f"| {d['path']} | {_cell(d['expected'])} | {_cell(d['actual'])} |" for d in diff] + [""]
        elif item.actual is not None:
            out += [f"Answer: {_cell(item.actual)}", ""]
        if item.raw_answer:
            out += [f"Answer given (not valid): {_cell(item.raw_answer)}", ""]
        if item.errors:
            out += ["Errors:", ""] + [f"- {e}" for e in item.errors[:10]] + [""]
        if item.why:
            out += ["Why:", ""] + [f"- {w}" for w in item.why[:12]] + [""]
        out.append(f"Selected examples: {', '.join(item.selected) or '(none)'}")
        if item.selected_then is not None:
            out.append(f"  \nSelected in the baseline: {', '.join(item.selected_then) or '(none)'}")
        out.append("")
    return "\n".join(out)
