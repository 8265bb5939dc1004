"""XLM-R SentencePiece tokenisation inside the graph, CommerceMM text (spec §4.2).

XLM-R (fairseq) reserves four ids before the SentencePiece pieces and one after
them::

    id        0      1        2       3       4 ...          V - 2     V - 1
    token     <s>    <pad>    </s>    <unk>   piece 3 ...    last      <mask>
    spm id    (1)    -        (2)     0       3 ...          S - 1     -

A SentencePiece model of S pieces whose ids 0, 1, 2 are ``<unk>``, ``<s>``,
``</s>`` (XLM-R's ``sentencepiece.bpe.model``, S = 250,000) gives fairseq id
``spm_id + 1`` (``FAIRSEQ_OFFSET``) for every piece but ``<unk>``, which becomes 3;
``<mask>`` is ``S + 1`` and the vocabulary has ``V = S + 2`` rows (250,002). A text
becomes ``<s> pieces </s>`` (the ``<s>`` is the text [CLS]), padded with ``<pad>``.

The constants below are the one statement of these conventions: the offline
encoder ``data_prep/text/sentencepiece.py`` (sentencepiece's Python package) and
``SentencePieceTokenizer`` here (tensorflow-text) both use them, and a test checks
that the two give identical ids.

Reference: Conneau et al. 2020 (XLM-R), fairseq ``XLMRobertaTokenizer``
conventions; CommerceMM §3.1 ("XLM-R tokenization").
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from kaleido_tf.errors import DataError

# fairseq / XLM-R ids.
BOS_ID = 0  # <s>: the text [CLS]
PAD_ID = 1  # <pad>
EOS_ID = 2  # </s>: ends the text
UNK_ID = 3  # <unk>
FAIRSEQ_OFFSET = 1  # fairseq id = SentencePiece id + 1 (except <unk>)
# The SentencePiece model's own layout (pad disabled), as in XLM-R's file.
SPM_SPECIAL_PIECES = ("<unk>", "<s>", "</s>")
SPM_UNK_ID = 0


def xlmr_vocab_size(num_pieces: int) -> int:
    """V for a SentencePiece model of ``num_pieces`` pieces (250,000 -> 250,002)."""
    return num_pieces + FAIRSEQ_OFFSET + 1


def xlmr_mask_id(num_pieces: int) -> int:
    """The ``<mask>`` id: the last row, ``num_pieces + 1`` (250,001 for XLM-R)."""
    return num_pieces + FAIRSEQ_OFFSET


def read_model_proto(model: str | Path | bytes) -> bytes:
    """The serialized SentencePiece model, from a path or as given.

    Raises:
        DataError: The file cannot be read or is empty.
    """
    if isinstance(model, bytes):
        data = model
        where = "the given SentencePiece model"
    else:
        try:
            data = Path(model).read_bytes()
        except OSError as e:
            raise DataError(
                f"cannot read SentencePiece model {model}: {e}; give XLM-R's "
                "sentencepiece.bpe.model (or a model with the same special pieces)"
            ) from None
        where = str(model)
    if not data:
        raise DataError(f"{where} is empty: copy the SentencePiece model again")
    return data


def check_special_pieces(pieces: list[str], where: str) -> None:
    """Raises DataError unless pieces 0, 1, 2 are ``<unk>``, ``<s>``, ``</s>``."""
    if tuple(pieces[:3]) != SPM_SPECIAL_PIECES:
        raise DataError(
            f"{where} has pieces {pieces[:3]} at ids 0..2, XLM-R's layout is "
            f"{list(SPM_SPECIAL_PIECES)}: train it with unk_id=0, bos_id=1, "
            "eos_id=2, pad_id=-1 (data_prep.text.sentencepiece.train_sentencepiece)"
        )


class SentencePieceTokenizer(tf.Module):
    """XLM-R ids of raw texts inside the graph (tensorflow-text SentencePiece).

    The model's bytes become a constant of the graph, so a SavedModel that
    tracks this module carries the tokenizer.

    Args:
        model: Path to the SentencePiece model (XLM-R's
            ``sentencepiece.bpe.model``) or its serialized bytes.
        max_seq_length: T at most, including ``<s>`` and ``</s>``; longer texts
            lose their last pieces, as in ``data_prep/text/sentencepiece.py``.

    Attributes:
        num_pieces: S, the SentencePiece model's pieces.
        vocab_size: V = S + 2, the embedding rows the ids index.
        mask_id: ``<mask>`` = S + 1.

    Example:
        >>> tokenizer = SentencePieceTokenizer("sentencepiece.bpe.model", 128)
        >>> input_ids, input_mask = tokenizer.tokenize(tf.constant(["Robe rouge"]))

    Reference: CommerceMM §3.1; spec imagebert_interbert_commercemm.md §4.2.
    """

    def __init__(self, model: str | Path | bytes, max_seq_length: int) -> None:
        super().__init__(name="sentencepiece_tokenizer")
        import tensorflow_text as tf_text

        if max_seq_length < 2:
            raise ValueError(f"max_seq_length must be >= 2, got {max_seq_length}")
        proto = read_model_proto(model)
        where = "the given SentencePiece model" if isinstance(model, bytes) else model
        try:
            self._tokenizer = tf_text.SentencepieceTokenizer(
                model=proto, out_type=tf.int32
            )
            self.num_pieces = int(self._tokenizer.vocab_size().numpy())
            specials = self._tokenizer.id_to_string(tf.range(min(3, self.num_pieces)))
        except (tf.errors.OpError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise DataError(
                f"{where} is not a SentencePiece model ({first}): give XLM-R's "
                "sentencepiece.bpe.model"
            ) from None
        check_special_pieces([s.decode("utf-8") for s in specials.numpy()], str(where))
        self.max_seq_length = int(max_seq_length)
        self.vocab_size = xlmr_vocab_size(self.num_pieces)
        self.mask_id = xlmr_mask_id(self.num_pieces)

    def tokenize(self, texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """XLM-R ids of a batch of texts, padded to the batch's longest.

        Args:
            texts: string [B]. Raw UTF-8 texts (title and description).

        Returns:
            input_ids: int32 [B, T]. ``<s> pieces </s>`` then ``<pad>`` (id 1);
                T is the longest in the batch, at most ``max_seq_length``.
            input_mask: int32 [B, T]. 1 = real token, 0 = padding.
        """
        spm = self._tokenizer.tokenize(texts)  # [B, (pieces)] SentencePiece ids
        spm = spm[:, : self.max_seq_length - 2]
        ids = tf.ragged.map_flat_values(
            lambda x: tf.where(x == SPM_UNK_ID, UNK_ID, x + FAIRSEQ_OFFSET), spm
        )
        n = tf.shape(texts)[0]
        bos = tf.RaggedTensor.from_tensor(tf.fill([n, 1], BOS_ID))  # [B, 1]
        eos = tf.RaggedTensor.from_tensor(tf.fill([n, 1], EOS_ID))  # [B, 1]
        ids = tf.concat([bos, ids, eos], axis=1)  # [B, (T)]
        input_ids = ids.to_tensor(default_value=PAD_ID)  # [B, T]
        input_mask = tf.ones_like(ids).to_tensor(default_value=0)  # [B, T]
        return input_ids, input_mask
