"""An in-process Weaviate on the wire, after weaviate-client's own ``mock_tests`` pattern: pytest-httpserver answers
REST (meta, readiness, schema) and a gRPC ``WeaviateServicer`` answers TenantsGet, BatchObjects, Search, Aggregate
and BatchDelete. It keeps the objects it is sent, so what the adapter sends and how it reads replies can be checked,
and it can be stopped and started again on the same ports to force an outage."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from concurrent import futures
from datetime import datetime
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.json_format import MessageToDict
from pytest_httpserver import HTTPServer
from weaviate.proto.v1 import (
    aggregate_pb2,
    base_pb2,
    batch_delete_pb2,
    batch_pb2,
    properties_pb2,
    search_get_pb2,
    tenants_pb2,
    weaviate_pb2_grpc,
)
from werkzeug import Request, Response

F = base_pb2.Filters
DATE_PROPS = {"created_at", "updated_at"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _date(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class _QuickHTTPServer(HTTPServer):
    """pytest-httpserver whose thread notices a stop within 50 ms (werkzeug polls every 0.5 s by default)."""

    def thread_target(self) -> None:
        assert self.server is not None
        self.server.serve_forever(poll_interval=0.05)


def _vector(msg) -> np.ndarray:
    """The query vector of a NearVector (or Hybrid) message, however the client packed it."""
    if len(msg.vectors):
        return np.frombuffer(msg.vectors[0].vector_bytes, dtype=np.float32)
    if msg.vector_bytes:
        return np.frombuffer(msg.vector_bytes, dtype=np.float32)
    return np.asarray(list(msg.vector), dtype=np.float32)


def _server_shape(body: dict[str, Any]) -> dict[str, Any]:
    """Fill in what a server adds to a created class, as far as the client reads it back."""
    for prop in body.get("properties", []):
        prop.setdefault("indexFilterable", True)
        prop.setdefault("indexSearchable", prop["dataType"] == ["text"])
        prop.setdefault("indexRangeFilters", False)
        prop.setdefault("tokenization", "word" if prop["dataType"] == ["text"] else None)
    inverted = body.setdefault("invertedIndexConfig", {})
    inverted.setdefault("bm25", {"b": 0.75, "k1": 1.2})
    inverted.setdefault("cleanupIntervalSeconds", 60)
    inverted["stopwords"] = {"preset": "en", "additions": None, "removals": None}
    body.setdefault("replicationConfig", {"factor": 1, "asyncEnabled": False,
                                          "deletionStrategy": "NoAutomatedResolution"})
    body.setdefault("shardingConfig", {"virtualPerPhysical": 0, "desiredCount": 0, "actualCount": 0,
                                       "desiredVirtualCount": 0, "actualVirtualCount": 0, "key": "", "strategy": "",
                                       "function": ""})
    for named in body.get("vectorConfig", {}).values():
        hnsw = named.setdefault("vectorIndexConfig", {})
        for key, value in {"cleanupIntervalSeconds": 300, "dynamicEfFactor": 8, "dynamicEfMax": 500,
                           "dynamicEfMin": 100, "ef": -1, "efConstruction": 128, "filterStrategy": "sweeping",
                           "flatSearchCutoff": 40000, "maxConnections": 32, "skip": False,
                           "vectorCacheMaxObjects": 1000000000000}.items():
            hnsw.setdefault(key, value)
        for quantizer in ("bq", "pq", "sq", "rq"):
            hnsw.setdefault(quantizer, {"enabled": False})
    body.setdefault("vectorizer", "none")
    body.setdefault("moduleConfig", {})
    return body


class FakeWeaviate(weaviate_pb2_grpc.WeaviateServicer):
    """objects: {tenant: {uuid: {"props": {...}, "vector": np.ndarray}}}; every request is kept in ``calls``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.grpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.schema: dict[str, Any] | None = None
        self.schema_posts: list[dict[str, Any]] = []
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}
        self.calls: dict[str, list[Any]] = {"BatchObjects": [], "Search": [], "TenantsGet": [], "Aggregate": [],
                                            "BatchDelete": [], "TenantExists": [], "Patch": []}
        self.deliveries: dict[str, int] = {}  # uuid -> times written by a batch
        self.reject: dict[str, str] = {}  # record_id -> error message the batch answers with
        self.lock = threading.Lock()
        self.http: HTTPServer | None = None
        self.grpc: grpc.Server | None = None

    # -- life --------------------------------------------------------------------------------------

    def start(self) -> FakeWeaviate:
        self.http = _QuickHTTPServer(host="127.0.0.1", port=self.port)
        self.http.expect_request("/v1/meta").respond_with_json({"version": "1.36.0"})
        self.http.expect_request("/v1/.well-known/ready").respond_with_data("")
        self.http.expect_request("/v1/.well-known/live").respond_with_data("")
        self.http.expect_request("/v1/schema", method="POST").respond_with_handler(self._create)
        self.http.expect_request(f"/v1/schema/{'RagMemory'}").respond_with_handler(self._get_schema)
        self.http.expect_request("/v1/schema/RagMemory/tenants").respond_with_handler(self._tenants_rest)
        self.http.expect_request(re.compile(r"^/v1/schema/RagMemory/tenants/[^/]+$")).respond_with_handler(
            self._tenant_exists)
        self.http.expect_request(re.compile(r"^/v1/objects/RagMemory/[0-9a-f-]+$"),
                                 method="PATCH").respond_with_handler(self._patch)
        self.http.start()
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(self, self.grpc)
        self.grpc.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        self.grpc.start()
        return self

    def stop(self) -> None:
        if self.grpc is not None:
            self.grpc.stop(0).wait()
            self.grpc = None
        if self.http is not None:
            if self.http.is_running():
                self.http.clear()
                self.http.stop()
            self.http = None

    @property
    def running(self) -> bool:
        return self.http is not None

    def count(self) -> int:
        return sum(len(objs) for objs in self.objects.values())

    # -- REST --------------------------------------------------------------------------------------

    def _create(self, request: Request) -> Response:
        body = json.loads(request.data)
        self.schema_posts.append(json.loads(request.data))
        self.schema = _server_shape(body)
        return Response(json.dumps(self.schema), status=200, content_type="application/json")

    def _get_schema(self, request: Request) -> Response:
        if self.schema is None:
            return Response(json.dumps({"error": [{"message": "not found"}]}), status=404,
                            content_type="application/json")
        return Response(json.dumps(self.schema), status=200, content_type="application/json")

    def _tenants_rest(self, request: Request) -> Response:
        return Response(json.dumps([{"name": t, "activityStatus": "ACTIVE"} for t in sorted(self.objects)]),
                        status=200, content_type="application/json")

    def _tenant_exists(self, request: Request) -> Response:
        self.calls["TenantExists"].append(request.path.rsplit("/", 1)[1])
        return Response("", status=200 if request.path.rsplit("/", 1)[1] in self.objects else 404)

    def _patch(self, request: Request) -> Response:
        body = json.loads(request.data)
        uuid = request.path.rsplit("/", 1)[1]
        tenant = body.get("tenant") or request.args.get("tenant", "")
        self.calls["Patch"].append(body)
        obj = self.objects.get(tenant, {}).get(uuid)
        if obj is None:
            return Response("", status=404)
        obj["props"].update(body.get("properties", {}))
        return Response("", status=204)

    # -- gRPC --------------------------------------------------------------------------------------

    def TenantsGet(self, request, context):  # noqa: N802 - gRPC method name
        self.calls["TenantsGet"].append(request)
        names = list(request.names.values) if request.HasField("names") else sorted(self.objects)
        return tenants_pb2.TenantsGetReply(tenants=[
            tenants_pb2.Tenant(name=n, activity_status=tenants_pb2.TENANT_ACTIVITY_STATUS_HOT)
            for n in names if n in self.objects])

    def BatchObjects(self, request, context):  # noqa: N802
        self.calls["BatchObjects"].append(request)
        errors = []
        with self.lock:
            for i, obj in enumerate(request.objects):
                props = MessageToDict(obj.properties.non_ref_properties)
                if props.get("record_id") in self.reject:
                    reason = self.reject[props["record_id"]]
                    errors.append(batch_pb2.BatchObjectsReply.BatchError(index=i, error=reason))
                    continue
                vectors = {v.name: np.frombuffer(v.vector_bytes, dtype=np.float32).copy() for v in obj.vectors}
                self.objects.setdefault(obj.tenant, {})[obj.uuid] = {"props": props, "vectors": vectors}
                self.deliveries[obj.uuid] = self.deliveries.get(obj.uuid, 0) + 1
        return batch_pb2.BatchObjectsReply(errors=errors)

    def _matches(self, props: dict[str, Any], uuid: str, f) -> bool:
        op = f.operator
        if op == F.OPERATOR_AND:
            return all(self._matches(props, uuid, sub) for sub in f.filters)
        if op == F.OPERATOR_OR:
            return any(self._matches(props, uuid, sub) for sub in f.filters)
        name = f.target.property if f.HasField("target") else f.on[0]
        value = uuid if name == "_id" else props.get(name)
        if op == F.OPERATOR_IS_NULL:
            return (value is None) == f.value_boolean
        if f.HasField("value_text_array"):
            wanted = set(f.value_text_array.values)
            if op == F.OPERATOR_CONTAINS_ANY:
                return value in wanted
            if op == F.OPERATOR_CONTAINS_NONE:
                return value not in wanted
        if op == F.OPERATOR_EQUAL:
            return value == f.value_text
        if op == F.OPERATOR_NOT_EQUAL:
            return value != f.value_text
        if op == F.OPERATOR_LESS_THAN:
            return value is not None and _date(value) < _date(f.value_text)
        raise NotImplementedError(f"fake Weaviate cannot evaluate {F.Operator.Name(op)} on {name}")

    def _select(self, collection_tenant: str, filters) -> list[tuple[str, dict[str, Any]]]:
        objs = self.objects.get(collection_tenant, {})
        return [(u, o) for u, o in objs.items() if filters is None or self._matches(o["props"], u, filters)]

    @staticmethod
    def _value(name: str, value: Any) -> properties_pb2.Value:
        if value is None:
            return properties_pb2.Value(null_value=0)
        if name in DATE_PROPS:
            return properties_pb2.Value(date_value=value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return properties_pb2.Value(number_value=float(value))
        return properties_pb2.Value(text_value=str(value))

    def Search(self, request, context):  # noqa: N802
        self.calls["Search"].append(request)
        if request.tenant not in self.objects:
            context.abort(grpc.StatusCode.UNKNOWN, f"tenant not found: {request.tenant}")
        found = self._select(request.tenant, request.filters if request.HasField("filters") else None)
        scored: list[tuple[float | None, str, dict[str, Any]]] = []
        query = None
        if request.HasField("near_vector"):
            query = _vector(request.near_vector)
        elif request.HasField("hybrid_search"):
            hybrid = request.hybrid_search
            query = _vector(hybrid.near_vector if hybrid.HasField("near_vector") else hybrid)
        for uuid, obj in found:
            distance = None
            if query is not None:
                v = obj["vectors"]["embedding"]
                distance = 1.0 - float(v @ query / (np.linalg.norm(v) * np.linalg.norm(query)))
            scored.append((distance, uuid, obj))
        if query is not None:
            scored.sort(key=lambda t: t[0])
        for sort in reversed(list(request.sort_by)):
            key = sort.path[0]
            scored.sort(key=lambda t: str(t[2]["props"].get(key, "")), reverse=not sort.ascending)
        scored = scored[request.offset : request.offset + (request.limit or len(scored))]
        results = []
        for distance, uuid, obj in scored:
            meta = search_get_pb2.MetadataResult(id=uuid, id_as_bytes=bytes.fromhex(uuid.replace("-", "")))
            if distance is not None and request.HasField("near_vector"):
                meta.distance, meta.distance_present = distance, True
            elif distance is not None:  # hybrid: a fused score, no distance
                meta.score, meta.score_present = 1.0 - distance, True
            if request.metadata.vectors:
                for name in request.metadata.vectors:
                    meta.vectors.append(base_pb2.Vectors(name=name, vector_bytes=obj["vectors"][name].tobytes(),
                                                         type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32))
            props = properties_pb2.Properties(fields={k: self._value(k, v) for k, v in obj["props"].items()})
            results.append(search_get_pb2.SearchResult(
                metadata=meta, properties=search_get_pb2.PropertiesResult(non_ref_props=props)))
        return search_get_pb2.SearchReply(results=results)

    def Aggregate(self, request, context):  # noqa: N802
        self.calls["Aggregate"].append(request)
        if request.tenant not in self.objects:
            context.abort(grpc.StatusCode.UNKNOWN, f"tenant not found: {request.tenant}")
        found = self._select(request.tenant, request.filters if request.HasField("filters") else None)
        return aggregate_pb2.AggregateReply(single_result=aggregate_pb2.AggregateReply.Single(objects_count=len(found)))

    def BatchDelete(self, request, context):  # noqa: N802
        self.calls["BatchDelete"].append(request)
        with self.lock:
            found = self._select(request.tenant, request.filters)
            for uuid, _ in found:
                del self.objects[request.tenant][uuid]
        return batch_delete_pb2.BatchDeleteReply(matches=len(found), successful=len(found))


def quiet_weaviate_logs(caplog) -> None:
    """werkzeug's request lines and weaviate-client's retry warnings are noise in these tests."""
    caplog.set_level(logging.ERROR, logger="werkzeug")
    caplog.set_level(logging.ERROR, logger="weaviate-client")


@pytest.fixture
def fake(caplog):
    """A running FakeWeaviate, stopped after the test (import this fixture into a test module)."""
    quiet_weaviate_logs(caplog)
    server = FakeWeaviate().start()
    yield server
    server.stop()
