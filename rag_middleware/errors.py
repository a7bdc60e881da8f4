"""Exception tree for rag-middleware.

Every error the package raises on purpose derives from :class:`RagMiddlewareError`. Backends translate
the exceptions of their libraries (httpx, ollama, sqlite3, xllamacpp) into these types at their boundary;
the CLI turns them into a one-line message and an exit code, and the server into ``{"error": ...}`` with
``http_status``.

::

    RagMiddlewareError
    ├── ConfigError                 bad settings file or value
    ├── DataDirError                data dir missing or not writable
    ├── DomainError                 knowledge_base/<domain>/ is invalid (file:line)
    │   └── UnknownDomainError      no such domain (lists the known ones)
    ├── RequestError                the caller's input is unusable (empty question, malformed message)
    │   ├── UnknownInteractionError no interaction with that id (feedback, lookups)
    │   └── InvalidEditError        an edited answer fails the domain's output model; carries the errors
    ├── TemplateError               a prompt template does not parse or render (file:line)
    ├── StoreError                  the memory store failed
    │   └── StoreUnavailableError   the store cannot be reached
    ├── ImportFileError             a malformed line in an import file (line number)
    ├── EmbeddingError              the embedder could not load or encode
    ├── BackendError                the LLM backend failed
    │   ├── TransportError          retryable: connection refused, timeout, 5xx
    │   │   └── UpstreamUnavailableError   host cannot be reached (names it)
    │   └── UpstreamResponseError   upstream answered with a non-retryable error (4xx)
    ├── GenerationTimeoutError      the total time budget ran out
    ├── OpenWebUIError              Open WebUI's API failed or answered something unexpected (feedback sync)
    │   ├── OpenWebUIUnavailableError   Open WebUI cannot be reached (names it)
    │   └── OpenWebUIAuthError      Open WebUI refused the token
    └── AttemptsExhaustedError      no attempt produced a valid answer; carries every attempt
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AttemptsExhaustedError",
    "BackendError",
    "ConfigError",
    "DataDirError",
    "DomainError",
    "EmbeddingError",
    "GenerationTimeoutError",
    "ImportFileError",
    "RagMiddlewareError",
    "RequestError",
    "StoreError",
    "StoreUnavailableError",
    "TemplateError",
    "InvalidEditError",
    "OpenWebUIAuthError",
    "OpenWebUIError",
    "OpenWebUIUnavailableError",
    "TransportError",
    "UnknownDomainError",
    "UnknownInteractionError",
    "UpstreamResponseError",
    "UpstreamUnavailableError",
]


class RagMiddlewareError(Exception):
    """Base class. ``http_status`` is what the server answers; ``exit_code`` what the CLI exits with."""

    http_status = 500
    exit_code = 1

    def one_line(self) -> str:
        text = " ".join(str(self).split())
        return text or type(self).__name__


class ConfigError(RagMiddlewareError):
    exit_code = 2


class DataDirError(RagMiddlewareError):
    exit_code = 2


class DomainError(RagMiddlewareError):
    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(f"{where}{message}")


class UnknownDomainError(DomainError):
    http_status = 404

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown domain {name!r}; known domains: {', '.join(known) or '(none)'}")


class RequestError(RagMiddlewareError):
    http_status = 400
    exit_code = 2


class UnknownInteractionError(RequestError):
    http_status = 404

    def __init__(self, interaction_id: str) -> None:
        self.interaction_id = interaction_id
        super().__init__(f"no interaction {interaction_id!r}")


class InvalidEditError(RequestError):
    """An edited answer that fails validation is refused; ``errors`` are the validator's ``path: message`` lines."""

    http_status = 422

    def __init__(self, message: str, *, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(message)


class TemplateError(RagMiddlewareError):
    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(f"template error: {where}{message}")


class StoreError(RagMiddlewareError):
    pass


class StoreUnavailableError(StoreError):
    http_status = 503


class ImportFileError(RagMiddlewareError):
    exit_code = 2

    def __init__(self, message: str, *, path: str, line: int) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}: {message}")


class EmbeddingError(RagMiddlewareError):
    pass


class BackendError(RagMiddlewareError):
    http_status = 502


class TransportError(BackendError):
    """A failure worth retrying with backoff: refused connection, timeout, 5xx."""

    http_status = 502


class UpstreamUnavailableError(TransportError):
    http_status = 502

    def __init__(self, host: str, detail: str = "") -> None:
        self.host = host
        super().__init__(f"model host {host} is unreachable" + (f": {detail}" if detail else ""))


class UpstreamResponseError(BackendError):
    def __init__(self, message: str, *, status_code: int = 502) -> None:
        self.status_code = status_code
        self.http_status = status_code if 400 <= status_code < 600 else 502
        super().__init__(message)


class GenerationTimeoutError(BackendError):
    http_status = 504


class AttemptsExhaustedError(RagMiddlewareError):
    """Raised when every attempt failed validation. ``attempts`` holds the whole ledger."""

    http_status = 422

    def __init__(self, message: str, *, attempts: list[Any], result: Any = None) -> None:
        self.attempts = attempts
        self.result = result
        super().__init__(message)


class OpenWebUIError(RagMiddlewareError):
    """Open WebUI's HTTP API failed, or answered with something that is not what its API returns."""

    http_status = 502


class OpenWebUIUnavailableError(OpenWebUIError):
    def __init__(self, url: str, detail: str = "") -> None:
        self.url = url
        super().__init__(f"Open WebUI at {url} is unreachable" + (f": {detail}" if detail else ""))


class OpenWebUIAuthError(OpenWebUIError):
    exit_code = 2

    def __init__(self, url: str, status_code: int) -> None:
        self.url = url
        self.status_code = status_code
        super().__init__(f"Open WebUI at {url} refused the token ({status_code}): give an admin's API key or JWT "
                         "(Settings > Account in Open WebUI)")
