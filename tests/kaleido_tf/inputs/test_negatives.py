"""The product table and same-sub-category ITM negatives."""

import json

import numpy as np
import pytest
import tensorflow as tf

from kaleido_tf.errors import DataError
from kaleido_tf.inputs.negatives import NegativeSampler
from kaleido_tf.inputs.product_table import ProductTable
from tests.kaleido_tf.inputs.conftest import PRODUCTS, SEQ_LEN, VOCAB


def test_table_matches_the_records(prepared, prepared_records):
    table = ProductTable.load(prepared)
    assert table.num_products == len(PRODUCTS) and table.max_seq_length == SEQ_LEN
    assert VOCAB[table.pad_id] == "[PAD]" and VOCAB[table.mask_id] == "[MASK]"
    assert not set(table.random_token_ids) & {0, 1, 2, 3, 4}
    index = {int(p): i for i, p in enumerate(table.product_ids)}
    for r in prepared_records:
        k = index[int(r["product_id"])]
        np.testing.assert_array_equal(table.input_ids[k], r["input_ids"])
        np.testing.assert_array_equal(table.word_index[k], r["word_index"])
    lookup = table.index_lookup()
    ids = tf.constant([table.product_ids[3], 12345], tf.int64)
    assert lookup.lookup(ids).numpy().tolist() == [3, -1]


def test_negatives_same_subcategory_never_the_product(prepared):
    table = ProductTable.load(prepared)
    sampler = NegativeSampler(table)
    n = table.num_products
    draws = 400
    u = (np.arange(draws) + 0.5) / draws  # an even grid over [0, 1)
    index = np.repeat(np.arange(n), draws).astype(np.int32)
    neg = sampler.sample(tf.constant(index), tf.constant(np.tile(u, n), tf.float32))
    neg = neg.numpy().reshape(n, draws)
    for k in range(n):
        got = neg[k]
        assert (got != k).all()
        same_sub = [
            j
            for j in range(n)
            if j != k
            and table.subcategory[j] == table.subcategory[k]
            and table.category[j] == table.category[k]
        ]
        same_cat = [
            j for j in range(n) if j != k and table.category[j] == table.category[k]
        ]
        expected = same_sub or same_cat or [j for j in range(n) if j != k]
        assert set(got) == set(expected), k
        # Uniform: an even grid of draws hits every candidate equally often.
        counts = np.bincount(got, minlength=n)[expected]
        assert counts.max() - counts.min() <= 1
    assert sampler.fallback_counts == {
        "products": {"subcategory": 6, "category": 1, "any": 1},
        "images": {"subcategory": 12, "category": 2, "any": 2},
    }


def test_table_and_sampler_errors(prepared, tmp_path):
    rows = [json.loads(line) for line in (prepared / "products.jsonl").open()]
    with pytest.raises(DataError, match="at least 2 products"):
        NegativeSampler(ProductTable.from_rows(rows[:1], VOCAB, SEQ_LEN))
    bad = dict(rows[0], input_ids=rows[0]["input_ids"][1:])  # no [CLS]
    with pytest.raises(DataError, match="CLS"):
        ProductTable.from_rows([bad], VOCAB, SEQ_LEN)
    with pytest.raises(DataError, match="twice"):
        ProductTable.from_rows([rows[0], rows[0]], VOCAB, SEQ_LEN)
    with pytest.raises(DataError, match="special tokens"):
        ProductTable.from_rows(rows, VOCAB[5:], SEQ_LEN)
