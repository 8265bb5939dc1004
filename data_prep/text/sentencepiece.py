"""XLM-R SentencePiece encoding of product texts, offline (CommerceMM, spec §4.2).

``<s> pieces </s>`` padded with ``<pad>`` to T (``max_seq_length``), in XLM-R's
fairseq ids (``kaleido_tf/text/sentencepiece_tokenizer.py`` states them: ``<s>``
0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, SentencePiece id + 1 for every other
piece, ``<mask>`` last). Uses sentencepiece's Python package; the serving side
tokenises in the graph with tensorflow-text over the same model file, and a test
checks both give identical ids. ``train_sentencepiece`` learns a small model with
XLM-R's special-piece layout (demo and tests; real runs use XLM-R's
``sentencepiece.bpe.model``).

Reference: Conneau et al. 2020 (XLM-R); CommerceMM §3.1.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

import kaleido_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from kaleido_tf.errors import DataError
from kaleido_tf.text.sentencepiece_tokenizer import (
    BOS_ID,
    EOS_ID,
    FAIRSEQ_OFFSET,
    PAD_ID,
    SPM_UNK_ID,
    UNK_ID,
    check_special_pieces,
    read_model_proto,
    xlmr_mask_id,
    xlmr_vocab_size,
)


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError:
        raise DataError(
            "the sentencepiece package is not installed: pip install sentencepiece"
        ) from None
    return sentencepiece


def train_sentencepiece(
    texts: Iterable[str], vocab_size: int, model_type: str = "unigram"
) -> bytes:
    """Learns a SentencePiece model with XLM-R's special pieces (demo-only path).

    Pieces 0, 1, 2 are ``<unk>``, ``<s>``, ``</s>`` and there is no pad piece, as
    in XLM-R's ``sentencepiece.bpe.model``; the encoder's ids then follow
    XLM-R's fairseq layout.

    Args:
        texts: Training sentences.
        vocab_size: S, the pieces to learn (the model's V is S + 2).
        model_type: ``unigram`` (XLM-R's) or ``bpe``.

    Returns:
        The serialized model (write it to ``sentencepiece.bpe.model``).

    Raises:
        DataError: No texts, or SentencePiece cannot reach ``vocab_size``.
    """
    spm = _sentencepiece()
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise DataError("no non-empty texts to train a SentencePiece model on")
    writer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=writer,
            vocab_size=vocab_size,
            model_type=model_type,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            character_coverage=1.0,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise DataError(
            f"SentencePiece training failed ({e}): lower vocab_size or give more text"
        ) from None
    return writer.getvalue()


class SentencePieceEncoder:
    """Encodes texts to fixed-length XLM-R ids with sentencepiece's Python package.

    Args:
        model: Path to the SentencePiece model (XLM-R's
            ``sentencepiece.bpe.model``) or its serialized bytes.
        max_seq_length: T, including ``<s>`` and ``</s>``; longer texts keep
            their first T - 2 pieces.

    Attributes:
        num_pieces: S, the SentencePiece model's pieces.
        vocab_size: V = S + 2 (250,002 for XLM-R).
        mask_id: ``<mask>`` = S + 1 (250,001 for XLM-R).

    Example:
        >>> encoder = SentencePieceEncoder("sentencepiece.bpe.model", 128)
        >>> input_ids, input_mask, truncated = encoder.encode(["Robe rouge"])
    """

    def __init__(self, model: str | Path | bytes, max_seq_length: int) -> None:
        spm = _sentencepiece()
        if max_seq_length < 2:
            raise ValueError(f"max_seq_length must be >= 2, got {max_seq_length}")
        proto = read_model_proto(model)
        where = "the given SentencePiece model" if isinstance(model, bytes) else model
        self._processor = spm.SentencePieceProcessor()
        try:
            self._processor.LoadFromSerializedProto(proto)
        except (RuntimeError, OSError) as e:
            raise DataError(
                f"{where} is not a SentencePiece model ({e}): give XLM-R's "
                "sentencepiece.bpe.model"
            ) from None
        self.num_pieces = self._processor.get_piece_size()
        pieces = [
            self._processor.id_to_piece(i) for i in range(min(3, self.num_pieces))
        ]
        check_special_pieces(pieces, str(where))
        self.max_seq_length = int(max_seq_length)
        self.vocab_size = xlmr_vocab_size(self.num_pieces)
        self.mask_id = xlmr_mask_id(self.num_pieces)

    def pieces(self, text: str) -> list[str]:
        """The SentencePiece pieces of one text (``▁`` starts a word)."""
        return self._processor.encode(text, out_type=str)

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
        """Encodes a batch of texts.

        Args:
            texts: Raw texts; an empty string gives ``<s> </s>``.

        Returns:
            input_ids: int32 [n, T]. ``<s> pieces </s>`` then ``<pad>`` (id 1).
            input_mask: int32 [n, T]. 1 = real token, 0 = padding.
            truncated: How many texts were cut to fit T.
        """
        n, t = len(texts), self.max_seq_length
        input_ids = np.full((n, t), PAD_ID, np.int32)
        input_mask = np.zeros((n, t), np.int32)
        truncated = 0
        encoded = self._processor.encode(list(texts), out_type=int) if n else []
        for i, spm_ids in enumerate(encoded):
            if len(spm_ids) > t - 2:
                truncated += 1
                spm_ids = spm_ids[: t - 2]
            spm_ids = np.asarray(spm_ids, np.int32)
            ids = np.where(spm_ids == SPM_UNK_ID, UNK_ID, spm_ids + FAIRSEQ_OFFSET)
            k = len(ids)
            input_ids[i, 0] = BOS_ID
            input_ids[i, 1 : k + 1] = ids
            input_ids[i, k + 1] = EOS_ID
            input_mask[i, : k + 2] = 1
        return input_ids, input_mask, truncated
