"""The product table of a prepared folder: every product's text and categories.

``kaleido-tf prepare`` writes ``products.jsonl`` (one product per line) beside the
image shards (DESIGN.md §2). The online pipeline loads it into memory so that ITM
negatives (``negatives.py``) can take the text of *another* product, drawn afresh
every epoch, instead of freezing negative pairs into files.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from kaleido_tf import constants
from kaleido_tf.errors import DataError
from kaleido_tf.manifest import read_manifest


@dataclasses.dataclass(frozen=True, eq=False)
class ProductTable:
    """Products of one prepared split, indexed densely 0..N-1 in file order.

    ``products.jsonl`` stores the unpadded WordPiece ids of each text but not the
    word of each token, so ``word_index`` is recomputed from the vocabulary: a token
    starts a new word unless it is a ``##`` continuation piece. This is exactly how
    BERT's WordPiece tokeniser splits words (``data_prep/text/wordpiece.py``), so it
    equals the ``word_index`` stored in the image records (a test checks it).

    Attributes:
        product_ids: int64 [N]. Fashion-Gen ``input_productID`` of each product.
        input_ids: int32 [N, T]. ``[CLS] text [SEP]`` then ``pad_id``.
        word_index: int32 [N, T]. Word (0-based) of each text token; -1 for
            [CLS], [SEP] and padding.
        category: Category name of each product.
        subcategory: Sub-category name of each product.
        num_images: int32 [N]. Image records of each product.
        vocab: Tokens in id order (``vocab.txt``).
        pad_id: Id of [PAD].
        cls_id: Id of [CLS].
        sep_id: Id of [SEP].
        mask_id: Id of [MASK].
        random_token_ids: int32 [V']. Ids a masked token may be replaced with
            (every id except the special tokens).
    """

    product_ids: np.ndarray
    input_ids: np.ndarray
    word_index: np.ndarray
    category: tuple[str, ...]
    subcategory: tuple[str, ...]
    num_images: np.ndarray
    vocab: tuple[str, ...]
    pad_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    random_token_ids: np.ndarray

    @property
    def num_products(self) -> int:
        """N, the number of products."""
        return len(self.product_ids)

    @property
    def max_seq_length(self) -> int:
        """T, the padded text length including [CLS] and [SEP]."""
        return self.input_ids.shape[1]

    @property
    def vocab_size(self) -> int:
        """V, the vocabulary size."""
        return len(self.vocab)

    @classmethod
    def load(
        cls, data_dir: str | Path, manifest: dict[str, Any] | None = None
    ) -> ProductTable:
        """Loads ``products.jsonl`` and ``vocab.txt`` of a prepared folder.

        Args:
            data_dir: A ``kaleido-tf prepare`` output folder.
            manifest: Its manifest if already read (``read_manifest``).

        Raises:
            DataError: A missing or malformed file, or a text that is not
                ``[CLS] ... [SEP]`` within T tokens.
        """
        data_dir = Path(data_dir)
        manifest = manifest if manifest is not None else read_manifest(data_dir)
        vocab_path = data_dir / manifest.get("vocab_file", "vocab.txt")
        products_path = data_dir / manifest.get("products_file", "products.jsonl")
        try:
            vocab = [t.strip() for t in vocab_path.read_text("utf-8").splitlines()]
            lines = products_path.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(
                f"{data_dir}: cannot read the product table ({e}): rerun "
                "`kaleido-tf prepare`"
            ) from None
        try:
            rows = [json.loads(line) for line in lines if line.strip()]
        except json.JSONDecodeError as e:
            raise DataError(f"{products_path} is not valid JSON lines ({e})") from None
        return cls.from_rows(rows, vocab, int(manifest["max_seq_length"]))

    @classmethod
    def from_rows(
        cls, rows: list[dict[str, Any]], vocab: list[str], max_seq_length: int
    ) -> ProductTable:
        """Builds the table from ``products.jsonl`` rows (see ``load``).

        Args:
            rows: Dicts with product_id, category, subcategory, num_images and
                input_ids (unpadded, with [CLS] and [SEP]).
            vocab: Tokens in id order.
            max_seq_length: T.

        Raises:
            DataError: Missing special tokens, duplicate products, or a bad text.
        """
        ids = {t: i for i, t in enumerate(vocab)}
        missing = [t for t in constants.SPECIAL_TOKENS if t not in ids]
        if missing:
            raise DataError(f"vocab.txt lacks the special tokens {missing}")
        if not rows:
            raise DataError("products.jsonl holds no products")
        n, t = len(rows), max_seq_length
        pad_id, cls_id, sep_id = (
            ids[constants.PAD_TOKEN],
            ids[constants.CLS_TOKEN],
            ids[constants.SEP_TOKEN],
        )
        input_ids = np.full((n, t), pad_id, np.int32)
        lengths = np.zeros(n, np.int64)
        for i, row in enumerate(rows):
            tokens = row["input_ids"]
            if (
                len(tokens) < 2
                or len(tokens) > t
                or tokens[0] != cls_id
                or tokens[-1] != sep_id
            ):
                raise DataError(
                    f"products.jsonl: product {row.get('product_id')} has input_ids "
                    f"that are not [CLS] ... [SEP] within {t} tokens"
                )
            input_ids[i, : len(tokens)] = tokens
            lengths[i] = len(tokens)
        if input_ids.max() >= len(vocab) or input_ids.min() < 0:
            raise DataError("products.jsonl has token ids outside vocab.txt")
        product_ids = np.asarray([int(r["product_id"]) for r in rows], np.int64)
        if len(np.unique(product_ids)) != n:
            raise DataError("products.jsonl lists a product_id twice")
        # A word starts at every real token that is not a "##" continuation piece.
        continuation = np.asarray([tok.startswith("##") for tok in vocab], bool)
        pos = np.arange(t)[None, :]
        real = (pos >= 1) & (pos < (lengths - 1)[:, None])
        starts = real & (~continuation[input_ids] | (pos == 1))
        word_index = np.where(real, np.cumsum(starts, axis=1) - 1, -1).astype(np.int32)
        special = np.asarray([ids[s] for s in constants.SPECIAL_TOKENS])
        random_ids = np.setdiff1d(np.arange(len(vocab)), special).astype(np.int32)
        return cls(
            product_ids=product_ids,
            input_ids=input_ids,
            word_index=word_index,
            category=tuple(str(r["category"]) for r in rows),
            subcategory=tuple(str(r["subcategory"]) for r in rows),
            num_images=np.asarray([int(r["num_images"]) for r in rows], np.int32),
            vocab=tuple(vocab),
            pad_id=pad_id,
            cls_id=cls_id,
            sep_id=sep_id,
            mask_id=ids[constants.MASK_TOKEN],
            random_token_ids=random_ids,
        )

    def index_lookup(self) -> tf.lookup.StaticHashTable:
        """A table mapping ``product_id`` (int64) to the dense index (int32, -1 if
        unknown), usable inside ``tf.data`` map functions."""
        return tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.product_ids, tf.int64),
                tf.range(self.num_products, dtype=tf.int32),
            ),
            default_value=-1,
        )
