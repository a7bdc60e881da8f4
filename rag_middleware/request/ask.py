"""What one request carries through the stages: the caller's input, parsed turns, and the switches.

``AskRequest`` is built once from ``Middleware.ask(...)``/``render``/``stream`` keywords (unknown keywords are
an error) and travels unchanged through routing, assembly and the attempt loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import RequestError

__all__ = ["AskRequest", "Request", "Switches", "parse_request"]


@dataclass(frozen=True)
class Switches:
    """Turn parts of the assembly off (ablations, replay flags). None = the domain's own setting."""

    memory: bool = True
    examples: bool = True
    negatives: bool = True
    cot: bool | None = None
    repair: bool = True  # the domain's deterministic repair before validation
    guide: bool = True  # the domain's step guidance (labelled clauses steer the grammar)
    ground: bool = True  # grounded fields admit only values from the request
    derive: bool = True  # derived fields are filled by their map, never asked of the model
    vote: bool = True  # neighbours vote on voted fields; a confident vote narrows the grammar
    decide: bool = True  # a clear winner or a named label is admitted alone (off on a retry after it failed)
    harden: bool = True  # near misses snapped, repeats dropped, lists bounded
    calibrate: bool = True  # the model's lean towards some labels divided out (calibration.py)
    hooks: bool = True  # the domain's Python hooks (grammar, repair, clause split/rule); off: data only


class Request(BaseModel):
    """What is being answered: the last user turn, with earlier turns as context."""

    question: str
    history: list[dict[str, Any]] = Field(default_factory=list)
    system: str = ""


def parse_request(question_or_messages: str | list[dict[str, Any]]) -> Request:
    if isinstance(question_or_messages, str):
        text = question_or_messages.strip()
        if not text:
            raise RequestError("the question is empty")
        return Request(question=text)
    messages = _checked_messages(question_or_messages)
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None or not messages[last_user]["content"].strip():
        raise RequestError("the messages have no non-empty user turn to answer")
    system = "\n\n".join(m["content"] for m in messages[:last_user] if m["role"] == "system" and m["content"])
    history = [m for m in messages[:last_user] if m["role"] != "system"]
    return Request(question=messages[last_user]["content"].strip(), history=history, system=system)


def _checked_messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list of {role, content}")
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("system", "user", "assistant", "tool"):
            raise RequestError(f"messages[{i}] needs a role of system, user, assistant or tool")
        if not isinstance(msg.get("content", ""), str):
            raise RequestError(f"messages[{i}].content must be a string")
        out.append({"role": msg["role"], "content": msg.get("content") or ""})
    return out


class AskRequest(BaseModel):
    """One call's input and settings. ``tenant`` None = the configured default (resolved by the router)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    input: str | list[dict[str, Any]]
    domain: str
    tenant: str | None = None
    user: str | None = None  # or a session id: keeps an A/B-tested domain's variant sticky
    variant: str | None = None  # forces one A/B variant
    as_of: datetime | None = None  # only memory written before this instant (replays)
    exclude_ids: frozenset[str] = frozenset()  # records (and curated examples) held out
    switches: Switches = Switches()
    options: dict[str, Any] | None = None  # model options over the domain's
    model: str | None = None  # the upstream model (else the domain's, else the backend's)
    learn: bool | None = None  # None = settings.learn
    max_attempts: int | None = None
    raise_on_invalid: bool = True
    interaction_id: str | None = None  # lets a caller (the server) know the record's id before the answer
    replay_of: str | None = None  # marks the record as a replay of that interaction

    @classmethod
    def of(cls, request: AskRequest | str | list[dict[str, Any]], **fields: Any) -> AskRequest:
        """An AskRequest from one, or from the input and keywords; a misspelt keyword is a TypeError, as in any call."""
        if isinstance(request, AskRequest):
            return request.model_copy(update=fields) if fields else request
        unknown = sorted(set(fields) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)}")
        return cls(input=request, **fields)
