"""One Settings object for the whole package.

Sources, highest priority first: keyword arguments, environment variables ``RAG_MW_*`` (nested with
``__``, e.g. ``RAG_MW_LLM__BACKEND=ollama``), an optional TOML file (``RAG_MW_CONFIG`` or
``./rag-middleware.toml``), then the defaults below. This is the only module that reads ``os.environ``.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import ConfigError

__all__ = [
    "EmbeddingSettings",
    "LLMSettings",
    "OutboxSettings",
    "RetrySettings",
    "SelectionSettings",
    "ServerSettings",
    "Settings",
    "StoreSettings",
    "WeaviateSettings",
    "load_settings",
]

_TOML_PATH: ContextVar[Path | None] = ContextVar("rag_mw_toml_path", default=None)


class SelectionSettings(BaseModel):
    """Example selection. Every field can be overridden per domain in domain.yaml ``selection:``."""

    k: int = Field(4, ge=0, le=64, description="examples to put in the prompt")
    fetch_k: int = Field(20, ge=1, le=1000, description="kNN candidates fed to MMR")
    mmr_lambda: float = Field(0.5, ge=0.0, le=1.0, description="1 = pure similarity, 0 = pure diversity")
    near_dup_threshold: float = Field(0.95, ge=0.0, le=1.0001, description="cosine above which two are near-duplicates")
    min_similarity: float = Field(0.0, ge=-1.0, le=1.0, description="candidates below this are ignored")
    negatives_k: int = Field(2, ge=0, le=16)
    negatives_min_similarity: float = Field(0.3, ge=-1.0, le=1.0)
    approved_boost: float = Field(0.05, ge=0.0, le=1.0,
                                  description="added to the similarity of approved/edited answers")
    curated_boost: float = Field(0.03, ge=0.0, le=1.0,
                                 description="added to curated examples: above unreviewed answers, below reviewed ones")
    near_identical: float = Field(
        0.92, ge=0.0, le=1.0001, description="cosine at which a reviewed answer's question counts as the same question")
    reviewed_weight: float = Field(3.0, ge=0.0, le=100.0, description="a close reviewed answer's weight in label "
                                   "votes and prototypes")
    reviewed_close: float = Field(
        0.75, ge=0.0, le=1.0001, description="cosine from which a reviewed answer counts reviewed_weight times; below "
        "it counts as much as a curated example (a far answer tells no more for being reviewed)")
    near_identical_weight: float = Field(
        20.0, ge=0.0, le=1000.0, description="the vote weight of a reviewed answer to a near-identical question")
    teach_max: int = Field(
        200, ge=0, le=100000, description="the most reviewed answers (newest first) a domain learns from per tenant "
        "beside its curated examples: cue words, label prototypes, anchors, floors and the vote judgement; 0: "
        "reviewed answers only vote as neighbours")
    teach_refresh: float = Field(5.0, ge=0.0, le=3600.0,
                                 description="seconds between two looks for new reviewed answers to learn from")
    teach_wait: float = Field(2.0, ge=0.0, le=3600.0, description="seconds a request waits for the domain to finish "
                              "learning from new reviewed answers before it runs on what the domain knew")
    use_memory: bool = True
    use_examples: bool = True
    use_negatives: bool = True
    reserve_output_tokens: int = Field(384, ge=16, description="tokens kept free for the answer (also num_predict)")
    max_example_tokens: int = Field(0, ge=0, description="cap on the example block; 0 = whatever the budget allows")


class EmbeddingSettings(BaseModel):
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = Field(64, ge=1)
    device: str = "cpu"
    runtime: Literal["onnx", "torch"] = Field(
        "onnx", description="onnx: the model exported once to ONNX and run by onnxruntime (CPU; same vectors in "
                            "about half the time); falls back to torch, with a warning, when it cannot")
    quantize: Literal["none", "int8"] = Field(
        "none", description="int8 (onnx runtime only): run an int8 copy of the model, made once from the ONNX export; "
                            "about 1.4x faster, but its neighbours are ~92% those of the exact model (top-5 overlap "
                            "on the benchmark questions), so answers may change; vectors are cached apart")


class OutboxSettings(BaseModel):
    """The local SQLite outbox that every Weaviate write passes through."""

    flush_interval: float = Field(2.0, gt=0, description="seconds between background flushes of queued writes")
    backoff_initial: float = Field(0.5, ge=0.0, description="first wait after a failed flush")
    backoff_max: float = Field(30.0, ge=0.0, description="longest wait between failed flushes")
    batch_size: int = Field(256, ge=1, le=10_000, description="queued writes sent per batch")


class WeaviateSettings(BaseModel):
    """How to reach Weaviate (weaviate-client v4). ``url`` is a shorthand for local/custom connections."""

    connection: Literal["local", "custom", "cloud", "embedded"] = "local"
    url: str | None = Field(None, description="http(s)://host:port; overrides host and port")
    host: str = "localhost"
    port: int = Field(8080, ge=1, le=65535)
    grpc_port: int = Field(50051, ge=1, le=65535)
    http_host: str | None = Field(None, description="custom: REST host (default: host)")
    http_secure: bool = False
    grpc_host: str | None = Field(None, description="custom: gRPC host (default: the REST host)")
    grpc_secure: bool = False
    cluster_url: str | None = Field(None, description="cloud: the cluster URL")
    api_key: SecretStr | None = Field(None, description="cloud (or any secured server): API key")
    embedded_version: str = Field("1.30.5", description="embedded: Weaviate version to run")
    binary_path: Path | None = Field(None, description="embedded: where the Weaviate binary lives")
    data_path: Path | None = Field(None, description="embedded: persistence directory; default <data_dir>/weaviate")
    collection: str = Field("RagMemory", pattern=r"^[A-Z][_0-9A-Za-z]*$")
    replication_factor: int = Field(1, ge=1, description="copies of each shard when the collection is created")
    skip_init_checks: bool = Field(False, description="skip the gRPC ping and PyPI version check (offline)")
    timeout_init: float = Field(2.0, gt=0, description="seconds for connecting and readiness probes")
    timeout_query: float = Field(10.0, gt=0, description="seconds for one search/read")
    timeout_insert: float = Field(60.0, gt=0, description="seconds for one batch write")
    retry_interval: float = Field(5.0, ge=0.0, description="after a failure, seconds before Weaviate is tried again")
    hybrid: bool = Field(False, description="BM25 + vector search when the question text is given")
    alpha: float = Field(0.7, ge=0.0, le=1.0, description="hybrid weight: 1 = pure vector, 0 = pure BM25")
    outbox: OutboxSettings = OutboxSettings()


class StoreSettings(BaseModel):
    backend: Literal["sqlite", "weaviate"] = "sqlite"
    path: Path | None = Field(None, description="SQLite file; default <data_dir>/rag.db (also holds the outbox)")
    weaviate: WeaviateSettings = WeaviateSettings()


class LLMSettings(BaseModel):
    backend: Literal["embedded", "ollama"] = "embedded"
    model: str = Field("gemma3:270m", description="upstream model name (ollama); label only for embedded")
    ollama_host: str | None = Field(None, description="default: OLLAMA_HOST or http://127.0.0.1:11434")
    embedded_model_path: Path | None = Field(None, description="GGUF file; default: the packaged Gemma 3 270M")
    num_ctx: int = Field(4096, ge=256)
    threads: int = Field(2, ge=1)
    keep_alive: str | int | None = "5m"
    tokenizer: str = Field(
        "auto",
        description="'auto' (the backend's own), 'approx', a GGUF file, or a HF tokenizer path",
    )


class RetrySettings(BaseModel):
    max_attempts: int = Field(3, ge=1, le=10, description="validation attempts in total")
    transport_attempts: int = Field(3, ge=1, le=10, description="tries per attempt on connection errors/5xx")
    backoff_initial: float = Field(0.5, ge=0.0)
    backoff_max: float = Field(8.0, ge=0.0)
    request_timeout: float = Field(120.0, gt=0, description="seconds for one model call")
    total_timeout: float = Field(300.0, gt=0, description="seconds for all attempts of one request")
    connect_timeout: float = Field(5.0, gt=0)


# Open WebUI 0.12's prompt shapes (open_webui/config.py): its RAG template ends with the context, the question
# follows it (older templates: <user_query>, "Query:"); its task prompts begin "### Task:" or name their job
OPENWEBUI_CONTEXT_PATTERNS = (
    r"(?s)\A\s*### Task:.*?<context>\n?(?P<context>.*)</context>"
    r".*<user_query>\s*(?P<question>.*?)\s*</user_query>\s*\Z",
    r"(?s)\A\s*### Task:.*?<context>\n?(?P<context>.*)</context>\s*(?:Query|Question):\s*(?P<question>.*\S)\s*\Z",
    r"(?s)\A\s*### Task:.*?<context>\n?(?P<context>.*)</context>\s*(?P<question>.*\S)\s*\Z",
    r"(?s)### Task:.*?<context>\n?(?P<context>.*)</context>\s*\Z",
)
OPENWEBUI_TASK_PATTERNS = {
    "title": r'(?s)\A\s*### Task:.*"title"\s*:',
    "tags": r'(?s)\A\s*### Task:.*"tags"\s*:',
    "follow_ups": r'(?s)\A\s*### Task:.*"follow_ups"\s*:',
    "queries": r'(?s)\A\s*### Task:.*"queries"\s*:',
    "autocomplete": r"(?s)\A\s*### Task:.*You are an autocompletion system",
    "emoji": r"\A\s*Your task is to reflect the speaker's likely facial expression",
    "merge_responses": r"\A\s*You have been provided with a set of responses from various models",
    "tool_calls": r'(?s)\A\s*Available Tools:.*"tool_calls"',
    "task": r"\A\s*### Task:",
}


class ServerSettings(BaseModel):
    """The drop-in Ollama-compatible server."""

    host: str = "127.0.0.1"
    port: int = Field(11435, ge=0, le=65535)
    upstream: str | None = Field(None, description="Ollama URL, or 'embedded'; default: OLLAMA_HOST or local Ollama")
    default_domain: str | None = Field(
        None, description="domain for requests naming an upstream model; None = pass through")
    domain_models: dict[str, str] = Field(default_factory=dict, description="domain -> upstream model that answers it")
    admin_token: str | None = Field(None, description="bearer token required by /rag/ admin routes")
    admin_open: bool = Field(False, description="with no admin_token: serve admin routes to every client, "
                                                "not only to loopback ones")
    on_invalid: Literal["error", "best_candidate"] = "error"
    tenant_header: str = "X-RAG-Tenant"
    shutdown_timeout: float = Field(30.0, gt=0)
    upstream_timeout: float = Field(300.0, gt=0)
    context_patterns: list[str] = Field(
        default_factory=lambda: list(OPENWEBUI_CONTEXT_PATTERNS),
        description="regexes for a message that carries retrieved context (named groups 'context' and, in a user "
                    "message, 'question'): the request is a domain request on the question, the context given "
                    "to the templates; tried in order on the last user message, then on the system message")
    task_patterns: dict[str, str] = Field(
        default_factory=lambda: dict(OPENWEBUI_TASK_PATTERNS),
        description="name -> regex for background task prompts (searched in the last user message and the system "
                    "message): passed through, never augmented or stored; tried in order, the first match names it")
    plain_num_predict: int = Field(512, ge=-1, description="num_predict for a plain (no-domain) request on the "
                                                          "embedded model when the client asks for no positive "
                                                          "one (-1: no cap, Ollama's default)")
    background_num_predict: int = Field(128, ge=-1, description="num_predict cap for background tasks (-1: none)")
    background_stub: bool = Field(False, description="with the embedded upstream, answer title and tags tasks "
                                                     "without the model: the question's first words, no tags")
    warm: bool = Field(True, description="at start, in a background thread: load every domain, embed its curated "
                                         "examples and clause bank, judge its votes (what each domain's first "
                                         "request would otherwise pay for); /rag/health says when it is done")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAG_MW_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Path(".rag-mw")
    knowledge_base: Path = Path("knowledge_base")
    prompts_dir: Path = Path("prompts")
    default_tenant: str = "default"
    learn: Literal["reviewed", "all", "off"] = Field(
        "reviewed", description="validated answers are kept in memory; reviewed: only approved or edited ones are "
                                "examples and vote (default); all: unreviewed ones too; off: nothing is kept")

    @field_validator("learn", mode="before")
    @classmethod
    def _learn_bool(cls, value: Any) -> Any:
        """``learn = true`` (the old setting) keeps answers and uses the reviewed ones; false keeps none."""
        if isinstance(value, bool):
            return "reviewed" if value else "off"
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return "reviewed" if value.lower() in ("true", "1", "yes") else "off"
        return value
    llm: LLMSettings = LLMSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    store: StoreSettings = StoreSettings()
    selection: SelectionSettings = SelectionSettings()
    retry: RetrySettings = RetrySettings()
    server: ServerSettings = ServerSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = _TOML_PATH.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @property
    def db_path(self) -> Path:
        return self.store.path or (self.data_dir / "rag.db")

    @property
    def ollama_host(self) -> str:
        return self.llm.ollama_host or os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434"


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from overrides, env and the TOML file. Raises ConfigError with the bad field."""
    path = Path(config_file) if config_file else None
    if path is None and os.environ.get("RAG_MW_CONFIG"):
        path = Path(os.environ["RAG_MW_CONFIG"])
    if path is None and Path("rag-middleware.toml").is_file():
        path = Path("rag-middleware.toml")
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    token = _TOML_PATH.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid setting {loc}: {first['msg']}" + (f" (from {path})" if path else "")) from None
    except ValueError as exc:  # TOML syntax errors
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    finally:
        _TOML_PATH.reset(token)
