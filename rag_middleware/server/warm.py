"""Warm-up at server start (``server.warm``): what the first request of each domain would otherwise pay for,
done in a background thread that never blocks start-up or requests:

- the domain loaded (its files read, mechanisms inferred, cue words mined, anchored lists learnt);
- its curated examples and negatives embedded and its voted fields judged leave-one-out
  (``Assembler.vote_reliability``);
- the step guide built and its clause bank embedded;
- the schema shown to the model (derived fields hidden).

A domain that fails is logged and skipped; nothing here ever raises into the server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import Any

from ..request.pipeline import Middleware

__all__ = ["Warmup"]

log = logging.getLogger("rag_middleware.server")


def _reason(exc: BaseException) -> str:
    one_line = getattr(exc, "one_line", None)
    text = one_line() if callable(one_line) else f"{type(exc).__name__}: {exc}"
    return " ".join(str(text).split())[:500]


class Warmup:
    """``start`` once; ``done`` is True when every domain was tried (warmed or skipped)."""

    def __init__(self, middleware: Middleware) -> None:
        self.mw = middleware
        self.done = False
        self.warmed: list[str] = []
        self.failed: dict[str, str] = {}
        self.seconds: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # built here, before any request: the assembler is created lazily, and two threads creating it at
        # once would each fill the caches of their own (a failure shows in the thread, per domain)
        with contextlib.suppress(Exception):
            self.mw.assembler  # noqa: B018
        self._thread = threading.Thread(target=self.run, name="rag-mw-warm", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop after the domain being warmed (waiting at most ``timeout`` seconds for it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        return {"done": self.done, "domains": list(self.warmed), "failed": dict(self.failed),
                "seconds": self.seconds}

    def run(self) -> None:
        started = time.perf_counter()
        try:
            names = self.mw.domains.names()
        except Exception as exc:  # noqa: BLE001 - warm-up never crashes the server
            names = []
            log.warning(json.dumps({"event": "warm_failed", "domain": None, "error": _reason(exc)}))
        for name in names:
            if self._stop.is_set():
                break
            try:
                self.warm(name)
                self.warmed.append(name)
            except Exception as exc:  # noqa: BLE001 - a broken domain is skipped, the others are warmed
                self.failed[name] = _reason(exc)
                log.warning(json.dumps({"event": "warm_failed", "domain": name, "error": self.failed[name]}))
        self.seconds = round(time.perf_counter() - started, 3)
        stopped = self._stop.is_set() and len(self.warmed) + len(self.failed) < len(names)
        self.done = not stopped
        log.info(json.dumps({"event": "warm", "domains": self.warmed, "failed": sorted(self.failed),
                             "seconds": self.seconds, "stopped": stopped}))

    def warm(self, name: str) -> None:
        """One domain, through the same public calls a request makes (so the same caches are filled)."""
        domain = self.mw.domains.get(name)
        assembler = self.mw.assembler
        assembler.vote_reliability(domain)  # the curated examples embedded, the voted fields judged
        guide = assembler.guide(domain)
        if guide is not None:  # a vote on an example's clauses embeds the clause bank
            for example in domain.examples[:3]:
                if guide.vote(example.question):
                    break
        domain.schema_json  # noqa: B018 - the shown schema, built once per loaded domain
