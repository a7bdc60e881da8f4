"""Reviewer feedback and what it does to memory (the learning loop's second half).

A feedback record approves, edits or rejects one recorded interaction, with an optional 1-5 score, notes and
a reviewer. Records live in the ``feedback`` table, one row per (interaction, reviewer): the same reviewer
submitting again replaces their row. The newest row of an interaction decides its memory entry, which the
pipeline's learning loop stored under the interaction's id:

- approve: the entry becomes ``approved`` (selection ranks it ahead of merely validated answers);
- edit: the corrected output, validated against the domain's output model, becomes the gold answer
  (``approved``, ``source=edited``); an edit that fails validation is refused with the errors;
- reject: the entry leaves positive retrieval and becomes a ``negative`` record: ``wrong`` is the rejected
  answer, ``reason`` the reviewer's reason.

An interaction that never reached memory (learning off, or every attempt failed) gets its entry created.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, model_validator

from ..errors import InvalidEditError, RequestError, StoreError, UnknownInteractionError
from ..memory.access import MemoryAccess
from ..memory.db import connect, sqlite_errors
from ..records import Interaction, MemoryRecord, iso, utcnow

if TYPE_CHECKING:
    from ..domains import DomainRegistry

__all__ = ["Feedback", "FeedbackLog", "FeedbackResult", "MemoryAccess", "apply_feedback", "check_edit",
           "memory_state"]

Action = Literal["approve", "edit", "reject"]


class Feedback(BaseModel):
    interaction_id: str = Field(min_length=1, max_length=200)
    action: Action
    score: int | None = Field(None, ge=1, le=5)
    notes: str = Field("", max_length=10_000)
    reviewer: str = Field("anonymous", min_length=1, max_length=100)
    edited_output: Any = None  # edit: the corrected output (a JSON value or JSON text; text for free-text domains)
    reason: str = Field("", max_length=10_000)  # reject: why the answer is wrong
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _needs(self) -> Feedback:
        if self.action == "edit" and (self.edited_output is None or self.edited_output == ""):
            raise ValueError("an edit needs edited_output (the corrected answer)")
        if self.action == "reject" and not self.reason.strip():
            raise ValueError("a rejection needs a reason (it is shown to the model with the wrong answer)")
        return self


class FeedbackResult(BaseModel):
    feedback: Feedback
    replaced: bool  # this reviewer had given feedback on the interaction before
    effective: Action  # the newest feedback of the interaction (what memory now reflects)
    memory: MemoryRecord


class FeedbackLog:
    """The ``feedback`` table: one row per (interaction, reviewer), durable in the shared SQLite file."""

    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        self._lock = threading.Lock()

    def put(self, fb: Feedback) -> bool:
        """Insert or replace this reviewer's feedback; True when it replaced an earlier one."""
        edited = None if fb.edited_output is None else json.dumps(fb.edited_output, ensure_ascii=False)
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                before = self._conn.execute("SELECT created_at FROM feedback WHERE interaction_id = ? AND reviewer = ?",
                                            (fb.interaction_id, fb.reviewer)).fetchone()
                self._conn.execute(
                    "INSERT INTO feedback (interaction_id, reviewer, action, score, notes, reason, edited_output,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(interaction_id, reviewer) DO UPDATE SET action = excluded.action,"
                    " score = excluded.score, notes = excluded.notes, reason = excluded.reason,"
                    " edited_output = excluded.edited_output, updated_at = excluded.updated_at",
                    (fb.interaction_id, fb.reviewer, fb.action, fb.score, fb.notes, fb.reason, edited,
                     iso(fb.created_at), iso(fb.updated_at)),
                )
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"cannot record feedback on {fb.interaction_id}: {exc}") from None
        return before is not None

    def _rows(self, where: str = "", params: tuple[Any, ...] = ()) -> list[Feedback]:
        with self._lock, sqlite_errors("reading feedback"):
            rows = self._conn.execute(
                "SELECT interaction_id, reviewer, action, score, notes, reason, edited_output, created_at, updated_at"
                f" FROM feedback {where} ORDER BY updated_at DESC, reviewer", params).fetchall()
        return [Feedback(interaction_id=r[0], reviewer=r[1], action=r[2], score=r[3], notes=r[4], reason=r[5],
                         edited_output=None if r[6] is None else json.loads(r[6]), created_at=r[7], updated_at=r[8])
                for r in rows]

    def of(self, interaction_id: str) -> list[Feedback]:
        """Every reviewer's feedback on one interaction, newest first."""
        return self._rows("WHERE interaction_id = ?", (interaction_id,))

    def effective(self) -> dict[str, Feedback]:
        """Interaction id -> its newest feedback (the one memory reflects)."""
        out: dict[str, Feedback] = {}
        for fb in self._rows():
            out.setdefault(fb.interaction_id, fb)
        return out

    def count(self) -> int:
        with self._lock, sqlite_errors("counting feedback"):
            return int(self._conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _answer_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def check_edit(domains: DomainRegistry, interaction: Interaction, edited: Any) -> Any:
    """The corrected output, validated against the domain's model (refused with the errors when invalid)."""
    domain = domains.get(interaction.domain)
    if domain.free_text:
        text = edited if isinstance(edited, str) else _answer_text(edited)
        if not text.strip():
            raise InvalidEditError("the edited answer is empty", errors=["(root): the answer is empty"])
        return text
    if isinstance(edited, str):
        try:
            edited = json.loads(edited)
        except json.JSONDecodeError as exc:
            raise InvalidEditError(
                f"the edited answer is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                errors=[f"(root): invalid JSON: {exc.msg}"]) from None
    outcome = domain.validator.validate_value(edited, interaction.question)
    if not outcome.ok:
        raise InvalidEditError(f"the edited answer fails the {domain.name} output model: {'; '.join(outcome.errors)}",
                               errors=outcome.errors)
    return outcome.value


def _rejected_answer(interaction: Interaction) -> str:
    if interaction.output_text:
        return interaction.output_text
    return interaction.attempts[-1].raw_output if interaction.attempts else ""


def memory_state(interaction: Interaction, fb: Feedback) -> dict[str, Any]:
    """The memory fields that the (newest) feedback ``fb`` gives the interaction's entry."""
    meta = {"feedback": {"action": fb.action, "reviewer": fb.reviewer, "score": fb.score,
                         "at": iso(fb.updated_at)}}
    if fb.action == "reject":
        return {"kind": "negative", "status": "rejected", "source": "rejected", "answer": "",
                "wrong": _rejected_answer(interaction), "reason": fb.reason.strip(), "meta": meta}
    if fb.action == "edit":
        return {"kind": "interaction", "status": "approved", "source": "edited",
                "answer": _answer_text(fb.edited_output), "wrong": "", "reason": "", "meta": meta}
    return {"kind": "interaction", "status": "approved", "source": "interaction",
            "answer": interaction.output_text or _answer_text(interaction.output), "wrong": "", "reason": "",
            "meta": meta}


def apply_feedback(memory: MemoryAccess, domains: DomainRegistry, fb: Feedback, *,
                   log: FeedbackLog | None = None) -> FeedbackResult:
    """Record ``fb`` and bring the interaction's memory entry in line with its newest feedback (an edit is
    validated against the domain's output model in ``domains``)."""
    interaction = memory.journal.get(fb.interaction_id)
    if interaction is None:
        raise UnknownInteractionError(fb.interaction_id)
    if fb.action == "edit":
        fb = fb.model_copy(update={"edited_output": check_edit(domains, interaction, fb.edited_output)})
    elif fb.action == "approve" and not interaction.succeeded:
        raise RequestError(f"interaction {interaction.id} has no valid answer to approve ({interaction.status}); "
                           "give the corrected answer as an edit instead")
    own = log is None
    log = log or FeedbackLog(memory.db_path)
    try:
        earlier = {f.reviewer: f for f in log.of(fb.interaction_id)}
        if fb.reviewer in earlier:  # a resubmission keeps when the reviewer first spoke
            fb = fb.model_copy(update={"created_at": earlier[fb.reviewer].created_at})
        replaced = log.put(fb)
        newest = log.of(fb.interaction_id)[0]
    finally:
        if own:
            log.close()
    entry = _write_memory(memory, interaction, newest)
    return FeedbackResult(feedback=fb, replaced=replaced, effective=newest.action, memory=entry)


def _write_memory(memory: MemoryAccess, interaction: Interaction, fb: Feedback) -> MemoryRecord:
    state = memory_state(interaction, fb)
    existing = memory.store.get([interaction.id], tenant=interaction.tenant)
    if existing:
        meta = {**existing[0].meta, **state["meta"]}
        if not memory.store.update(interaction.id, tenant=interaction.tenant, **{**state, "meta": meta}):
            raise StoreError(f"memory entry {interaction.id} vanished while feedback was applied")
        return existing[0].model_copy(update={**state, "meta": meta})
    record = MemoryRecord(id=interaction.id, tenant=interaction.tenant, domain=interaction.domain,
                          question=interaction.question, template_version=interaction.template_version,
                          created_at=interaction.created_at, **state)
    memory.store.upsert([record], memory.embedder.encode([interaction.question]))
    return record
