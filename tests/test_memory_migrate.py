"""``rag-middleware memory migrate --to weaviate``: copies SQLite memory with vectors, resumes after a failure from
its checkpoint, is idempotent, and checks counts per tenant and kind (Weaviate: tests/weaviate_fake.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from weaviate.util import generate_uuid5
import weaviate_fake
from weaviate_fake import FakeWeaviate

from rag_middleware.memory.stores.sqlite import SQLiteStore
from rag_middleware.cli import main
from rag_middleware.records import MemoryRecord

# weaviate_fake.py's fixtures, requested here by name (pytest finds fixtures among a module's attributes)
fake = weaviate_fake.fake

KINDS = ("interaction", "example", "negative")


@pytest.fixture
def source(tmp_path, monkeypatch) -> dict[str, np.ndarray]:
    """250 records over two tenants and three kinds in <tmp>/data/rag.db; returns id -> vector."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAG_MW_CONFIG", raising=False)
    monkeypatch.setenv("RAG_MW_STORE__WEAVIATE__SKIP_INIT_CHECKS", "true")
    rng = np.random.default_rng(7)
    records = [MemoryRecord(id=f"rec{i:04d}", tenant="acme" if i % 5 else "globex", domain="data_ops",
                            kind=KINDS[i % 3], question=f"question {i}", answer=f"answer {i}", meta={"i": i})
               for i in range(250)]
    vectors = rng.standard_normal((250, 16)).astype(np.float32)
    store = SQLiteStore(tmp_path / "data" / "rag.db")
    store.upsert(records, vectors)
    store.close()
    return {r.id: v for r, v in zip(records, vectors, strict=True)}


def migrate(capsys, fake: FakeWeaviate, *extra: str) -> tuple[int, str, str]:
    argv = ["--data-dir", "data", "memory", "migrate", "--to", "weaviate", "--url", fake.url,
            "--grpc-port", str(fake.grpc_port), "--batch-size", "100", *extra]
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    out = re.sub(r"[\u2500-\u257f]", " ", out)  # the table's box drawing
    return code, " ".join(out.split()), " ".join(err.split())


def test_migrate_copies_records_with_vectors_and_reports_counts(capsys, fake, source):
    code, out, err = migrate(capsys, fake)
    assert code == 0, err
    assert "inserted 250" in out and "source and target match" in out
    assert "acme interaction 67 67 ok" in out and "globex interaction 17 17 ok" in out  # per tenant and kind
    assert fake.count() == 250
    for rid, vector in list(source.items())[::37]:
        tenant = "globex" if int(rid[3:]) % 5 == 0 else "acme"
        obj = fake.objects[tenant][generate_uuid5(rid)]
        assert np.array_equal(obj["vectors"]["embedding"], vector)
        assert json.loads(obj["props"]["meta"]) == {"i": int(rid[3:])}
    assert not list(Path("data").glob("migrate-*.json")), "a finished run leaves no checkpoint"

    code, out, err = migrate(capsys, fake)  # idempotent: nothing is written again
    assert code == 0, err
    assert "inserted 0" in out and "unchanged 250" in out and "source and target match" in out
    assert sum(fake.deliveries.values()) == 250


def test_migrate_resumes_from_its_checkpoint_after_a_failure(capsys, fake, source):
    fake.reject["rec0150"] = "disk full"
    code, out, err = migrate(capsys, fake)
    assert code == 1 and "rec0150" in err and "disk full" in err
    checkpoint = json.loads(next(Path("data").glob("migrate-weaviate-RagMemory.json")).read_text())
    assert checkpoint["last_id"] == "rec0099" and checkpoint["copied"] == 100
    del fake.reject["rec0150"]
    batches = len(fake.calls["BatchObjects"])
    code, out, err = migrate(capsys, fake)
    assert code == 0, err
    assert "resuming after 100" in out and "source and target match" in out
    sent = [o.uuid for call in fake.calls["BatchObjects"][batches:] for per in [call.objects] for o in per]
    assert generate_uuid5("rec0050") not in sent and generate_uuid5("rec0150") in sent
    assert fake.count() == 250


def test_migrate_reports_a_mismatch(capsys, fake, source):
    assert migrate(capsys, fake)[0] == 0
    fake.objects["acme"].pop(generate_uuid5("rec0001"))  # gone from Weaviate behind our back ...
    fake.objects.setdefault("initech", {})["x"] = {"props": {"record_id": "x", "kind": "example"}, "vectors": {}}
    code, out, _ = migrate(capsys, fake, "--restart")  # ... is copied again; the stray tenant is reported
    assert code == 1
    assert "initech example 0 1 differs" in out and "do not match" in out
    assert "acme example 67 67 ok" in out, "the record missing from Weaviate was copied again"


def test_migrate_to_an_unknown_target_or_unreachable_weaviate_is_one_clear_line(capsys, fake, source):
    code, _, err = migrate(capsys, fake, "--to", "pinecone")
    assert code == 2 and "only target is 'weaviate'" in err
    fake.stop()
    code, _, err = migrate(capsys, fake)
    assert code == 1 and "unreachable" in err
