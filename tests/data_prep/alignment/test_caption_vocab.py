"""The caption vocabulary, and basic tokenisation agreeing with prepare's word_index."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.alignment.caption_vocab import (
    END_ID,
    PAD_ID,
    SPECIALS,
    START_ID,
    UNK_ID,
    CaptionVocab,
    basic_words,
    caption_words,
)
from data_prep.text.wordpiece import WordPieceEncoder, learn_vocab
from kaleido_tf.errors import DataError

TEXTS = [
    "Slim-fit jeans in Black. Five-pocket styling, 100% cotton.",
    "Café au lait T-shirt — logo at chest; zip (YKK) at back!",
    "Red wool V-neck sweater. Ribbed cuffs and hem.",
]


def test_basic_words_are_the_words_word_index_counts():
    vocab = learn_vocab(TEXTS * 3, 200)
    ids, word_index, _ = WordPieceEncoder(vocab, 64).encode(TEXTS)
    for text, words, wi in zip(TEXTS, basic_words(TEXTS), word_index):
        used = wi[wi >= 0]
        # Every word has at least one token, in order: indices 0 .. len - 1.
        assert sorted(set(used.tolist())) == list(range(len(words)))
        assert words == [w.lower() for w in words]
    assert basic_words(TEXTS[:1])[0][:7] == [
        "slim",
        "-",
        "fit",
        "jeans",
        "in",
        "black",
        ".",
    ]
    assert "cafe" in basic_words(TEXTS[1:2])[0]  # accents stripped


def test_caption_words_drop_punctuation():
    words = basic_words(TEXTS[:1])[0]
    assert caption_words(words) == [
        "slim",
        "fit",
        "jeans",
        "in",
        "black",
        "five",
        "pocket",
        "styling",
        "100",
        "cotton",
    ]


def test_build_counts_and_orders_words():
    captions = [["red", "sweater"]] * 5 + [["blue", "sweater"]] * 4 + [["red"]]
    vocab = CaptionVocab.build(captions, min_word_count=5)
    assert vocab.words == [*SPECIALS, "sweater", "red"]
    assert vocab.counts == [0, 0, 0, 0, 9, 6]
    assert "blue" not in vocab and "<unk>" not in vocab
    assert vocab.id("blue") == UNK_ID


def test_encode_decode_and_truncation(tmp_path):
    vocab = CaptionVocab([*SPECIALS, "a", "b"], [0, 0, 0, 0, 5, 5])
    ids = vocab.encode(["a", "zz", "b", "a"], max_words=3)
    np.testing.assert_array_equal(ids, [START_ID, 4, UNK_ID, 5, END_ID])
    ids = vocab.encode(["b"], max_words=3)
    np.testing.assert_array_equal(ids, [START_ID, 5, END_ID, PAD_ID, PAD_ID])
    assert vocab.decode([START_ID, 4, 5, END_ID, 4]) == ["a", "b"]
    vocab.save(tmp_path / "v.json")
    again = CaptionVocab.load(tmp_path / "v.json")
    assert again.words == vocab.words and again.counts == vocab.counts


def test_bad_vocab_files(tmp_path):
    (tmp_path / "bad.json").write_text('{"words": ["x"]}')
    with pytest.raises(DataError, match="caption vocabulary"):
        CaptionVocab.load(tmp_path / "bad.json")
    with pytest.raises(DataError, match="start with"):
        CaptionVocab(["a", *SPECIALS], [0] * 5)
