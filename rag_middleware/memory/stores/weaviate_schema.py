"""How a MemoryRecord lives in Weaviate: the collection schema, properties <-> record, and filters."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ...records import MemoryFilter, MemoryRecord

__all__ = [
    "RETURN_PROPERTIES", "TENANT_NAME", "UPDATABLE", "VECTOR_NAME", "collection_config", "to_date", "to_properties",
    "to_filter", "to_record", "vector_of",
]

VECTOR_NAME = "embedding"
TENANT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FIELD_PROPS = ("record_id", "domain", "kind", "status", "source", "template_version")
TEXT_PROPS = ("question", "answer", "reason", "wrong")
UPDATABLE = {"status", "source", "answer", "reason", "wrong", "score", "template_version", "meta", "kind", "question"}
RETURN_PROPERTIES = [*FIELD_PROPS, *TEXT_PROPS, "score", "created_at", "updated_at", "meta"]


def to_date(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def collection_config(name: str, *, replication_factor: int = 1) -> dict[str, Any]:
    """Keyword arguments of ``collections.create``: the schema this store relies on."""
    from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances

    props = [Property(name=n, data_type=DataType.TEXT, tokenization=Tokenization.FIELD,
                      index_filterable=True, index_searchable=False) for n in FIELD_PROPS]
    props += [Property(name=n, data_type=DataType.TEXT, tokenization=Tokenization.WORD,
                       index_searchable=True, index_filterable=n == "question") for n in TEXT_PROPS]
    props += [
        Property(name="score", data_type=DataType.NUMBER, index_filterable=True, index_range_filters=True),
        Property(name="created_at", data_type=DataType.DATE, index_filterable=True, index_range_filters=True),
        Property(name="updated_at", data_type=DataType.DATE, index_filterable=True),
        Property(name="meta", data_type=DataType.TEXT, index_filterable=False, index_searchable=False),
    ]
    return {
        "name": name,
        "description": "rag-middleware memory: past Q&A, examples and negatives",
        "properties": props,
        "vector_config": Configure.Vectors.self_provided(
            name=VECTOR_NAME,
            vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)),
        "multi_tenancy_config": Configure.multi_tenancy(enabled=True, auto_tenant_creation=True,
                                                        auto_tenant_activation=True),
        "inverted_index_config": Configure.inverted_index(index_null_state=True, index_timestamps=True),
        **({"replication_config": Configure.replication(factor=replication_factor)} if replication_factor > 1 else {}),
    }


def to_properties(rec: MemoryRecord) -> dict[str, Any]:
    props: dict[str, Any] = {
        "record_id": rec.id, "domain": rec.domain, "kind": rec.kind, "status": rec.status, "source": rec.source,
        "question": rec.question, "answer": rec.answer, "reason": rec.reason, "wrong": rec.wrong,
        "template_version": rec.template_version, "created_at": to_date(rec.created_at),
        "updated_at": to_date(rec.updated_at), "meta": json.dumps(rec.meta, sort_keys=True),
    }
    if rec.score is not None:
        props["score"] = float(rec.score)
    return props

def to_record(tenant: str, props: dict[str, Any]) -> MemoryRecord:
    data = {k: v for k, v in props.items() if v is not None}
    data["id"] = data.pop("record_id")
    data["tenant"] = tenant
    data["meta"] = json.loads(data.get("meta") or "{}")
    for key in ("created_at", "updated_at"):
        if key in data:
            data[key] = to_date(data[key])
    return MemoryRecord.model_validate(data)

def vector_of(obj: Any) -> np.ndarray | None:
    vec = obj.vector.get(VECTOR_NAME) if isinstance(obj.vector, dict) else obj.vector
    return None if vec is None else np.asarray(vec, dtype=np.float32)


def to_filter(f: MemoryFilter | None) -> Any:
    from weaviate.classes.query import Filter

    parts = []
    if f is not None:
        if f.domain is not None:
            parts.append(Filter.by_property("domain").equal(f.domain))
        if f.kinds is not None:
            parts.append(Filter.by_property("kind").contains_any(list(f.kinds)) if f.kinds
                         else Filter.by_property("kind").is_none(True))
        if f.statuses is not None:
            parts.append(Filter.by_property("status").contains_any(list(f.statuses)) if f.statuses
                         else Filter.by_property("status").is_none(True))
        if f.created_before is not None:
            parts.append(Filter.by_property("created_at").less_than(to_date(f.created_before)))
        # not contains_none: that operator needs Weaviate 1.33, and exclusions are a handful of ids
        parts.extend(Filter.by_property("record_id").not_equal(rid) for rid in sorted(f.exclude_ids))
    return Filter.all_of(parts) if len(parts) > 1 else (parts[0] if parts else None)
