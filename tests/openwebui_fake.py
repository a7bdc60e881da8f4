"""A fake Open WebUI for the feedback sync: chats and rating feedback in the JSON shapes Open WebUI 0.12 serves.

Shapes (written for these tests from Open WebUI's API): a chat is ``ChatResponse`` (``{"id", "user_id", "title",
"chat": {"models", "history": {"messages": {id: message}, "currentId"}, "messages": [...]}, ...}``); a rating is
a ``FeedbackModel`` (``{"id", "user_id", "type": "rating", "data": {"rating", "model_id", "reason", "comment",
"tags", "details": {"rating"}}, "meta": {"chat_id", "message_id", ...}, "snapshot": {"chat": ChatResponse}}``).
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

T0 = 1_767_000_000  # epoch seconds, for stable timestamps


def new_id() -> str:
    return str(uuid.uuid4())


def message_pair(question: str, answer: str, *, model: str = "data_ops:latest", parent: str | None = None,
                 at: int = T0, **assistant: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A user message and the assistant's reply, linked as Open WebUI links them."""
    uid, aid = new_id(), new_id()
    user = {"id": uid, "parentId": parent, "childrenIds": [aid], "role": "user", "content": question,
            "timestamp": at, "models": [model]}
    reply = {"id": aid, "parentId": uid, "childrenIds": [], "role": "assistant", "content": answer, "model": model,
             "modelName": model, "modelIdx": 0, "timestamp": at + 2, "done": True,
             "usage": {"input_tokens": 312, "output_tokens": 40, "total_tokens": 352, "prompt_tokens": 312,
                       "completion_tokens": 40, "response_token/s": 20.5, "prompt_token/s": 900.1,
                       "total_duration": 2_100_000_000, "load_duration": 1_000_000, "prompt_eval_count": 312,
                       "eval_count": 40, "approximate_total": "0h0m2s"},
             **assistant}
    return user, reply


def chat(user_id: str, messages: list[dict[str, Any]], *, chat_id: str | None = None,
         model: str = "data_ops:latest") -> dict[str, Any]:
    cid = chat_id or new_id()
    history = {m["id"]: m for m in messages}
    return {"id": cid, "user_id": user_id, "title": "Sorting a table",
            "chat": {"id": "", "title": "Sorting a table", "models": [model], "params": {},
                     "history": {"messages": history, "currentId": messages[-1]["id"]},
                     "messages": messages, "tags": [], "timestamp": T0 * 1000, "files": []},
            "updated_at": T0 + 60, "created_at": T0, "share_id": None, "archived": False, "pinned": False,
            "meta": {}, "variables": {}, "folder_id": None, "tasks": None, "summary": None,
            "current_message_id": messages[-1]["id"], "context_usage": None}


def rating(the_chat: dict[str, Any], message_id: str, value: int, *, comment: str = "", reason: str = "",
           detailed: int | None = None, user_id: str | None = None, at: int = T0 + 100) -> dict[str, Any]:
    """The feedback Open WebUI stores when a user clicks thumbs up/down (and saves the comment form)."""
    message = the_chat["chat"]["history"]["messages"][message_id]
    fid = new_id()
    annotation = {"rating": value, "reason": reason or None, "comment": comment, "tags": [],
                  "details": {"rating": detailed}}
    message.update(annotation=annotation, feedbackId=fid)
    return {"id": fid, "user_id": user_id or the_chat["user_id"], "version": 0, "type": "rating",
            "data": {**annotation, "model_id": message["model"]},
            "meta": {"arena": False, "model_id": message["model"], "message_id": message_id, "message_index": 2,
                     "chat_id": the_chat["id"], "base_models": {message["model"]: None}},
            "snapshot": {"chat": copy.deepcopy(the_chat)}, "created_at": at, "updated_at": at}


def edit_answer(the_chat: dict[str, Any], message_id: str, corrected: str) -> None:
    """What Open WebUI does when a user edits an answer in place (not 'save as copy')."""
    message = the_chat["chat"]["history"]["messages"][message_id]
    message["originalContent"] = message["content"]
    message["content"] = corrected


class FakeOpenWebUI:
    """Serves ``chats`` (the token user's) and ``feedbacks`` on a pytest-httpserver, checking the bearer token.
    With ``admin=False`` the feedback export is refused and only ``/feedbacks/user`` answers (paged by 2)."""

    def __init__(self, server: HTTPServer, *, token: str = "sk-test", admin: bool = True) -> None:
        self.server = server
        self.token = token
        self.admin = admin
        self.chats: list[dict[str, Any]] = []
        self.feedbacks: list[dict[str, Any]] = []
        self.requests: list[str] = []
        server.expect_request("/api/v1/evaluations/feedbacks/all/export", method="GET").respond_with_handler(
            self._guard(lambda r: self._json(self.feedbacks) if self.admin else self._json(
                {"detail": "401 Unauthorized"}, 401)))
        server.expect_request("/api/v1/evaluations/feedbacks/user", method="GET").respond_with_handler(
            self._guard(self._own))
        server.expect_request("/api/v1/chats/all", method="GET").respond_with_handler(self._guard(
            lambda r: Response("".join(json.dumps(c) + "\n" for c in self.chats), content_type="application/x-ndjson")))
        server.expect_request(uri=re.compile(r"^/api/v1/chats/[0-9a-f-]+$"), method="GET") \
            .respond_with_handler(self._guard(self._chat))

    @property
    def url(self) -> str:
        return self.server.url_for("/").rstrip("/")

    @staticmethod
    def _json(body: Any, status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, content_type="application/json")

    def _guard(self, handler):
        def guarded(request: Request) -> Response:
            self.requests.append(request.path)
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return self._json({"detail": "Not authenticated"}, 401)
            return handler(request)
        return guarded

    def _own(self, request: Request) -> Response:
        page = int(request.args.get("page", 1))
        mine = [{k: v for k, v in f.items() if k != "snapshot"} for f in self.feedbacks]
        return self._json({"items": mine[(page - 1) * 2: page * 2], "total": len(mine)})

    def _chat(self, request: Request) -> Response:
        found = next((c for c in self.chats if c["id"] == request.path.rsplit("/", 1)[1]), None)
        return self._json(found) if found else self._json({"detail": "We could not find what you're looking for :/"},
                                                          401)


def plan(column: str = "a", ascending: bool = True) -> dict[str, Any]:
    """The data_ops answer the scripted model gives in the sync tests: sort by ``column``."""
    return {"task": "sort", "chart_type": "none", "operations": [{"type": "sort", "execution_instructions": {
        "method": "pandas.DataFrame.sort_values", "args": [], "kwargs": {"by": column, "ascending": ascending}}}]}
