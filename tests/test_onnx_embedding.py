"""The onnxruntime embedder: the torch embedder's vectors, an export kept in a cache, torch when it cannot."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from rag_middleware.config import EmbeddingSettings, load_settings
from rag_middleware.memory import onnx_embedding, onnx_quantize
from rag_middleware.memory.embedding import CachedEmbedder, SentenceTransformerEmbedder
from rag_middleware.memory.onnx_embedding import OnnxEmbedder, UnsupportedModel, make_embedder, read_layout
from rag_middleware.request.pipeline import Middleware

from conftest import FakeLLM

pytestmark = pytest.mark.integration
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXTS = [
    "Columns: order_id, customer, amount, date\nRemove duplicate rows.",
    "sum the amount per region",
    "x",
    "Columns: id, name, price, stock, category, supplier, updated_at\nkeep the products with a price above 20, "
    "then sort them by stock from highest to lowest and show the top 5 as a bar chart",
    "  leading and trailing spaces  ",
    "Ünïcödé, ÉMOJI 🙂 and 数字",
    "",
]
LONG = "the quick brown fox jumps over the lazy dog " * 80  # far beyond max_seq_length (256 tokens)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def onnx(cache_dir) -> OnnxEmbedder:
    embedder = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=cache_dir)
    embedder.encode(["load"])
    assert embedder.runtime == "onnx" and embedder.exported
    return embedder


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def test_the_vectors_are_the_torch_embedders(onnx, torch_embedder):
    for batch in ([TEXTS[1]], TEXTS, [LONG, TEXTS[2]], [LONG + " and more words after the cut", LONG]):
        ours, theirs = onnx.encode(batch), torch_embedder.encode(batch)
        assert ours.dtype == np.float32 and ours.shape == (len(batch), 384)
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        assert cosines(ours, theirs).min() >= 0.9999
    # a text padded in a batch embeds as it does alone
    assert cosines(onnx.encode(TEXTS)[1:2], onnx.encode([TEXTS[1]])).min() >= 0.9999
    # truncated at max_seq_length: what follows the cut changes nothing
    cut = onnx.encode([LONG + " and more words after the cut", LONG])
    assert float(cut[0] @ cut[1]) >= 0.9999


def test_a_large_batch_is_cut_into_batches_in_input_order(cache_dir, torch_embedder):
    small = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=cache_dir, batch_size=3)
    texts = [f"request number {i}: " + "filter rows " * (i % 5) for i in range(11)]
    assert cosines(small.encode(texts), torch_embedder.encode(texts)).min() >= 0.9999
    assert not small.exported  # the module's export was reused


def test_texts_of_very_different_lengths_run_in_groups_with_the_same_vectors(onnx, torch_embedder, monkeypatch):
    runs = []
    run = onnx_embedding._Runner._run
    monkeypatch.setattr(onnx_embedding._Runner, "_run", lambda self, encs: runs.append(len(encs)) or run(self, encs))
    texts = [TEXTS[3], "sort by x", "filter y", TEXTS[3] + " please", "drop z"]
    assert cosines(onnx.encode(texts), torch_embedder.encode(texts)).min() >= 0.9999
    assert sorted(runs) == [2, 3]  # the three short clauses together, the two long requests together


def test_same_name_and_dimension_as_torch(onnx, torch_embedder):
    assert (onnx.name, onnx.dim) == (torch_embedder.name, torch_embedder.dim)


def test_empty_input(onnx):
    out = onnx.encode([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_the_cache_file_is_reused(onnx, cache_dir, monkeypatch):
    assert onnx.cache_path is not None and onnx.cache_path.parent == cache_dir and onnx.cache_path.is_file()
    assert [p.name for p in cache_dir.iterdir()] == [onnx.cache_path.name]  # no temp file left behind
    assert onnx.cache_path.stat().st_mode & 0o777 == 0o644
    monkeypatch.setattr(onnx_embedding, "_export", lambda *a: pytest.fail("exported again"))
    again = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=cache_dir)
    vector = again.encode([TEXTS[0]])
    assert again.runtime == "onnx" and not again.exported and again.cache_path == onnx.cache_path
    assert float(vector[0] @ onnx.encode([TEXTS[0]])[0]) >= 0.99999


def test_a_corrupt_cache_file_is_exported_again(onnx, tmp_path, caplog, torch_embedder):
    path = tmp_path / onnx.cache_path.name
    path.write_bytes(onnx.cache_path.read_bytes()[:5000])  # half a file, as a crash mid-copy would leave
    with caplog.at_level(logging.WARNING, logger="rag_middleware.memory.onnx_embedding"):
        embedder = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=tmp_path)
        vectors = embedder.encode(TEXTS[:2])
    assert embedder.runtime == "onnx" and embedder.exported
    assert "does not load" in caplog.text
    assert path.stat().st_size == onnx.cache_path.stat().st_size
    assert cosines(vectors, torch_embedder.encode(TEXTS[:2])).min() >= 0.9999


def test_without_onnxruntime_it_warns_once_and_runs_on_torch(monkeypatch, tmp_path, caplog, torch_embedder):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    with caplog.at_level(logging.WARNING, logger="rag_middleware.memory.onnx_embedding"):
        embedder = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=tmp_path)
        first = embedder.encode(TEXTS)
        embedder.encode(["again"])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "runs on torch" in warnings[0].getMessage()
    assert "onnxruntime is not installed" in warnings[0].getMessage()
    assert embedder.runtime == "torch" and embedder.dim == 384
    assert cosines(first, torch_embedder.encode(TEXTS)).min() >= 0.99999
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_falls_back_to_torch(monkeypatch, tmp_path, caplog, torch_embedder):
    def broken(st_model):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_embedding, "_export", broken)
    with caplog.at_level(logging.WARNING, logger="rag_middleware.memory.onnx_embedding"):
        embedder = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=tmp_path)
        vectors = embedder.encode(TEXTS[:3])
    assert embedder.runtime == "torch" and "exporter exploded" in caplog.text
    assert cosines(vectors, torch_embedder.encode(TEXTS[:3])).min() >= 0.99999


def test_an_unwritable_cache_still_serves_the_export(monkeypatch, tmp_path, caplog, onnx):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="rag_middleware.memory.onnx_embedding"):
        embedder = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=blocker / "cache")
        vector = embedder.encode([TEXTS[1]])
    assert embedder.runtime == "onnx" and "cannot keep the ONNX export" in caplog.text
    assert float(vector[0] @ onnx.encode([TEXTS[1]])[0]) >= 0.99999


def test_layouts_it_does_not_support(tmp_path):
    model = read_layout(Path(onnx_embedding.model_dir("all-MiniLM-L6-v2")))
    assert (model.pooling, model.max_seq_length, model.do_lower_case) == ("mean", 256, False)
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(
        '[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},'
        ' {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]')
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode": "cls"}')
    assert read_layout(tmp_path).pooling == "cls"
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_max_tokens": true}')
    with pytest.raises(UnsupportedModel, match="pooling"):
        read_layout(tmp_path)
    (tmp_path / "modules.json").write_text('[{"path": "", "type": "x.Transformer"}, {"path": "d", "type": "x.Dense"}]')
    with pytest.raises(UnsupportedModel, match="modules"):
        read_layout(tmp_path)


def test_the_setting_chooses_the_runtime(tmp_path, monkeypatch, caplog):
    assert EmbeddingSettings().runtime == "onnx"
    with pytest.raises(ValueError):
        EmbeddingSettings(runtime="tensorflow")
    monkeypatch.setenv("RAG_MW_EMBEDDING__RUNTIME", "torch")
    assert load_settings(data_dir=tmp_path / "d").embedding.runtime == "torch"
    assert isinstance(make_embedder(runtime="torch"), SentenceTransformerEmbedder)
    assert isinstance(make_embedder(runtime="onnx"), OnnxEmbedder)
    with caplog.at_level(logging.WARNING, logger="rag_middleware.memory.onnx_embedding"):
        assert isinstance(make_embedder(runtime="onnx", device="cuda"), SentenceTransformerEmbedder)
    assert "CPU only" in caplog.text
    for runtime, kind in (("torch", SentenceTransformerEmbedder), ("onnx", OnnxEmbedder)):
        settings = load_settings(data_dir=tmp_path / runtime, embedding={"runtime": runtime})
        with Middleware(settings, backend=FakeLLM()) as mw:
            assert isinstance(mw.embedder, CachedEmbedder) and isinstance(mw.embedder.inner, kind)


def test_int8_is_opt_in_close_to_fp32_and_cached_apart(onnx, cache_dir, monkeypatch):
    assert EmbeddingSettings().quantize == "none" and onnx.name == "all-MiniLM-L6-v2"
    int8 = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=cache_dir, quantize="int8")
    assert int8.name == "all-MiniLM-L6-v2:int8"  # its vectors are not the exact model's: cached under their own name
    vectors = int8.encode(TEXTS)
    assert int8.runtime == "onnx" and not int8.exported  # made from the module's fp32 export
    assert int8.cache_path.name.endswith("-int8v1.onnx") and int8.cache_path.is_file()
    assert int8.cache_path.stat().st_size < onnx.cache_path.stat().st_size * 0.7  # the MatMul weights in 8 bits
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert 0.95 <= cosines(vectors, onnx.encode(TEXTS)).min() < 0.99999
    # the next start loads the int8 file: nothing is exported or quantised again
    monkeypatch.setattr(onnx_embedding, "_export", lambda *a: pytest.fail("exported again"))
    monkeypatch.setattr(onnx_quantize, "quantize_int8", lambda *a: pytest.fail("quantised again"))
    again = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=cache_dir, quantize="int8")
    assert cosines(again.encode(TEXTS), vectors).min() >= 0.99999 and again.cache_path == int8.cache_path


def test_int8_that_cannot_be_made_runs_in_fp32(onnx, cache_dir, monkeypatch, caplog):
    def broken(source):
        raise RuntimeError("quantiser exploded")

    monkeypatch.setattr(onnx_quantize, "quantize_int8", broken)
    fresh = cache_dir / "int8-fails"
    fresh.mkdir()
    (fresh / onnx.cache_path.name).write_bytes(onnx.cache_path.read_bytes())
    with caplog.at_level(logging.WARNING, logger="rag_middleware.memory.onnx_embedding"):
        embedder = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=fresh, quantize="int8")
        vectors = embedder.encode(TEXTS[:3])
    assert embedder.runtime == "onnx" and "runs in fp32" in caplog.text and "quantiser exploded" in caplog.text
    assert cosines(vectors, onnx.encode(TEXTS[:3])).min() >= 0.99999
    assert [p.name for p in fresh.iterdir()] == [onnx.cache_path.name]


def test_the_quantize_setting(tmp_path, caplog):
    with pytest.raises(ValueError):
        EmbeddingSettings(quantize="int4")
    with pytest.raises(ValueError):
        OnnxEmbedder("all-MiniLM-L6-v2", quantize="int4")
    with caplog.at_level(logging.WARNING, logger="rag_middleware.memory.onnx_embedding"):
        assert isinstance(make_embedder(runtime="torch", quantize="int8"), SentenceTransformerEmbedder)
    assert "runs in fp32" in caplog.text
    settings = load_settings(data_dir=tmp_path / "d", embedding={"quantize": "int8"})
    with Middleware(settings, backend=FakeLLM()) as mw:
        assert mw.embedder.inner.quantize == "int8" and mw.embedder.name == "all-MiniLM-L6-v2:int8"


def test_a_busy_cpu_runs_on_one_thread_with_the_same_vectors(onnx, cache_dir, monkeypatch):
    class Busy:
        def __init__(self) -> None:
            self.now = False

        def busy(self) -> bool:
            return self.now

    embedder = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=cache_dir, threads=2)
    embedder.encode(["load"])
    runner = embedder._runner
    assert runner.threads == 2 and runner.file == onnx.cache_path
    runner.contention = busy = Busy()
    calm = embedder.encode(TEXTS)
    assert runner._solo is None  # made only when the CPU is busy
    busy.now = True
    assert runner.session_now() is not runner.session
    crowded = embedder.encode(TEXTS)
    assert cosines(crowded, calm).min() >= 0.99999
    assert runner.session_now() is runner._solo  # made once, then reused
    busy.now = False
    assert runner.session_now() is runner.session


def test_one_thread_needs_no_second_session(cache_dir):
    embedder = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=cache_dir, threads=1)
    embedder.encode(["load"])
    assert embedder._runner.contention is None and embedder._runner.session_now() is embedder._runner.session
