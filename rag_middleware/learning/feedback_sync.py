"""Open WebUI judgements applied as our feedback: each rated or edited message mapped to its interaction.

Mapping, in order:

1. ``id``: our interaction id, where Open WebUI kept it with the message (see
   :func:`rag_middleware.learning.openwebui.interaction_id_of`);
2. ``chat+message``: Open WebUI's chat and message ids, which our server records on the interaction
   (``request["openwebui"]``) when Open WebUI forwards them as ``X-OpenWebUI-Chat-Id`` and
   ``X-OpenWebUI-Message-Id`` headers; when one message has several (a continued answer), the one whose answer
   is the message's wins, else the newest;
3. ``question+answer``: the model, the question and the answer, matched against the interaction journal (the
   model names our virtual model ``<domain>:latest`` or the upstream model recorded; the question is the user's
   message; the answer is compared as JSON when both sides parse, else with whitespace collapsed). When several
   interactions match, one recorded in the same Open WebUI chat wins, then the one recorded closest to the
   message's time.

Each interaction is claimed once per sync.

Actions: an edited answer is an ``edit`` (the user's text, validated as any edit); else a thumbs up approves,
and a thumbs down rejects with the comment (or the picked reason) as the reason; a thumbs down with neither is
skipped. The reviewer is ``openwebui:<user id>``, so the sync is idempotent: feedback equal to what that
reviewer already gave is reported as already synced and not written again, and a changed rating replaces it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from ..errors import RagMiddlewareError
from .feedback import Feedback, FeedbackLog, MemoryAccess, apply_feedback, check_edit
from .openwebui import Judgement
from ..records import Interaction

if TYPE_CHECKING:
    from ..request.pipeline import Middleware

__all__ = ["SyncRow", "action_of", "match_interaction", "sync_judgements"]

Outcome = Literal["applied", "replaced", "already synced", "would apply", "unmatched", "skipped", "refused"]
_SCAN_LIMIT = 100_000  # interactions of one domain scanned for question matches (and of one chat, looked up)
_ID_WINDOW = timedelta(days=7)  # chat-id matches are looked for from this long before the oldest message


class SyncRow(BaseModel):
    """What the sync did with one Open WebUI message."""

    key: str  # <chat id>/<message id>
    model: str
    question: str
    rating: int | None
    action: str  # approve | reject | edit | "" (nothing to do)
    outcome: Outcome
    interaction_id: str | None = None
    matched_by: str = ""  # "id" | "chat+message" (Open WebUI's ids) | "question+answer"
    detail: str = ""


def action_of(j: Judgement) -> tuple[str, str]:
    """(action, why not) for one judgement: the action is "" when there is nothing to apply."""
    if j.edited is not None:
        return "edit", ""
    if j.rating == 1:
        return "approve", ""
    if j.rating == -1:
        if j.comment or j.reason:
            return "reject", ""
        return "", "thumbs down without a comment: a rejection needs a reason"
    return "", "not rated"


def _norm(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return " ".join(text.split())


def _answers(i: Interaction) -> list[Any]:
    given = [i.output_text, i.output if not isinstance(i.output, str) else None,
             i.attempts[-1].raw_output if i.attempts else None]
    return [_norm(a) if isinstance(a, str) else a for a in given if a not in (None, "")]


def _epoch(stamp: float | None) -> float | None:
    """A message's timestamp in seconds (Open WebUI writes seconds; milliseconds are accepted too)."""
    if stamp is None:
        return None
    return stamp / 1000 if stamp > 10_000_000_000 else float(stamp)


def _chat_ids(i: Interaction) -> dict[str, str]:
    """Open WebUI's ids recorded on an interaction (``request["openwebui"]``), or {}."""
    ids = i.request.get("openwebui") if isinstance(i.request, dict) else None
    return ids if isinstance(ids, dict) else {}


class _Journal:
    """The interactions of each domain, indexed by normalised question (read once per sync, when first needed),
    and those of each Open WebUI chat (looked up by the journal's chat-id index, once per chat)."""

    def __init__(self, mw: Middleware, *, since: datetime | None = None) -> None:
        self.mw = mw
        self.since = since  # the chat lookup skips older interactions
        self._by_domain: dict[str | None, dict[str, list[Interaction]]] = {}
        self._by_chat: dict[str, list[Interaction]] = {}

    def domain_of(self, model: str) -> str | None:
        name = model[: -len(":latest")] if model.endswith(":latest") else model
        return name if name in self.mw.domains.names() else None

    def asked(self, domain: str | None, question: str) -> list[Interaction]:
        if domain not in self._by_domain:
            index: dict[str, list[Interaction]] = {}
            for i in self.mw.journal.list(domain=domain, limit=_SCAN_LIMIT):
                index.setdefault(" ".join(i.question.split()), []).append(i)
            self._by_domain[domain] = index
        return self._by_domain[domain].get(" ".join(question.split()), [])

    def in_chat(self, chat_id: str) -> list[Interaction]:
        """The interactions recorded with this Open WebUI chat id, newest first."""
        if not chat_id:
            return []
        if chat_id not in self._by_chat:
            self._by_chat[chat_id] = self.mw.journal.in_chat(chat_id, since=self.since, limit=_SCAN_LIMIT)
        return self._by_chat[chat_id]


