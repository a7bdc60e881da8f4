"""Data records: memory entries (examples, negatives, past Q&A), interactions and their attempts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SUCCESS_STATUSES",
    "Attempt",
    "ErrorKind",
    "Interaction",
    "InteractionStatus",
    "MemoryFilter",
    "MemoryRecord",
    "SearchHit",
    "SelectedExample",
    "iso",
    "new_id",
    "utcnow",
]

Kind = Literal["example", "negative", "interaction"]
Status = Literal["validated", "approved", "rejected", "failed", "pending"]
POSITIVE_STATUSES = ("validated", "approved")
InteractionStatus = Literal["validated", "failed", "answered", "error"]
#: the interaction statuses that carry an answer: validated against the domain's model, or free text answered
SUCCESS_STATUSES: tuple[InteractionStatus, ...] = ("validated", "answered")
#: why an attempt failed: "" (it did not), the answer failed validation, ran out of tokens, the call failed
#: (connection, 5xx: retried) or the time budget ran out
ErrorKind = Literal["", "validation", "truncated", "transport", "timeout"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """Fixed-width UTC ISO-8601 with microseconds, so stored strings sort like the times they name."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    return uuid.uuid4().hex


class MemoryRecord(BaseModel):
    """One entry of memory. ``answer`` is the answer text (JSON text for schema'd domains)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    tenant: str = Field(min_length=1, max_length=64)
    domain: str = Field(min_length=1)
    kind: Kind = "interaction"
    status: Status = "validated"
    source: str = ""
    question: str = Field(min_length=1)
    answer: str
    reason: str = ""  # negatives: why the wrong answer is wrong
    wrong: str = ""  # negatives: the wrong answer
    score: float | None = None
    template_version: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    meta: dict[str, Any] = Field(default_factory=dict)


class MemoryFilter(BaseModel):
    tenant: str | None = None
    domain: str | None = None
    kinds: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None
    created_before: datetime | None = None  # the as_of guard: strictly before
    exclude_ids: frozenset[str] = frozenset()


class SearchHit(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    record: MemoryRecord
    similarity: float
    vector: Any = None  # np.ndarray (dim,), used by MMR


class SelectedExample(BaseModel):
    """An example or negative that went into a prompt, with why it was chosen."""

    id: str
    source: str  # curated | memory
    kind: str
    status: str
    similarity: float
    mmr_rank: int
    tokens: int
    question: str
    answer: str
    reason: str = ""
    wrong: str = ""


class Attempt(BaseModel):
    number: int
    messages: list[dict[str, Any]]
    prompt: str | None = None  # the flat prompt, for base models
    options: dict[str, Any] = Field(default_factory=dict)
    raw_output: str = ""
    output: Any = None  # the validated value, when this attempt passed
    errors: list[str] = Field(default_factory=list)
    repairs: list[str] = Field(default_factory=list)  # what the domain's deterministic repair changed
    votes: list[dict[str, Any]] = Field(default_factory=list)  # label votes that shaped this attempt's grammar
    grammar_notes: list[str] = Field(default_factory=list)  # grounding, derived fields, votes, per-clause steps
    calibration: list[dict[str, Any]] = Field(default_factory=list)  # request/calibration.py: per label field
    error_kind: ErrorKind = ""
    transport_retries: int = 0
    done_reason: str = ""
    duration_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # each generated token with its log-probability, when the backend gives them (request/confidence.py)
    logprobs: list[tuple[str, float]] | None = None


class Interaction(BaseModel):
    id: str = Field(default_factory=new_id)
    created_at: datetime = Field(default_factory=utcnow)
    tenant: str
    domain: str
    status: InteractionStatus
    request: dict[str, Any]
    question: str
    selected: list[SelectedExample] = Field(default_factory=list)
    negatives: list[SelectedExample] = Field(default_factory=list)
    template_version: str
    model: str
    backend: str
    options: dict[str, Any] = Field(default_factory=dict)
    attempts: list[Attempt] = Field(default_factory=list)
    output: Any = None
    output_text: str = ""
    error: str = ""
    memory_available: bool = True
    replay_of: str | None = None  # set on replays: the interaction replayed; None for live traffic
    timings_ms: dict[str, float] = Field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    variant: str = ""  # the A/B template-set variant that rendered the prompt ("" = the domain has none)
    confidence: float | None = None  # confidence.py: how sure the answer is, in [0, 1] (None: free text)
    confidence_parts: dict[str, float] = Field(default_factory=dict)
    reviewed_sources: list[str] = Field(default_factory=list)  # reviewed answers that shaped it (examples, voters)
    taught: int = 0  # reviewed answers the domain had learnt from (cue words, prototypes, ...) when it answered

    @property
    def succeeded(self) -> bool:
        """The call produced an answer (validated, or free text answered): not failed, not errored."""
        return self.status in SUCCESS_STATUSES
