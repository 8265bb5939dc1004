"""In-graph XLM-R SentencePiece ids: reference rule, tf.function, SavedModel, errors."""

import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf

import kaleido_tf  # noqa: F401
from kaleido_tf.errors import DataError
from kaleido_tf.text.sentencepiece_tokenizer import SentencePieceTokenizer
from tests.fixtures.sentencepiece_model import (
    MULTILINGUAL,
    NUM_PIECES,
    sentencepiece_model,
    synthetic_texts,
)

TEXTS = [*synthetic_texts(5, seed=3), *MULTILINGUAL, "", "Ärmel 中文"]


def _reference(texts, max_len):
    """fairseq ids by hand, padded to the longest: <s>=0 <pad>=1 </s>=2 <unk>=3."""
    processor = spm.SentencePieceProcessor(model_proto=sentencepiece_model())
    rows = []
    for text in texts:
        pieces = processor.encode(text)[: max_len - 2]
        rows.append([0] + [3 if p == 0 else p + 1 for p in pieces] + [2])
    t = max(len(r) for r in rows)
    ids = np.array([r + [1] * (t - len(r)) for r in rows])
    mask = np.array([[1] * len(r) + [0] * (t - len(r)) for r in rows])
    return ids, mask


def test_ids_match_reference_in_a_tf_function():
    tokenizer = SentencePieceTokenizer(sentencepiece_model(), 10)
    fn = tf.function(tokenizer.tokenize)
    ids, mask = fn(tf.constant(TEXTS))
    ref_ids, ref_mask = _reference(TEXTS, 10)
    assert ids.dtype == tf.int32 and mask.dtype == tf.int32
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    np.testing.assert_array_equal(mask.numpy(), ref_mask)
    assert ids.shape[1] == 10  # truncated to max_seq_length
    assert (tokenizer.vocab_size, tokenizer.mask_id) == (NUM_PIECES + 2, NUM_PIECES + 1)


def test_saved_model_carries_the_tokenizer(tmp_path):
    tokenizer = SentencePieceTokenizer(sentencepiece_model(), 32)
    tokenizer.serve = tf.function(
        tokenizer.tokenize, input_signature=[tf.TensorSpec([None], tf.string)]
    )
    tf.saved_model.save(tokenizer, str(tmp_path / "sm"))
    restored = tf.saved_model.load(str(tmp_path / "sm"))
    ids, mask = restored.serve(tf.constant(TEXTS))
    ref_ids, ref_mask = _reference(TEXTS, 32)
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    np.testing.assert_array_equal(mask.numpy(), ref_mask)


def test_errors(tmp_path):
    with pytest.raises(DataError, match="cannot read SentencePiece model"):
        SentencePieceTokenizer(tmp_path / "missing.model", 8)
    empty = tmp_path / "empty.model"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        SentencePieceTokenizer(empty, 8)
    with pytest.raises(DataError, match="not a SentencePiece model"):
        SentencePieceTokenizer(b"not a model", 8)
    with pytest.raises(ValueError, match="max_seq_length"):
        SentencePieceTokenizer(sentencepiece_model(), 1)
