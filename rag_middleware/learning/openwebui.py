"""Reading reviewers' judgements out of Open WebUI through its HTTP API.

Open WebUI (tested against 0.12) keeps a thumbs up or down as a *feedback* record (``type: "rating"``): ``data``
holds ``rating`` (1 or -1), the chosen ``reason``, the ``comment`` and ``details.rating`` (1-10); ``meta`` holds
``chat_id`` and ``message_id``; ``snapshot.chat`` is the chat as it was when the user clicked. The chat keeps
every message in ``chat.history.messages``, keyed by id: an assistant message has ``model``, ``content``,
``parentId`` (the user's message) and, once edited in place, ``originalContent`` (what the model said).

Endpoints read (all with ``Authorization: Bearer <token>``):

- ``GET /api/v1/evaluations/feedbacks/all/export``: every feedback with its snapshot (admin); without admin
  rights, ``GET /api/v1/evaluations/feedbacks/user?page=N`` (the token's own feedback, no snapshot);
- ``GET /api/v1/chats/all``: the token user's chats, one JSON object per line (or a JSON list);
- ``GET /api/v1/chats/{id}``: one chat, for a feedback whose chat is not among those.

:func:`collect_judgements` turns them into :class:`Judgement` objects, one per rated or edited assistant
message; matching them to our interactions is :mod:`rag_middleware.learning.feedback_sync`'s job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import OpenWebUIAuthError, OpenWebUIError, OpenWebUIUnavailableError

__all__ = ["Judgement", "OpenWebUIClient", "collect_judgements", "interaction_id_of"]

# where an interaction id of ours can sit in an Open WebUI message: extra usage fields of an OpenAI-compatible
# response are kept in ``message.usage``; ``info`` is the older name of that dict
_ID_KEYS = ("rag_interaction_id", "interaction_id")


class OpenWebUIClient:
    """A small synchronous client of Open WebUI's API; httpx errors become :mod:`rag_middleware.errors` types."""

    def __init__(self, base_url: str, *, token: str, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})

    def __enter__(self) -> OpenWebUIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, *, params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = self._http.get(path, params=params)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise OpenWebUIUnavailableError(self.base_url, str(exc) or type(exc).__name__) from None
        except httpx.HTTPError as exc:
            raise OpenWebUIError(f"GET {self.base_url}{path} failed: {exc or type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise OpenWebUIAuthError(self.base_url, response.status_code)
        if response.status_code >= 400:
            raise OpenWebUIError(f"GET {self.base_url}{path} answered {response.status_code}: "
                                 f"{_detail(response)}")
        return response

    def _json(self, path: str, *, params: dict[str, Any] | None = None) -> Any:
        response = self._get(path, params=params)
        try:
            return response.json()
        except ValueError:
            raise OpenWebUIError(f"GET {self.base_url}{path} did not answer JSON: {response.text[:120]!r}") from None

    def feedbacks(self) -> list[dict[str, Any]]:
        """Every rating feedback the token may read (all of them for an admin, else the user's own)."""
        try:
            found = self._json("/api/v1/evaluations/feedbacks/all/export")
        except OpenWebUIAuthError:  # not an admin: the user's own (a refused token fails here again)
            found = self._own_feedbacks()
        if not isinstance(found, list):
            raise OpenWebUIError("the feedback export is not a list: is this Open WebUI?")
        return [f for f in found if isinstance(f, dict) and f.get("type", "rating") == "rating"]

    def _own_feedbacks(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in range(1, 10_000):
            body = self._json("/api/v1/evaluations/feedbacks/user", params={"page": page})
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise OpenWebUIError("the feedback list has no items: is this Open WebUI?")
            out += items
            if not items or len(out) >= int(body.get("total") or 0):
                break
        return out

    def chats(self) -> dict[str, dict[str, Any]]:
        """The token user's chats by id (``/api/v1/chats/all`` streams one JSON object per line)."""
        response = self._get("/api/v1/chats/all")
        text = response.text.strip()
        try:
            if text.startswith("["):
                rows = json.loads(text)
            else:
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError:
            raise OpenWebUIError(f"{self.base_url}/api/v1/chats/all is neither JSON nor JSON lines") from None
        return {c["id"]: c for c in rows if isinstance(c, dict) and c.get("id")}

    def chat(self, chat_id: str) -> dict[str, Any] | None:
        """One chat, or None when it is gone or not the token's to read."""
        try:
            found = self._json(f"/api/v1/chats/{chat_id}")
        except OpenWebUIAuthError:
            return None  # Open WebUI answers 401 for a chat that does not exist, too
        except OpenWebUIError as exc:
            if " answered 404" in str(exc):
                return None
            raise
        return found if isinstance(found, dict) else None


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    return str(body.get("detail") or body.get("error") or body)[:200] if isinstance(body, dict) else str(body)[:200]


@dataclass
class Judgement:
    """One assistant message of Open WebUI that a user rated or edited."""

    chat_id: str
    message_id: str
    user_id: str
    model: str  # the model the user picked (our virtual model, e.g. "data_ops:latest")
    question: str  # the user's message the answer replies to
    answer: str  # what the model answered (the original text when the user edited it)
    edited: str | None = None  # the user's corrected answer
    rating: int | None = None  # 1 thumbs up, -1 thumbs down, None not rated
    comment: str = ""
    reason: str = ""  # the reason picked from Open WebUI's list ("Inaccurate information", ...)
    score: int | None = None  # 1-5, from Open WebUI's 1-10 detailed rating
    timestamp: float | None = None  # when the message was written (epoch seconds)
    interaction_id: str | None = None  # ours, where Open WebUI kept it
    feedback_id: str | None = None

    @property
    def key(self) -> str:
        return f"{self.chat_id}/{self.message_id}"


def _messages(chat: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``history.messages`` of a chat as the API returns it (``{"id", "chat": {"history": ...}}``)."""
    body = (chat or {}).get("chat") if isinstance((chat or {}).get("chat"), dict) else chat
    history = (body or {}).get("history") or {}
    messages = history.get("messages") if isinstance(history, dict) else None
    return messages if isinstance(messages, dict) else {}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal: text parts only
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def interaction_id_of(message: dict[str, Any]) -> str | None:
    """Our interaction id where Open WebUI keeps it: on the message, or among its usage/info fields."""
    for holder in (message, message.get("usage"), message.get("info")):
        if isinstance(holder, dict):
            for key in _ID_KEYS:
                if isinstance(holder.get(key), str) and holder[key]:
                    return holder[key]
    return None


def _rating(value: Any) -> int | None:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    return 1 if number > 0 else (-1 if number < 0 else None)


def _score(details: Any) -> int | None:
    raw = details.get("rating") if isinstance(details, dict) else None
    try:
        ten = int(float(raw))
    except (TypeError, ValueError):
        return None
    return max(1, min(5, (ten + 1) // 2)) if 1 <= ten <= 10 else None


def _judgement(chat_id: str, message_id: str, user_id: str, messages: dict[str, dict[str, Any]],
               feedback: dict[str, Any] | None) -> Judgement | None:
    message = messages.get(message_id)
    if not isinstance(message, dict) or message.get("role") != "assistant":
        return None
    parent = messages.get(message.get("parentId") or "") or {}
    content = _text(message.get("content"))
    original = message.get("originalContent")
    edited = content if isinstance(original, str) and original.strip() != content.strip() else None
    data = (feedback or {}).get("data") or {}
    annotation = message.get("annotation") if isinstance(message.get("annotation"), dict) else {}
    source = data if feedback else annotation
    return Judgement(
        chat_id=chat_id, message_id=message_id, user_id=user_id,
        model=str(message.get("selectedModelId") or message.get("model") or data.get("model_id") or ""),
        question=_text(parent.get("content")), answer=original if edited is not None else content, edited=edited,
        rating=_rating(source.get("rating")), comment=str(source.get("comment") or "").strip(),
        reason=str(source.get("reason") or "").strip(), score=_score(source.get("details")),
        timestamp=message.get("timestamp") if isinstance(message.get("timestamp"), (int, float)) else None,
        interaction_id=interaction_id_of(message), feedback_id=(feedback or {}).get("id"),
    )


def collect_judgements(client: OpenWebUIClient) -> list[Judgement]:
    """Every rated or edited assistant message: rated ones from the feedback records (read against the chat as
    it is now, so a later edit counts, else as it was when rated), edited unrated ones from the chats."""
    chats = client.chats()
    others: dict[str, dict[str, Any] | None] = {}  # chats of other users, fetched once each
    out: dict[str, Judgement] = {}
    for fb in sorted(client.feedbacks(), key=lambda f: f.get("updated_at") or 0):
        meta = fb.get("meta") or {}
        chat_id, message_id = meta.get("chat_id"), meta.get("message_id")
        if not chat_id or not message_id:
            continue
        if chat_id not in chats and chat_id not in others:
            others[chat_id] = client.chat(chat_id)
        messages = _messages(chats.get(chat_id) or others.get(chat_id))
        if message_id not in messages:
            messages = _messages((fb.get("snapshot") or {}).get("chat"))
        judged = _judgement(chat_id, message_id, str(fb.get("user_id") or ""), messages, fb)
        if judged is not None:
            out[judged.key] = judged  # a newer feedback on the same message wins
    for chat_id, chat in chats.items():
        for message_id, message in _messages(chat).items():
            if f"{chat_id}/{message_id}" in out or not isinstance(message, dict) or "originalContent" not in message:
                continue
            judged = _judgement(chat_id, message_id, str(chat.get("user_id") or ""), _messages(chat), None)
            if judged is not None and (judged.edited is not None or judged.rating is not None):
                out[judged.key] = judged
    return list(out.values())
