"""ITM negatives drawn online from the same sub-category (FashionBERT's protocol).

Reference: kaleido_fashionbert.md §2.1 ("for one product, we randomly select one
product under its sub-category as one negative product pair"), F-Q9 and K-Q26:
one negative per positive (1:1), redrawn every epoch.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kaleido_tf.errors import DataError
from kaleido_tf.inputs.product_table import ProductTable

# Where a product's negatives come from, in fallback order.
SOURCES = ("subcategory", "category", "any")


def _groups(keys: list[tuple[str, ...]]) -> tuple[np.ndarray, ...]:
    """Groups products by key.

    Returns:
        members: int32 [N]. Product indices sorted by group (stable).
        start: int32 [N]. Offset in ``members`` of each product's group.
        size: int32 [N]. Size of each product's group.
        rank: int32 [N]. Position of each product inside its group.
    """
    _, group = np.unique(
        np.asarray(["\x1f".join(k) for k in keys]), return_inverse=True
    )
    members = np.argsort(group, kind="stable").astype(np.int32)
    counts = np.bincount(group)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(keys), np.int32)
    rank[members] = np.arange(len(keys)) - offsets[group[members]]
    return (
        members,
        offsets[group].astype(np.int32),
        counts[group].astype(np.int32),
        rank,
    )


class NegativeSampler:
    """Draws, for a product, another product of the same sub-category.

    A product's candidates are the *other* products of its (category,
    sub-category); if it is alone there, the other products of its category;
    if alone there too, every other product. The choice is uniform over the
    candidates. Which of the three a product falls back to depends only on the
    table, so the fallbacks are counted once, here (``fallback_counts``).

    Args:
        table: The product table of the split.

    Raises:
        DataError: Fewer than 2 products (no negative exists).

    Example:
        >>> sampler = NegativeSampler(ProductTable.load("prepared/train"))
        >>> neg = sampler.sample(index, tf.random.stateless_uniform([], seed))

    Deviation: products are grouped by the (category, sub-category) pair rather than
    the sub-category name alone, so that equal sub-category names under two
    categories never mix; in Fashion-Gen the two are the same grouping.
    """

    def __init__(self, table: ProductTable) -> None:
        n = table.num_products
        if n < 2:
            raise DataError(
                f"ITM negatives need at least 2 products, the table has {n}"
            )
        self.table = table
        sub = _groups(list(zip(table.category, table.subcategory)))
        cat = _groups([(c,) for c in table.category])
        whole = (
            np.arange(n, dtype=np.int32),
            np.zeros(n, np.int32),
            np.full(n, n, np.int32),
            np.arange(n, dtype=np.int32),
        )
        # source[k]: 0 sub-category, 1 category, 2 any (the first with a candidate).
        source = np.where(sub[2] > 1, 0, np.where(cat[2] > 1, 1, 2)).astype(np.int32)
        self.source = source
        members = np.concatenate([sub[0], cat[0], whole[0]])
        pick = [np.choose(source, [g[i] for g in (sub, cat, whole)]) for i in (1, 2, 3)]
        start = pick[0] + source * n
        self._members = tf.constant(members, tf.int32)
        self._start = tf.constant(start.astype(np.int32))
        self._count = tf.constant((pick[1] - 1).astype(np.int32))
        self._rank = tf.constant(pick[2].astype(np.int32))

    @property
    def fallback_counts(self) -> dict[str, dict[str, int]]:
        """How many products and image records draw negatives from each source.

        Returns:
            ``{"products": {"subcategory": n0, "category": n1, "any": n2},
            "images": {...}}``; images are weighted by ``num_images``.
        """
        counts = np.bincount(self.source, minlength=3)
        images = np.bincount(
            self.source, weights=self.table.num_images, minlength=3
        ).astype(int)
        return {
            "products": {s: int(c) for s, c in zip(SOURCES, counts)},
            "images": {s: int(c) for s, c in zip(SOURCES, images)},
        }

    def sample(self, product_index: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
        """Maps uniform draws to negative products (vectorised, any shape).

        Args:
            product_index: int32 [...]. Dense index of the positive's product.
            uniform: float32 [...]. Draws in [0, 1), e.g. from
                ``tf.random.stateless_uniform`` seeded per example.

        Returns:
            int32 [...]. Dense index of the negative product; never
            ``product_index`` itself.
        """
        count = tf.gather(self._count, product_index)
        rank = tf.gather(self._rank, product_index)
        r = tf.cast(tf.floor(uniform * tf.cast(count, tf.float32)), tf.int32)
        r = tf.minimum(r, count - 1)
        r = r + tf.cast(r >= rank, tf.int32)  # skip the product itself
        return tf.gather(self._members, tf.gather(self._start, product_index) + r)
