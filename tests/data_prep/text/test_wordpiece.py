"""WordPiece encoding against an independent greedy longest-match implementation."""

import re

import numpy as np
import pytest

from data_prep.text.wordpiece import WordPieceEncoder, read_vocab
from kaleido_tf.errors import DataError

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "red",
    "knit",
    "sweat",
    "##er",
    "##s",
    "in",
    "wool",
    ".",
    ",",
    "strip",
    "##ed",
    "s",
    "##w",
]


def reference_encode(text, vocab, t):
    """BERT's basic split (lower-case, punctuation) + greedy longest match."""
    index = {tok: i for i, tok in enumerate(vocab)}
    words = re.findall(r"\w+|[^\w\s]", text.lower())
    ids, word_of = [], []
    for w, word in enumerate(words):
        start, pieces = 0, []
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in index:
                    break
                end -= 1
            if end == start:
                pieces = [index["[UNK]"]]
                break
            pieces.append(index[piece])
            start = end
        ids += pieces
        word_of += [w] * len(pieces)
    ids, word_of = ids[: t - 2], word_of[: t - 2]
    full = [2] + ids + [3] + [0] * (t - 2 - len(ids))
    words_full = [-1] + word_of + [-1] * (t - 1 - len(ids))
    return full, words_full


@pytest.fixture(scope="module")
def encoder():
    return WordPieceEncoder(VOCAB, 12)


@pytest.mark.parametrize(
    "text",
    [
        "Red knit sweater.",
        "Striped wool sweaters, in red",
        "RED QUUX sweater",
        "",
        "red red red red red red red red red red red red",
    ],
)
def test_matches_reference(encoder, text):
    ids, words, truncated = encoder.encode([text])
    want_ids, want_words = reference_encode(text, VOCAB, 12)
    assert ids[0].tolist() == want_ids
    assert words[0].tolist() == want_words
    assert truncated == int(len(re.findall(r"\w+|[^\w\s]", text)) > 10)


def test_batch_equals_single(encoder):
    texts = ["Red knit sweater.", "wool", "Striped sweaters, in red"]
    ids, words, _ = encoder.encode(texts)
    for i, text in enumerate(texts):
        one_ids, one_words, _ = encoder.encode([text])
        np.testing.assert_array_equal(ids[i], one_ids[0])
        np.testing.assert_array_equal(words[i], one_words[0])


def test_read_vocab_checks_special_tokens(tmp_path):
    good = tmp_path / "vocab.txt"
    good.write_text("\n".join(VOCAB) + "\n")
    assert read_vocab(good) == VOCAB
    bad = tmp_path / "bad.txt"
    bad.write_text("[PAD]\nred\n")
    with pytest.raises(DataError, match=r"lacks the special tokens \['\[UNK\]'"):
        read_vocab(bad)
    with pytest.raises(DataError, match="cannot read"):
        read_vocab(tmp_path / "absent.txt")
