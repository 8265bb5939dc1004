"""Streaming retrieval scores equal direct model calls, whatever the batch size."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.checkpoints.trained_model import load_trained_model
from kaleido_tf.errors import DataError
from kaleido_tf.evaluation.easytransfer_scorer import read_pair_scores
from kaleido_tf.evaluation.retrieval import (
    TSV_COLUMNS,
    score_retrieval_lists,
    write_pair_scores,
)
from kaleido_tf.evaluation.retrieval_lists import DIRECTIONS, build_retrieval_lists
from kaleido_tf.inputs.parse import record_dataset
from kaleido_tf.inputs.product_table import ProductTable
from kaleido_tf.manifest import read_manifest

QUERIES, NEGATIVES = 8, 5


@pytest.fixture(scope="module")
def scored(synthetic_prepared, tiny_pretrain_run):
    data = synthetic_prepared["validation"]
    lists = build_retrieval_lists(data, QUERIES, NEGATIVES, seed=0)
    trained = load_trained_model(tiny_pretrain_run)
    logits = score_retrieval_lists(trained.model, trained.config, data, lists, 5)
    return data, lists, trained, logits


def direct_logits(model, config, data, lists, direction):
    """All pairs of a direction in one plain model call, from an independent read
    of the data (every record, then a lookup by image id)."""
    manifest = read_manifest(data)
    images = {r["image_id"].numpy().decode(): r for r in record_dataset(data, manifest)}
    table = ProductTable.load(data)
    row_of = {int(p): i for i, p in enumerate(table.product_ids)}
    pairs = list(lists.pairs(direction))
    ids = np.stack([table.input_ids[row_of[p.text_product]] for p in pairs])
    features = np.stack([images[p.image_id]["patch_features"] for p in pairs])
    batch = {
        "input_ids": tf.constant(ids),
        "input_mask": tf.constant((ids != table.pad_id).astype(np.int32)),
        "segment_ids": tf.zeros_like(ids),
        "patch_features": tf.constant(features),
        "patch_boxes": tf.stack([images[p.image_id]["patch_boxes"] for p in pairs]),
        "patch_mask": tf.ones(features.shape[:2], tf.int32),
    }
    for key, value in kaleido_tf.dummy_batch(config, batch_size=1).items():
        if key not in batch:
            batch[key] = tf.zeros([len(pairs), *value.shape[1:]], value.dtype)
    logits = model(batch, training=False)["itm_logits"].numpy()
    out = np.zeros([lists.num_queries, lists.num_candidates, 2], np.float32)
    for pair, row in zip(pairs, logits):
        out[pair.query_index, pair.candidate_index] = row
    return out


def test_streaming_scores_equal_direct_calls(scored):
    data, lists, trained, logits = scored
    assert set(logits) == set(DIRECTIONS)
    for d in DIRECTIONS:
        assert logits[d].shape == (QUERIES, NEGATIVES + 1, 2)
        expected = direct_logits(trained.model, trained.config, data, lists, d)
        np.testing.assert_allclose(logits[d], expected, rtol=1e-5, atol=1e-5)
    # Not a constant model: the pairs get different scores.
    assert np.ptp(logits["itr"][..., 1] - logits["itr"][..., 0]) > 1e-6


def test_scores_do_not_depend_on_batch_size(scored):
    data, lists, trained, logits = scored
    for batch_size in (1, 64):
        other = score_retrieval_lists(
            trained.model, trained.config, data, lists, batch_size
        )
        for d in DIRECTIONS:
            np.testing.assert_allclose(other[d], logits[d], rtol=1e-5, atol=1e-6)
    one = score_retrieval_lists(
        trained.model, trained.config, data, lists, 7, directions=("tir",)
    )
    assert list(one) == ["tir"]
    np.testing.assert_allclose(one["tir"], logits["tir"], rtol=1e-5, atol=1e-6)


def test_score_file_round_trip(scored, tmp_path):
    _, lists, _, logits = scored
    path = write_pair_scores(tmp_path / "scores.tsv", lists, logits)
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == list(TSV_COLUMNS)
    assert len(lines) == 1 + 2 * QUERIES * (NEGATIVES + 1)
    pairs = read_pair_scores(path)
    for d in DIRECTIONS:
        np.testing.assert_array_equal(pairs[d].logits, logits[d].reshape(-1, 2))
        labels = np.zeros([QUERIES, NEGATIVES + 1], np.int64)
        for q, query in enumerate(lists.queries[d]):
            labels[q, query.positive] = 1
        np.testing.assert_array_equal(pairs[d].labels, labels.reshape(-1))
        assert pairs[d].query_ids[:: NEGATIVES + 1] == tuple(
            q.query_id for q in lists.queries[d]
        )


def test_missing_image_is_a_data_error(scored):
    data, lists, trained, _ = scored
    query = lists.queries["itr"][0]
    ghost = dataclasses.replace(query, query_id=f"{query.product_id}_99")
    broken = dataclasses.replace(
        lists, queries={**lists.queries, "itr": (ghost, *lists.queries["itr"][1:])}
    )
    with pytest.raises(DataError, match="lacks 1 image records") as err:
        score_retrieval_lists(trained.model, trained.config, data, broken, 16)
    assert "\n" not in str(err.value)
