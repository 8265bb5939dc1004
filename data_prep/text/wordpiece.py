"""BERT WordPiece encoding of product texts with tensorflow-text (§2.2).

``[CLS] t1 ... tn [SEP]`` padded with [PAD] to T (``max_seq_length``), lower-cased for
bert-base-uncased. Each token also records the index of the word it came from (BERT's
basic tokenisation: whitespace and punctuation split), which whole-word masking and
the token-patch alignment pairs use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

import kaleido_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from kaleido_tf import constants
from kaleido_tf.errors import DataError


def read_vocab(path: str | Path) -> list[str]:
    """Reads a ``vocab.txt`` (one token per line) and checks the special tokens."""
    path = Path(path)
    try:
        tokens = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read vocabulary {path}: {e}") from None
    tokens = [t.strip() for t in tokens]
    missing = [t for t in constants.SPECIAL_TOKENS if t not in tokens]
    if missing:
        raise DataError(
            f"vocabulary {path} lacks the special tokens {missing}; a BERT vocab.txt "
            "has [PAD], [UNK], [CLS], [SEP] and [MASK]"
        )
    if len(set(tokens)) != len(tokens):
        raise DataError(f"vocabulary {path} has duplicate tokens")
    return tokens


def learn_vocab(
    texts: Sequence[str], vocab_size: int, lower_case: bool = True
) -> list[str]:
    """Learns a WordPiece vocabulary from texts (demo-only path).

    Uses tensorflow-text's ``bert_vocab_from_dataset``; special tokens come first,
    with [PAD] at id 0 as in Google's vocabularies.
    """
    import tensorflow as tf
    from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as bv

    dataset = tf.data.Dataset.from_tensor_slices(list(texts)).batch(256)
    return bv.bert_vocab_from_dataset(
        dataset,
        vocab_size=vocab_size,
        reserved_tokens=list(constants.SPECIAL_TOKENS),
        bert_tokenizer_params={"lower_case": lower_case},
        # Words seen at least twice may become whole-word tokens (the library's
        # default of 10 suits corpora far larger than the demo's).
        learn_params={"lower_thresh": 2},
    )


class WordPieceEncoder:
    """Encodes texts to fixed-length WordPiece ids.

    Args:
        vocab: Tokens in id order (``read_vocab`` or ``learn_vocab``).
        max_seq_length: T, including [CLS] and [SEP]; longer texts are truncated.
        lower_case: Lower-case and strip accents first (bert-base-uncased).

    Example:
        >>> encoder = WordPieceEncoder(read_vocab("vocab.txt"), 64)
        >>> ids, word_index, truncated = encoder.encode(["Red wool sweater."])
    """

    def __init__(
        self, vocab: Sequence[str], max_seq_length: int, lower_case: bool = True
    ) -> None:
        import tensorflow as tf
        import tensorflow_text as tf_text

        self.vocab = list(vocab)
        self.max_seq_length = max_seq_length
        self.lower_case = lower_case
        ids = {t: i for i, t in enumerate(self.vocab)}
        self.pad_id = ids[constants.PAD_TOKEN]
        self.cls_id = ids[constants.CLS_TOKEN]
        self.sep_id = ids[constants.SEP_TOKEN]
        table = tf.lookup.StaticVocabularyTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.vocab),
                tf.range(len(self.vocab), dtype=tf.int64),
            ),
            num_oov_buckets=1,
        )
        self._tokenizer = tf_text.BertTokenizer(
            table,
            token_out_type=tf.int64,
            lower_case=lower_case,
            unknown_token=constants.UNK_TOKEN,
        )

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
        """Encodes a batch of texts.

        Returns:
            input_ids: int64 [n, T]; [CLS] text [SEP], then [PAD].
            word_index: int64 [n, T]; the word each token came from, -1 for
                [CLS], [SEP] and padding.
            truncated: How many texts were cut to fit T.
        """
        n, t = len(texts), self.max_seq_length
        input_ids = np.full((n, t), self.pad_id, np.int64)
        word_index = np.full((n, t), -1, np.int64)
        truncated = 0
        if n == 0:
            return input_ids, word_index, truncated
        ragged = self._tokenizer.tokenize(list(texts))  # [n, words, pieces]
        pieces = ragged.flat_values.numpy()
        word_starts = ragged.values.row_splits.numpy()  # piece offsets per word
        text_starts = ragged.row_splits.numpy()  # word offsets per text
        for i in range(n):
            w0, w1 = text_starts[i], text_starts[i + 1]
            p0, p1 = word_starts[w0], word_starts[w1]
            ids = pieces[p0:p1]
            words = np.repeat(np.arange(w1 - w0), np.diff(word_starts[w0 : w1 + 1]))
            if len(ids) > t - 2:
                truncated += 1
                ids, words = ids[: t - 2], words[: t - 2]
            k = len(ids)
            input_ids[i, 0] = self.cls_id
            input_ids[i, 1 : k + 1] = ids
            input_ids[i, k + 1] = self.sep_id
            word_index[i, 1 : k + 1] = words
        return input_ids, word_index, truncated
