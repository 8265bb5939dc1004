"""The in-graph tokenizer gives data_prep's ids, and refuses unusable vocabularies."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from data_prep.text.wordpiece import WordPieceEncoder, read_vocab
from kaleido_tf.errors import DataError
from kaleido_tf.export.text_signature import ServingVocabulary, read_vocab_tokens

HARD_TEXTS = [
    "",
    "   ",
    "UPPER Case ÉCOLE naïve Façade",
    "Punctuation!!! (zip), 5'4\" tall; 100% cotton-blend.",
    "unknownwordzzzqqq xyzzy",
    "tabs\tand\nnewlines",
    "日本 中文 text",
    " ".join(["long black wool coat"] * 30),  # truncated
]


def test_tokenizer_gives_data_prep_ids(synthetic_prepared):
    folder = synthetic_prepared["validation"]
    manifest = json.loads((folder / "manifest.json").read_text())
    with open(folder / manifest["products_file"], encoding="utf-8") as f:
        products = [json.loads(line) for line in f]
    texts = [p["text"] for p in products] + HARD_TEXTS
    t = manifest["max_seq_length"]
    lower_case = manifest["text"]["lower_case"]
    vocab = folder / manifest["vocab_file"]
    expected, _, truncated = WordPieceEncoder(read_vocab(vocab), t, lower_case).encode(
        texts
    )
    assert truncated >= 1  # the long text, at least
    vocabulary = ServingVocabulary(vocab, lower_case, t)
    input_ids, input_mask = (x.numpy() for x in vocabulary.tokenize(tf.constant(texts)))
    width = input_ids.shape[1]
    assert width == t  # padded to the longest, which was truncated to T
    np.testing.assert_array_equal(input_ids, expected)
    np.testing.assert_array_equal(input_mask, (expected != 0).astype(np.int32))
    # products.jsonl keeps the unpadded ids data_prep wrote.
    for i, p in enumerate(products):
        assert input_ids[i, : len(p["input_ids"])].tolist() == p["input_ids"]
    # A batch of short texts is padded only to its own longest text.
    short_ids, short_mask = vocabulary.tokenize(tf.constant(["", "red"]))
    assert short_ids.shape[1] == int(short_mask.numpy().sum(axis=1).max()) <= 3
    unknown = texts.index("日本 中文 text")  # characters the demo vocabulary lacks
    unk_id = read_vocab(vocab).index("[UNK]")
    assert unk_id in input_ids[unknown]


def test_unusable_vocabularies_are_refused(tmp_path):
    good = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(good) + "\n")
    assert read_vocab_tokens(path) == good
    path.write_text("\n".join(good[1:]) + "\n")
    with pytest.raises(DataError, match=r"\[PAD\]"):
        read_vocab_tokens(path)
    path.write_text("\r\n".join(good) + "\r\n")
    with pytest.raises(DataError, match="white space"):
        read_vocab_tokens(path)
    path.write_text("\n".join(good + ["red"]) + "\n")
    with pytest.raises(DataError, match="duplicate"):
        read_vocab_tokens(path)
    with pytest.raises(DataError, match="cannot read"):
        read_vocab_tokens(tmp_path / "missing.txt")
