"""ITM negatives with 20 % TF-IDF hard negatives (InterBERT ITM-hn)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from data_prep.hard_negatives.tfidf_miner import HardNegatives
from kaleido_tf import constants
from kaleido_tf.errors import ConfigError, DataError
from kaleido_tf.inputs.hard_negative_sampler import HardNegativeSampler
from kaleido_tf.inputs.negatives import NegativeSampler
from kaleido_tf.inputs.product_table import ProductTable

VOCAB = list(constants.SPECIAL_TOKENS) + ["red", "wool", "bag"]
# (category, sub-category, images)
PRODUCTS = [
    ("TOPS", "SWEATERS", 3),
    ("TOPS", "SWEATERS", 1),
    ("TOPS", "SWEATERS", 2),
    ("TOPS", "SHIRTS", 2),
    ("BAGS", "TOTES", 1),
    ("BAGS", "TOTES", 4),
]
# Row i: product i's pool (dense indices), -1 padded; product 1 has none.
POOL = np.asarray(
    [[2, 3, 5], [-1, -1, -1], [0, -1, -1], [4, 0, 1], [3, 2, -1], [0, -1, -1]],
    np.int32,
)
POOL_SIZE = np.asarray([3, 0, 1, 3, 2, 1], np.int32)


def _table() -> ProductTable:
    ids = {t: i for i, t in enumerate(VOCAB)}
    rows = [
        {
            "product_id": 500 + 3 * k,
            "category": c,
            "subcategory": s,
            "num_images": n,
            "input_ids": [ids["[CLS]"], ids["red"], ids["wool"], ids["[SEP]"]],
        }
        for k, (c, s, n) in enumerate(PRODUCTS)
    ]
    return ProductTable.from_rows(rows, VOCAB, 6)


def _pools(table: ProductTable, pool=POOL, size=POOL_SIZE) -> HardNegatives:
    return HardNegatives(
        product_ids=table.product_ids,
        pool=pool,
        similarity=np.zeros(pool.shape, np.float32),
        pool_size=size,
        header={"top_k": pool.shape[1], "max_similarity": 0.5},
    )


def test_grid_draws_hard_share_pool_uniformity_and_base_path():
    table = _table()
    sampler = HardNegativeSampler(table, _pools(table), hard_fraction=0.2)
    base = NegativeSampler(table)
    n, draws = table.num_products, 600
    u = ((np.arange(draws) + 0.5) / draws).astype(np.float32)  # even grid
    index = np.repeat(np.arange(n), draws).astype(np.int32)
    uu = np.tile(u, n)
    neg, hard = sampler.sample_with_source(tf.constant(index), tf.constant(uu))
    neg, hard = neg.numpy(), hard.numpy()
    # Hard exactly where u < 0.2 and the product has a pool.
    np.testing.assert_array_equal(hard, (uu < np.float32(0.2)) & (POOL_SIZE[index] > 0))
    assert (neg != index).all()
    for k in range(n):
        got = neg[index == k][hard[index == k]]
        pool = POOL[k, : POOL_SIZE[k]]
        assert set(got) <= set(pool)
        if len(pool):  # uniform over the pool: equal counts on an even grid
            counts = np.asarray([(got == j).sum() for j in pool])
            assert counts.sum() == 0.2 * draws and counts.max() - counts.min() <= 1
    # Every other draw is the ordinary sampler's, at the rescaled uniform.
    p = np.float32(0.2)
    rescaled = np.where(uu < p, uu / p, (uu - p) / (np.float32(1) - p))
    expected = base.sample(tf.constant(index), tf.constant(rescaled.astype(np.float32)))
    np.testing.assert_array_equal(neg[~hard], expected.numpy()[~hard])


def test_random_draws_match_expected_hard_fraction_inside_tf_data():
    table = _table()
    sampler = HardNegativeSampler(table, _pools(table))
    # One record per image, as the pipeline draws (product 1: 1 of 13 images).
    share = 1 - 1 / table.num_images.sum()
    assert sampler.expected_hard_fraction == pytest.approx(0.2 * share)
    records = np.repeat(np.arange(table.num_products), table.num_images)
    m = 40_000
    index = np.resize(records, m).astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices(index).batch(1000).enumerate()

    def draw(i, k):  # a map over batches of records, as in the pipeline
        seed = tf.stack([i, tf.constant(7, tf.int64)])
        u = tf.random.stateless_uniform(tf.shape(k), seed)
        neg, hard = sampler.sample_with_source(k, u)
        return k, neg, hard

    got = list(ds.map(draw).unbatch().batch(m))[0]
    k, neg, hard = (t.numpy() for t in got)
    assert (neg != k).all()
    # The product per record repeats the image distribution; the hard share is
    # binomial around 0.2 * share (4 standard deviations).
    expected = 0.2 * share
    sigma = np.sqrt(expected * (1 - expected) / m)
    assert abs(hard.mean() - expected) < 4 * sigma
    assert not hard[k == 1].any()
    for j in range(table.num_products):
        assert set(neg[(k == j) & hard]) <= set(POOL[j, : POOL_SIZE[j]])


def test_extreme_fractions_and_bad_pools():
    table = _table()
    index = tf.constant(np.arange(6, dtype=np.int32))
    u = tf.constant(np.full(6, 0.7, np.float32))
    all_hard = HardNegativeSampler(table, _pools(table), hard_fraction=1.0)
    assert all_hard.sample_with_source(index, u)[1].numpy().tolist() == [
        True, False, True, True, True, True
    ]  # fmt: skip
    none_hard = HardNegativeSampler(table, _pools(table), hard_fraction=0.0)
    assert not none_hard.sample_with_source(index, tf.zeros([6]))[1].numpy().any()
    with pytest.raises(ConfigError, match="hard_fraction"):
        HardNegativeSampler(table, _pools(table), hard_fraction=1.5)
    other = _pools(table)
    other = HardNegatives(
        other.product_ids[::-1], POOL, other.similarity, POOL_SIZE, other.header
    )
    with pytest.raises(DataError, match="other products"):
        HardNegativeSampler(table, other)
    own = POOL.copy()
    own[2, 0] = 2
    with pytest.raises(DataError, match="itself"):
        HardNegativeSampler(table, _pools(table, pool=own))
