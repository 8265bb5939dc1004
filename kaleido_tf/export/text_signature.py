"""The vocabulary as a SavedModel asset, and WordPiece tokenisation inside the graph.

A client of the text-in signature sends a product description as a string; the
SavedModel turns it into ``[CLS] pieces [SEP]`` ids with tensorflow-text's
``BertTokenizer`` over the exported ``vocab.txt``, lower-cased and truncated as the
prepared data was (``data_prep/text/wordpiece.py`` uses the same tokenizer class and
settings, so the ids agree).
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import tensorflow_text as tf_text

from kaleido_tf import constants
from kaleido_tf.errors import DataError


def read_vocab_tokens(path: str | Path) -> list[str]:
    """Reads ``vocab.txt`` as the in-graph table will (one token per whole line).

    Args:
        path: A BERT-style vocabulary file.

    Returns:
        The tokens in id order.

    Raises:
        DataError: Unreadable file, missing special tokens, duplicates, or lines
            with surrounding white space (the table would keep it and disagree with
            the data preparation, which strips it).
    """
    path = Path(path)
    try:
        # Bytes, not text mode: "\r" must stay visible, as the table would see it.
        tokens = path.read_bytes().decode("utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read vocabulary {path}: {e}") from None
    if tokens and tokens[-1] == "":
        tokens.pop()  # the final newline
    padded = [i for i, t in enumerate(tokens) if t != t.strip()]
    if padded:
        raise DataError(
            f"vocabulary {path} line {padded[0] + 1} has surrounding white space "
            "(or Windows line ends): rewrite it with one bare token per line"
        )
    missing = [t for t in constants.SPECIAL_TOKENS if t not in tokens]
    if missing:
        raise DataError(
            f"vocabulary {path} lacks the special tokens {missing}; a BERT "
            "vocab.txt has [PAD], [UNK], [CLS], [SEP] and [MASK]"
        )
    if len(set(tokens)) != len(tokens):
        raise DataError(f"vocabulary {path} has duplicate tokens")
    return tokens


class ServingVocabulary(tf.Module):
    """``vocab.txt`` as an asset of the SavedModel, and the tokenizer over it.

    Args:
        vocab_path: The vocabulary the model was trained with (the prepared
            folder's ``vocab.txt``).
        lower_case: Lower-case and strip accents first (the manifest's
            ``text.lower_case``).
        max_seq_length: T at most, including [CLS] and [SEP]; longer texts lose
            their last pieces, as in the prepared data.

    Example:
        >>> vocabulary = ServingVocabulary("prepared/train/vocab.txt", True, 64)
        >>> input_ids, input_mask = vocabulary.tokenize(tf.constant(["Red scarf"]))
    """

    def __init__(
        self, vocab_path: str | Path, lower_case: bool, max_seq_length: int
    ) -> None:
        super().__init__(name="vocabulary")
        if max_seq_length < 3:
            raise ValueError(f"max_seq_length must be >= 3, got {max_seq_length}")
        tokens = read_vocab_tokens(vocab_path)
        self.vocab_size = len(tokens)
        self.lower_case = bool(lower_case)
        self.max_seq_length = int(max_seq_length)
        self.pad_id = tokens.index(constants.PAD_TOKEN)
        self.cls_id = tokens.index(constants.CLS_TOKEN)
        self.sep_id = tokens.index(constants.SEP_TOKEN)
        self.vocab_file = tf.saved_model.Asset(str(vocab_path))
        initializer = tf.lookup.TextFileInitializer(
            self.vocab_file,
            key_dtype=tf.string,
            key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            value_dtype=tf.int64,
            value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
        )
        # As data_prep's WordPieceEncoder: one out-of-vocabulary bucket, which the
        # tokenizer never uses (unknown words become [UNK]).
        self.table = tf.lookup.StaticVocabularyTable(initializer, num_oov_buckets=1)
        self.tokenizer = tf_text.BertTokenizer(
            self.table,
            token_out_type=tf.int64,
            lower_case=self.lower_case,
            unknown_token=constants.UNK_TOKEN,
        )

    def tokenize(self, texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """WordPiece ids of a batch of texts, padded to the batch's longest.

        Args:
            texts: string [B]. Raw descriptions (UTF-8).

        Returns:
            input_ids: int32 [B, T]. ``[CLS] pieces [SEP]`` then [PAD]; T is the
                longest in the batch, at most ``max_seq_length``.
            input_mask: int32 [B, T]. 1 = real token, 0 = padding.
        """
        pieces = self.tokenizer.tokenize(texts).merge_dims(-2, -1)  # [B, (pieces)]
        pieces = tf.cast(pieces[:, : self.max_seq_length - 2], tf.int32)
        n = tf.shape(texts)[0]
        cls = tf.RaggedTensor.from_tensor(tf.fill([n, 1], self.cls_id))  # [B, 1]
        sep = tf.RaggedTensor.from_tensor(tf.fill([n, 1], self.sep_id))  # [B, 1]
        ids = tf.concat([cls, pieces, sep], axis=1)  # [B, (T)]
        input_ids = ids.to_tensor(default_value=self.pad_id)  # [B, T]
        input_mask = tf.ones_like(ids).to_tensor(default_value=0)  # [B, T]
        return input_ids, input_mask
