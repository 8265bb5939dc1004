"""Offline XLM-R SentencePiece encoding: fairseq ids, padding, truncation, parity."""

import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf

from data_prep.text.sentencepiece import SentencePieceEncoder, train_sentencepiece
from kaleido_tf.errors import DataError
from kaleido_tf.text.sentencepiece_tokenizer import SentencePieceTokenizer
from tests.fixtures.sentencepiece_model import (
    MULTILINGUAL,
    NUM_PIECES,
    sentencepiece_model,
    synthetic_texts,
)

T = 48
TEXTS = [
    *synthetic_texts(12, seed=5),
    *MULTILINGUAL,
    "",
    "Ärmel ñ 中文 zzz ~~ 12345",  # characters the model never saw: <unk>
    " ".join(synthetic_texts(4, seed=6)),  # longer than T: truncated
]


def _xlmr_reference(texts, t):
    """HF XLMRobertaTokenizer's rule, written out: <s>=0 <pad>=1 </s>=2 <unk>=3,
    fairseq id = SentencePiece id + 1, SentencePiece <unk> (0) -> 3."""
    processor = spm.SentencePieceProcessor(model_proto=sentencepiece_model())
    rows, masks, cut = [], [], 0
    for text in texts:
        pieces = processor.encode(text)
        cut += len(pieces) > t - 2
        pieces = pieces[: t - 2]
        ids = [0] + [3 if p == 0 else p + 1 for p in pieces] + [2]
        rows.append(ids + [1] * (t - len(ids)))
        masks.append([1] * len(ids) + [0] * (t - len(ids)))
    return np.array(rows), np.array(masks), cut


@pytest.fixture(scope="module")
def encoder():
    return SentencePieceEncoder(sentencepiece_model(), T)


def test_ids_follow_xlmr_fairseq_layout(encoder):
    input_ids, input_mask, truncated = encoder.encode(TEXTS)
    ref_ids, ref_mask, ref_cut = _xlmr_reference(TEXTS, T)
    np.testing.assert_array_equal(input_ids, ref_ids)
    np.testing.assert_array_equal(input_mask, ref_mask)
    assert input_ids.dtype == np.int32 and input_ids.shape == (len(TEXTS), T)
    assert truncated == ref_cut and 0 < ref_cut < len(TEXTS)
    np.testing.assert_array_equal(input_ids[TEXTS.index("")][:3], [0, 2, 1])
    assert 3 in input_ids[-2]  # unseen characters are <unk>
    assert input_ids.max() <= NUM_PIECES  # never <mask> (= S + 1)
    assert (encoder.num_pieces, encoder.vocab_size) == (NUM_PIECES, NUM_PIECES + 2)
    assert encoder.mask_id == NUM_PIECES + 1


def test_offline_and_in_graph_ids_are_identical(encoder):
    input_ids, input_mask, _ = encoder.encode(TEXTS)
    tokenizer = SentencePieceTokenizer(sentencepiece_model(), T)
    graph_ids, graph_mask = tokenizer.tokenize(tf.constant(TEXTS))
    width = graph_ids.shape[1]
    assert width == T  # the long text fills T
    np.testing.assert_array_equal(graph_ids.numpy(), input_ids)
    np.testing.assert_array_equal(graph_mask.numpy(), input_mask)
    assert tokenizer.vocab_size == encoder.vocab_size
    assert tokenizer.mask_id == encoder.mask_id


def test_train_sentencepiece_has_xlmr_special_pieces():
    model = train_sentencepiece(synthetic_texts(80, seed=1), 60)
    processor = spm.SentencePieceProcessor(model_proto=model)
    assert [processor.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert processor.get_piece_size() == 60
    encoder = SentencePieceEncoder(model, 8)
    assert encoder.vocab_size == 62 and encoder.mask_id == 61


def test_bad_models_are_refused(tmp_path):
    other = spm.SentencePieceProcessor()
    import io

    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(synthetic_texts(80, seed=2)),
        model_writer=writer,
        vocab_size=60,
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        minloglevel=2,
        num_threads=1,
    )
    other.LoadFromSerializedProto(writer.getvalue())
    with pytest.raises(DataError, match="XLM-R's layout"):
        SentencePieceEncoder(writer.getvalue(), 8)
    with pytest.raises(DataError, match="cannot read SentencePiece model"):
        SentencePieceEncoder(tmp_path / "missing.model", 8)
    with pytest.raises(DataError, match="not a SentencePiece model"):
        SentencePieceEncoder(b"not a model", 8)
    with pytest.raises(DataError, match="no non-empty texts"):
        train_sentencepiece(["", "  "], 60)
