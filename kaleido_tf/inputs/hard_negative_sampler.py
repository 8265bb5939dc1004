"""ITM negatives with a share of TF-IDF hard negatives (InterBERT's ITM-hn).

A negative is drawn from the positive product's hard pool (the mined TF-IDF
neighbours below similarity 0.5, ``data_prep/hard_negatives/tfidf_miner.py``)
with probability ``hard_fraction`` (0.2), otherwise by the ordinary
``NegativeSampler``. Pools are per product: every image of a product shares its
caption, hence its pool. Positives and negatives stay 1:1 (50 % / 50 %), which the
pipeline's one-negative-per-record layout already gives.

Reference: InterBERT §3.3 ("20 % of negatives use these hard captions; 80 % use
random captions", 50 % positives); spec imagebert_interbert_commercemm.md §3.4.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import tensorflow as tf

from kaleido_tf.errors import ConfigError, DataError
from kaleido_tf.inputs.negatives import NegativeSampler
from kaleido_tf.inputs.product_table import ProductTable

# InterBERT §3.3: 20 % of the negatives are hard (a higher share kept the
# pre-training loss from converging, its footnote 2).
HARD_FRACTION = 0.2


class HardNegativePools(Protocol):
    """What the sampler reads of ``data_prep``'s ``HardNegatives``
    (``load_hard_negatives(data_dir)``)."""

    product_ids: np.ndarray  # int64 [N], products.jsonl order
    pool: np.ndarray  # int32 [N, k], dense product indices, -1 padded
    pool_size: np.ndarray  # int32 [N], valid entries per row


class HardNegativeSampler:
    """Draws a negative product: from the hard pool with ``hard_fraction``, else
    from ``NegativeSampler``.

    One uniform draw u per negative decides both: u < ``hard_fraction`` picks the
    hard pool, and the rescaled draw ``u / hard_fraction`` picks the pool entry
    (uniformly); otherwise ``(u - hard_fraction) / (1 - hard_fraction)`` goes to
    the ordinary sampler. A product with an empty pool always uses the ordinary
    sampler (with the rescaled draw), so the realised hard share is
    ``hard_fraction`` times the share of products with a pool
    (``expected_hard_fraction``). Pure TF ops: usable inside ``tf.data`` maps in
    place of ``NegativeSampler.sample``.

    Args:
        table: The product table of the split.
        pools: Its mined pools (``load_hard_negatives(data_dir)``), rows in
            ``products.jsonl`` order.
        hard_fraction: Probability that a negative is hard (0.2).
        base: The ordinary sampler (default: ``NegativeSampler(table)``).

    Raises:
        ConfigError: ``hard_fraction`` outside [0, 1].
        DataError: The pools were mined for other products, or hold an index
            outside the table or the product itself.

    Example:
        >>> pools = load_hard_negatives("prepared/train")
        >>> sampler = HardNegativeSampler(ProductTable.load("prepared/train"), pools)
        >>> neg = sampler.sample(index, tf.random.stateless_uniform([], seed))

    Reference: InterBERT §3.3 (ITM with hard negatives).
    """

    def __init__(
        self,
        table: ProductTable,
        pools: HardNegativePools,
        hard_fraction: float = HARD_FRACTION,
        base: NegativeSampler | None = None,
    ) -> None:
        if not 0.0 <= hard_fraction <= 1.0:
            raise ConfigError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
        n = table.num_products
        product_ids = np.asarray(pools.product_ids)
        pool = np.asarray(pools.pool)
        size = np.asarray(pools.pool_size)
        redo = "rerun `kaleido-tf mine-negatives --overwrite`"
        if product_ids.shape != (n,) or (product_ids != table.product_ids).any():
            raise DataError(
                f"the hard-negative pools list other products than products.jsonl "
                f"({len(product_ids)} vs {n}): {redo}"
            )
        k = pool.shape[1] if pool.ndim == 2 else -1
        if pool.shape != (n, k) or size.shape != (n,) or (size < 0).any():
            raise DataError(f"hard-negative pools of shape {pool.shape}: {redo}")
        if (size > k).any():
            raise DataError(f"hard-negative pool sizes exceed k={k}: {redo}")
        valid = np.arange(k)[None, :] < size[:, None]
        if ((pool < 0) | (pool >= n) | (pool == np.arange(n)[:, None]))[valid].any():
            raise DataError(
                f"a hard-negative pool holds an unknown product or the product "
                f"itself: {redo}"
            )
        self.table = table
        self.hard_fraction = float(hard_fraction)
        self.base = base if base is not None else NegativeSampler(table)
        self.top_k = k
        self.pool_size = size.astype(np.int32)
        self._pool = tf.constant(np.where(valid, pool, 0).reshape(-1), tf.int32)
        self._size = tf.constant(self.pool_size)

    @property
    def expected_hard_fraction(self) -> float:
        """Share of negatives that are hard, over image records (a product's
        records weigh ``num_images``): ``hard_fraction`` x the share of records
        whose product has a non-empty pool."""
        weights = self.table.num_images.astype(np.float64)
        with_pool = float(weights[self.pool_size > 0].sum() / weights.sum())
        return self.hard_fraction * with_pool

    def sample_with_source(
        self, product_index: tf.Tensor, uniform: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Maps uniform draws to negative products and says which are hard.

        Args:
            product_index: int32 [...]. Dense index of the positive's product.
            uniform: float32 [...]. Draws in [0, 1), e.g. from
                ``tf.random.stateless_uniform`` seeded per example.

        Returns:
            negative: int32 [...]. Dense index of the negative product; never
                ``product_index`` itself.
            hard: bool [...]. True where the negative came from the hard pool.
        """
        product_index = tf.convert_to_tensor(product_index, tf.int32)
        uniform = tf.convert_to_tensor(uniform, tf.float32)
        p = tf.constant(self.hard_fraction, tf.float32)
        size = tf.gather(self._size, product_index)
        in_hard_range = uniform < p
        hard = in_hard_range & (size > 0)
        # The draw rescaled to [0, 1) within its branch.
        rescaled = tf.where(
            in_hard_range,
            tf.math.divide_no_nan(uniform, p),
            tf.math.divide_no_nan(uniform - p, 1.0 - p),
        )
        r = tf.cast(tf.floor(rescaled * tf.cast(size, tf.float32)), tf.int32)
        r = tf.clip_by_value(r, 0, tf.maximum(size - 1, 0))
        from_pool = tf.gather(self._pool, product_index * self.top_k + r)
        from_base = self.base.sample(product_index, rescaled)
        return tf.where(hard, from_pool, from_base), hard

    def sample(self, product_index: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
        """Like ``NegativeSampler.sample``: int32 negatives for int32
        ``product_index`` and float32 ``uniform`` in [0, 1), any shape."""
        return self.sample_with_source(product_index, uniform)[0]