def match_interaction(j: Judgement, journal: _Journal, *, claimed: set[str]) -> tuple[Interaction | None, str, str]:
    """(interaction, matched by, why not) for one judgement."""
    if j.interaction_id:
        found = journal.mw.journal.get(j.interaction_id)
        if found is not None:
            return found, "id", ""
    answer = _norm(j.answer)
    chat = journal.in_chat(j.chat_id)
    sent = [i for i in chat if _chat_ids(i).get("message_id") == j.message_id and i.id not in claimed]
    if sent:
        sent.sort(key=lambda i: answer not in _answers(i))  # stable: newest first among equals
        return sent[0], "chat+message", ""
    domain = journal.domain_of(j.model)
    base = j.model[: -len(":latest")] if j.model.endswith(":latest") else j.model
    pool = journal.asked(domain, j.question) if domain else [
        i for i in journal.asked(None, j.question) if i.model in (j.model, base)]
    if not pool:
        where = f"domain {domain}" if domain else f"model {j.model or '(none)'}"
        return None, "", f"no interaction of {where} with this question"
    same = [i for i in pool if answer in _answers(i) and i.id not in claimed]
    if not same:
        return None, "", f"{len(pool)} interaction(s) with this question, none with this answer"
    here = {i.id for i in chat}
    when = _epoch(j.timestamp)
    at = datetime.fromtimestamp(when, tz=UTC) if when is not None else None
    same.sort(key=lambda i: (i.id not in here, abs((i.created_at - at).total_seconds()) if at else 0.0))
    return same[0], "question+answer", ""


def _same(a: Feedback, b: Feedback) -> bool:
    return (a.action, a.reason.strip(), a.score, a.edited_output) == (b.action, b.reason.strip(), b.score,
                                                                       b.edited_output)


def sync_judgements(mw: Middleware, judgements: list[Judgement], *, dry_run: bool = False,
                    on_item: Callable[[SyncRow], None] | None = None) -> list[SyncRow]:
    """Apply every judgement that maps to an interaction; one :class:`SyncRow` per judgement, in order."""
    stamps = [_epoch(j.timestamp) for j in judgements]
    oldest = min(stamps) if stamps and None not in stamps else None
    since = datetime.fromtimestamp(oldest, tz=UTC) - _ID_WINDOW if oldest is not None else None
    journal = _Journal(mw, since=since)
    log = FeedbackLog(mw.settings.db_path)
    claimed: set[str] = set()
    rows: list[SyncRow] = []
    try:
        for j in judgements:
            row = _sync_one(mw, j, journal, log, claimed, dry_run=dry_run)
            rows.append(row)
            if on_item:
                on_item(row)
    finally:
        log.close()
    return rows


def _sync_one(mw: Middleware, j: Judgement, journal: _Journal, log: FeedbackLog, claimed: set[str], *,
              dry_run: bool) -> SyncRow:
    action, why_not = action_of(j)
    row = SyncRow(key=j.key, model=j.model, question=j.question, rating=j.rating, action=action, outcome="skipped",
                  detail=why_not)
    found, matched_by, why = match_interaction(j, journal, claimed=claimed)
    if found is None:
        return row.model_copy(update={"outcome": "unmatched", "detail": why})
    claimed.add(found.id)
    row = row.model_copy(update={"interaction_id": found.id, "matched_by": matched_by})
    if not action:
        return row
    reviewer = f"openwebui:{j.user_id or 'anonymous'}"[:100]
    try:
        fb = Feedback(interaction_id=found.id, action=action, score=j.score, reviewer=reviewer,
                      reason=(j.comment or j.reason) if action == "reject" else "",
                      notes=j.comment if action != "reject" else (j.reason if j.comment else ""),
                      edited_output=j.edited if action == "edit" else None)
    except ValueError as exc:
        return row.model_copy(update={"outcome": "refused", "detail": str(exc).splitlines()[-1]})
    earlier = next((f for f in log.of(found.id) if f.reviewer == reviewer), None)
    if earlier is not None and _same(earlier, _comparable(mw, found, fb)):
        return row.model_copy(update={"outcome": "already synced"})
    if dry_run:
        return row.model_copy(update={"outcome": "would apply"})
    try:
        result = apply_feedback(MemoryAccess.of(mw), mw.domains, fb, log=log)
    except RagMiddlewareError as exc:
        return row.model_copy(update={"outcome": "refused", "detail": exc.one_line()})
    return row.model_copy(update={"outcome": "replaced" if result.replaced else "applied",
                                  "detail": f"memory {result.memory.kind}/{result.memory.status}"})


def _comparable(mw: Middleware, interaction: Interaction, fb: Feedback) -> Feedback:
    """``fb`` as it would be stored (an edit's text parsed and validated as the domain's output)."""
    if fb.action != "edit":
        return fb
    try:
        return fb.model_copy(update={"edited_output": check_edit(mw.domains, interaction, fb.edited_output)})
    except RagMiddlewareError:
        return fb
