"""rag-middleware: retrieval-augmented few-shot prompting, validated JSON and replay for small local LLMs."""

from .request.ask import AskRequest, Switches
from .request.assembly import Assembly
from .config import Settings, load_settings
from .errors import (
    AttemptsExhaustedError,
    BackendError,
    ConfigError,
    DataDirError,
    DomainError,
    EmbeddingError,
    GenerationTimeoutError,
    ImportFileError,
    RagMiddlewareError,
    RequestError,
    StoreError,
    StoreUnavailableError,
    TemplateError,
    TransportError,
    UnknownDomainError,
    UpstreamResponseError,
    UpstreamUnavailableError,
)
from .request.pipeline import AskResult, Middleware
from .records import Attempt, Interaction, MemoryFilter, MemoryRecord, SelectedExample

__version__ = "0.1.0"

__all__ = [
    "AskRequest",
    "AskResult",
    "Assembly",
    "Attempt",
    "AttemptsExhaustedError",
    "BackendError",
    "ConfigError",
    "DataDirError",
    "DomainError",
    "EmbeddingError",
    "GenerationTimeoutError",
    "ImportFileError",
    "Interaction",
    "MemoryFilter",
    "MemoryRecord",
    "Middleware",
    "RagMiddlewareError",
    "RequestError",
    "SelectedExample",
    "Settings",
    "StoreError",
    "StoreUnavailableError",
    "Switches",
    "TemplateError",
    "TransportError",
    "UnknownDomainError",
    "UpstreamResponseError",
    "UpstreamUnavailableError",
    "__version__",
    "load_settings",
]
