"""The real path: the packaged MiniLM embedder and the embedded Gemma 3 270M through llama.cpp.

A handful of calls; these run in CI (marker ``integration``), at temperature 0 with a fixed seed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag_middleware import Middleware, load_settings
from rag_middleware.llm.base import GenerateRequest
from rag_middleware.llm.embedded import EmbeddedBackend
from rag_middleware.memory.embedding import SentenceTransformerEmbedder
from rag_middleware.llm.tokens import make_token_counter

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real_embedder():
    return SentenceTransformerEmbedder("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def embedded():
    return EmbeddedBackend(model_path=None, num_ctx=4096, threads=2)


def test_real_embedder_ranks_paraphrases_above_unrelated(real_embedder):
    v = real_embedder.encode(["Sort the table by price, cheapest first",
                              "Order rows by price ascending",
                              "What is the capital of France?"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2


def test_small_batch_fast_path_matches_sentence_transformers_encode(real_embedder):
    """A request's few texts skip ``SentenceTransformer.encode``; the vectors must be the library's own."""
    texts = ["Columns: region, amount\nRemove duplicate rows, then sort by amount", "Remove duplicate rows", "x"]
    ours = real_embedder.encode(texts)
    model = real_embedder._load()
    theirs = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=64)
    assert ours.shape == theirs.shape == (3, 384) and ours.dtype == np.float32
    assert np.allclose(ours, theirs, atol=1e-5)
    many = [f"sentence number {i}" for i in range(20)]  # above the small-batch size: the library path
    assert np.allclose(real_embedder.encode(many)[:3], real_embedder.encode(many[:3]), atol=1e-5)


def test_embedded_grammar_gives_schema_shaped_json(embedded):
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]},
                                               "count": {"type": "integer"}},
              "required": ["answer", "count"], "additionalProperties": False}
    request = GenerateRequest(model="gemma3:270m", messages=[], json_schema=schema,
                              prompt="Is water wet? Answer as JSON with a count of 3.\nAnswer:",
                              options={"temperature": 0.0, "seed": 1, "num_predict": 40})
    completion = embedded.generate(request)
    value = json.loads(completion.text)
    assert set(value) == {"answer", "count"} and value["answer"] in ("yes", "no")
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
    # each generated token with its log-probability: together they write the answer
    assert completion.logprobs and "".join(t for t, _ in completion.logprobs) == completion.text
    assert all(lp <= 0.0 for _, lp in completion.logprobs)


def test_embedded_stream_yields_pieces_then_one_final(embedded):
    request = GenerateRequest(model="gemma3:270m", messages=[], prompt="The three primary colours are",
                              options={"temperature": 0.0, "seed": 1, "num_predict": 12})
    chunks = list(embedded.stream(request))
    assert [c.done for c in chunks].count(True) == 1 and chunks[-1].done
    assert "".join(c.text for c in chunks[:-1]) == chunks[-1].completion.text
    assert chunks[-1].completion.done_reason == "length"


def test_gguf_token_counts_match_llama_cpp(embedded):
    counter = make_token_counter("auto", gguf_path=embedded.gguf_path)
    prompt = "Request: Columns: a, b\nsort by a\nAnswer:"
    completion = embedded.generate(GenerateRequest(model="g", messages=[], prompt=prompt,
                                                   options={"num_predict": 1, "temperature": 0.0}))
    assert abs(counter.count(prompt) + 1 - completion.prompt_tokens) <= 1  # +1: llama.cpp adds BOS


def test_ask_end_to_end_on_embedded_defaults(project, embedded):
    settings = load_settings(data_dir=project / "data", knowledge_base=project / "knowledge_base",
                             prompts_dir=project / "prompts")
    with Middleware(settings, backend=embedded) as mw:
        request = "Columns: sku, warehouse, qty\nSort by qty, largest first."
        result = mw.ask(request, domain="data_ops")
        assert result.valid
        assert result.selected and result.selected[0].source == "curated"
        # the model's own token probabilities are part of the answer's confidence
        assert result.attempts[-1].logprobs
        assert 0.0 < mw.journal.get(result.interaction_id).confidence_parts["token_probability"] <= 1.0
        assert result.attempts[0].prompt and result.attempts[0].prompt_tokens > 0
        assert mw.journal.get(result.interaction_id).status == "validated"
        # the validated answer is memory now, kept for review; once approved, a paraphrase retrieves it
        mw.store.update(result.interaction_id, status="approved")
        again = mw.render("Columns: sku, warehouse, qty\nOrder the rows by qty, biggest first.", domain="data_ops")
        assert result.interaction_id in [s.id for s in again.selected]
        # the embedding of the first question was cached, not recomputed
        before = mw.embedder.computed
        mw.render(request, domain="data_ops")
        assert mw.embedder.computed == before


def test_replay_of_a_small_file_on_the_embedded_model(project, embedded, tmp_path):
    from rag_middleware.analytics.replay import ReplayOptions, load_items, run_replay, summarize

    items_file = tmp_path / "items.jsonl"
    items_file.write_text("\n".join(json.dumps(item) for item in [
        {"id": "r1", "domain": "data_ops",
         "messages": [{"role": "user", "content": "Columns: a, b\nRemove duplicate rows."}],
         "expected": {"task": "clean", "chart_type": "none", "operations": [{"type": "remove_duplicates",
                      "execution_instructions": {"method": "pandas.DataFrame.drop_duplicates", "args": [],
                                                 "kwargs": {}}}]}},
        {"id": "r2", "domain": "assistant", "messages": [{"role": "user", "content": "What is a CSV file?"}]},
    ]) + "\n")
    settings = load_settings(data_dir=project / "data", knowledge_base=project / "knowledge_base",
                             prompts_dir=project / "prompts")
    with Middleware(settings, backend=embedded) as mw:
        items, skipped = load_items(str(items_file), mw)
        rows = run_replay(mw, items, tmp_path / "out", ReplayOptions())
        assert mw.store.count() == 0  # read-only memory
    assert not skipped and [r["id"] for r in rows] == ["r1", "r2"]
    assert rows[0]["valid"] and rows[0]["match"] is not None and rows[0]["template_version"]
    assert rows[1]["valid"] and isinstance(rows[1]["output"], str) and rows[1]["output"].strip()
    summary = summarize(rows, skipped=skipped)
    assert summary["items"] == 2 and summary["valid_rate"] == 1.0


def test_llama_cpp_applies_every_data_ops_grammar(project, embedded):
    """llama.cpp drops a grammar it cannot compile without an error: check the real schemas are all applied."""
    from rag_middleware.domains import DomainRegistry

    domain = DomainRegistry(project / "knowledge_base").get("data_ops")
    questions = [e.question for e in domain.examples] + [n.question for n in domain.negatives]
    for question in questions:
        steps = None
        for candidate in (None, [["sort", "top_n"], ["group_by"]]):
            steps = candidate
            schema = domain.grammar_schema(question, steps=steps)
            completion = embedded.generate(GenerateRequest(model="g", messages=[], prompt="Text: hello\nAnswer:",
                                                           json_schema=schema,
                                                           options={"num_predict": 3, "temperature": 0.0}))
            assert completion.text.lstrip().startswith("{"), (question, steps, completion.text)
