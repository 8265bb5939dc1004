"""The pretraining input pipeline end to end on small prepared folders."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from kaleido_tf import constants
from kaleido_tf.errors import DataError
from kaleido_tf.inputs.pipeline import (
    BATCH_KEYS,
    KALEIDO_TASKS,
    build_pretrain_dataset,
    examples_per_epoch,
)
from kaleido_tf.inputs.pretext import jigsaw_permutation
from kaleido_tf.inputs.product_table import ProductTable
from tests.kaleido_tf.inputs.conftest import FEATURE_DIM, PRODUCTS, SEQ_LEN, VOCAB

NUM_RECORDS = sum(images for _, _, images in PRODUCTS)  # 16
M = 10


def batches(ds, n=None):
    out = []
    for i, b in enumerate(ds):
        if n is not None and i == n:
            break
        out.append({k: v.numpy() for k, v in b.items()})
    return out


def examples(batch_list):
    """Batches -> one dict of arrays concatenated over the batch axis."""
    return {k: np.concatenate([b[k] for b in batch_list]) for k in batch_list[0]}


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for k in BATCH_KEYS:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.fixture(scope="module")
def train_dataset(prepared):
    return build_pretrain_dataset(prepared, 6, seed=1, num_epochs=1, group_size=8)


@pytest.fixture(scope="module")
def train_batches(train_dataset):
    return batches(train_dataset)


@pytest.fixture(scope="module")
def table(prepared):
    return ProductTable.load(prepared)


def record_of(ex_boxes, records):
    """The record whose (untouched) patch boxes equal the example's."""
    hits = [r for r in records if np.array_equal(r["patch_boxes"], ex_boxes)]
    assert len(hits) == 1
    return hits[0]


def restored_text(ex, i):
    ids = ex["input_ids"][i].copy()
    real = ex["masked_lm_weights"][i] == 1
    ids[ex["masked_lm_positions"][i][real]] = ex["masked_lm_ids"][i][real]
    return ids


def negative_candidates(table, k):
    n = table.num_products
    same = [
        j
        for j in range(n)
        if j != k
        and (table.category[j], table.subcategory[j])
        == (table.category[k], table.subcategory[k])
    ]
    cat = [j for j in range(n) if j != k and table.category[j] == table.category[k]]
    return same or cat or [j for j in range(n) if j != k]


def test_keys_and_static_shapes(train_dataset, train_batches):
    spec = train_dataset.element_spec
    assert tuple(spec) == BATCH_KEYS
    shapes = {
        "input_ids": [6, SEQ_LEN],
        "patch_features": [6, 55, FEATURE_DIM],
        "patch_boxes": [6, 55, 5],
        "masked_lm_positions": [6, M],
        "itm_labels": [6],
        "g2cm_positions": [6, 2],
        "g2cm_targets": [6, 2, FEATURE_DIM],
        "b2cm_targets": [6, 3, FEATURE_DIM],
        "b2cm_weights": [6, 3],
        "agm_pairs_used": [6],
    }
    for key, shape in shapes.items():
        assert spec[key].shape.as_list() == shape, key
    for key, s in spec.items():
        assert s.shape.is_fully_defined(), key
        want = tf.float32 if "features" in key or "boxes" in key else tf.int32
        if key.endswith(("_weights", "_targets")):
            want = tf.float32
        assert s.dtype == want, key
    assert len(train_batches) == NUM_RECORDS * 2 // 6  # drop_remainder


def test_training_examples_against_records(train_batches, prepared_records, table):
    ex = examples(train_batches)
    product_index = {int(p): i for i, p in enumerate(table.product_ids)}
    level3 = [
        (int(r["product_id"]), r["patch_features"][5:14]) for r in prepared_records
    ]
    n = len(ex["itm_labels"])
    assert ex["itm_labels"].sum() == n // 2 or abs(ex["itm_labels"].sum() - n / 2) <= 2
    for i in range(n):
        r = record_of(ex["patch_boxes"][i], prepared_records)
        f, new = r["patch_features"], ex["patch_features"][i]
        k = product_index[int(r["product_id"])]
        text = restored_text(ex, i)
        np.testing.assert_array_equal(ex["input_mask"][i], text != table.pad_id)
        assert (ex["segment_ids"][i] == 0).all() and (ex["patch_mask"][i] == 1).all()
        # Text: the record's own (positive) or another product's (negative).
        if ex["itm_labels"][i] == constants.ITM_MATCH:
            np.testing.assert_array_equal(text, r["input_ids"])
            word_index = r["word_index"]
        else:
            owners = [
                j
                for j in range(table.num_products)
                if np.array_equal(table.input_ids[j], text)
            ]
            assert owners and set(owners) <= set(negative_candidates(table, k))
            word_index = table.word_index[owners[0]]
            assert ex["agm_pairs_used"][i] == 0  # pairs belong to the positive
        real = ex["masked_lm_weights"][i] == 1
        assert real.sum() >= 1
        assert (word_index[ex["masked_lm_positions"][i][real]] >= 0).all()
        # Patches: rotation, jigsaw, camouflage, grey, blank.
        rr = ex["rr_labels"][i]
        want = f[0] if rr == 0 else r["rotated_features"][rr - 1]
        np.testing.assert_array_equal(new[0], want)
        perm = jigsaw_permutation(int(ex["jps_labels"][i]))
        np.testing.assert_array_equal(new[1:5], f[1:5][list(perm)])
        slot = 5 + ex["cp_labels"][i]
        assert any(
            pid != int(r["product_id"]) and (cells == new[slot]).all(1).any()
            for pid, cells in level3
        )
        grey = ex["g2cm_positions"][i]
        assert ((grey >= 14) & (grey < 30)).all() and len(set(grey)) == 2
        np.testing.assert_array_equal(new[grey], r["grey_features"][grey - 14])
        np.testing.assert_array_equal(ex["g2cm_targets"][i], f[grey])
        blank = ex["b2cm_positions"][i]
        assert ((blank >= 30) & (blank < 55)).all() and len(set(blank)) == 3
        assert (new[blank] == 0).all()
        np.testing.assert_array_equal(ex["b2cm_targets"][i], f[blank])
        untouched = np.setdiff1d(np.arange(5, 55), [slot, *grey, *blank])
        np.testing.assert_array_equal(new[untouched], f[untouched])
    assert (ex["g2cm_weights"] == 1).all() and (ex["b2cm_weights"] == 1).all()
    assert (ex["agm_pairs_used"][ex["itm_labels"] == 1] > 0).any()


def test_deterministic_and_independent_of_the_batch_size(
    prepared, train_batches, two_epochs
):
    """A rebuild with the same seed gives the same examples, also with another
    batch size (so 1 or N replicas see the same data for one global batch)."""
    again = batches(
        build_pretrain_dataset(prepared, 4, seed=1, num_epochs=1, group_size=8)
    )
    assert [len(b["itm_labels"]) for b in again] == [4] * (2 * NUM_RECORDS // 4)
    a, b = examples(again), examples(train_batches)
    n = len(b["itm_labels"])
    for key in BATCH_KEYS:
        np.testing.assert_array_equal(a[key][:n], b[key], err_msg=key)
    other = examples(two_epochs[:5])  # seed 3
    assert not np.array_equal(other["input_ids"], b["input_ids"])


def test_negatives_and_masks_are_redrawn_every_epoch(two_epochs, prepared_records):
    ex = examples(two_epochs)
    per_epoch = 2 * NUM_RECORDS
    seen = [{}, {}]  # epoch -> record -> (negative text, masked positions)
    for i in range(2 * per_epoch):
        r = record_of(ex["patch_boxes"][i], prepared_records)
        side = "neg" if ex["itm_labels"][i] == 0 else "pos"
        seen[i // per_epoch][(r["image_id"], side)] = (
            tuple(restored_text(ex, i)),
            tuple(ex["masked_lm_positions"][i]),
            tuple(ex["g2cm_positions"][i]),
        )
    assert seen[0].keys() == seen[1].keys() and len(seen[0]) == per_epoch
    negatives = [k for k in seen[0] if k[1] == "neg"]
    assert any(seen[0][k][0] != seen[1][k][0] for k in negatives)
    assert all(seen[0][k][0] == seen[1][k][0] for k in seen[0] if k[1] == "pos")
    assert any(seen[0][k][1:] != seen[1][k][1:] for k in seen[0])


def test_evaluation_mode_is_clean_and_ordered(prepared, prepared_records, table):
    ds = build_pretrain_dataset(prepared, 6, training=False)
    got = batches(ds)
    assert [len(b["itm_labels"]) for b in got] == [6] * 5 + [2]  # remainder kept
    ex = examples(got)
    assert ex["itm_labels"].tolist() == [1, 0] * NUM_RECORDS
    for n, r in enumerate(prepared_records):
        for i in (2 * n, 2 * n + 1):
            np.testing.assert_array_equal(ex["patch_features"][i], r["patch_features"])
            np.testing.assert_array_equal(ex["patch_boxes"][i], r["patch_boxes"])
        np.testing.assert_array_equal(ex["input_ids"][2 * n], r["input_ids"])
        assert not np.array_equal(ex["input_ids"][2 * n + 1], r["input_ids"])
    for key in (
        "masked_lm_weights",
        "g2cm_weights",
        "b2cm_weights",
        "rr_labels",
        "jps_labels",
        "cp_labels",
        "agm_pairs_used",
        "g2cm_targets",
    ):
        assert (ex[key] == 0).all(), key
    assert (ex["g2cm_positions"] == [14, 15]).all()


def test_ablations_switch_inputs_off(prepared, prepared_records):
    # B (MLM + ITM) with random masking: no patch is touched, no pair is used.
    ds = build_pretrain_dataset(
        prepared, 6, ("mlm", "itm"), "random", seed=4, num_epochs=1, group_size=8
    )
    base = examples(batches(ds))
    for i in range(len(base["itm_labels"])):
        r = record_of(base["patch_boxes"][i], prepared_records)
        np.testing.assert_array_equal(base["patch_features"][i], r["patch_features"])
    for key in (
        "rr_labels",
        "jps_labels",
        "cp_labels",
        "g2cm_weights",
        "b2cm_weights",
        "g2cm_targets",
        "b2cm_targets",
    ):
        assert (base[key] == 0).all(), key
    assert (base["masked_lm_weights"].sum(1) >= 1).all()
    assert (base["agm_pairs_used"] == 0).all()
    # Without ITM: positives only; without MLM: no masked tokens.
    only = batches(
        build_pretrain_dataset(
            prepared, 4, tasks=("rr", "b2cm"), seed=4, num_epochs=1, group_size=8
        )
    )
    ex = examples(only)
    assert len(ex["itm_labels"]) == NUM_RECORDS // 4 * 4
    assert (ex["itm_labels"] == constants.ITM_MATCH).all()
    assert (ex["masked_lm_weights"] == 0).all() and (ex["b2cm_weights"] == 1).all()
    assert examples_per_epoch(prepared, ("rr",)) == NUM_RECORDS
    assert examples_per_epoch(prepared) == 2 * NUM_RECORDS
    with pytest.raises(ValueError, match="unknown task"):
        build_pretrain_dataset(prepared, 4, tasks=("mlm", "mpm"))


@pytest.fixture(scope="module")
def two_epochs(prepared):
    """11 batches of 6 at seed 3: 2 epochs of 32 examples and a bit."""
    return batches(build_pretrain_dataset(prepared, 6, seed=3, group_size=8), 11)


def test_resume_continues_where_the_run_was(prepared, two_epochs):
    # Step 5: 30 examples in, mid-group of epoch 0, crossing into epoch 1;
    # step 6: 36 examples in, epoch 1 at example 4.
    for step in (5, 6):
        ds = build_pretrain_dataset(prepared, 6, seed=3, group_size=8, start_step=step)
        assert_same(batches(ds, 3), two_epochs[step : step + 3])


def test_input_context_takes_its_share_of_each_global_batch(prepared):
    # Worker 1 of 2 (4 replicas): rows 4..7 of every global batch of 8 of the
    # single-process stream, in per-replica batches of 2, so W workers train on
    # exactly one process's batches.
    ctx = tf.distribute.InputContext(2, 1, num_replicas_in_sync=4)
    got = batches(
        build_pretrain_dataset(prepared, 8, training=False, input_context=ctx)
    )
    assert got[0]["input_ids"].shape[0] == 2  # per-replica batch: 8 / 4 replicas
    whole = batches(build_pretrain_dataset(prepared, 8, training=False))
    share = {
        key: np.concatenate([b[key][4:] for b in whole])
        for key in ("input_ids", "patch_boxes")
    }
    mine = examples(got)
    for key, want in share.items():
        np.testing.assert_array_equal(mine[key], want)
    assert examples_per_epoch(prepared, KALEIDO_TASKS, ctx) == NUM_RECORDS
    assert examples_per_epoch(prepared, ("rr",), ctx) == NUM_RECORDS // 2


def test_rejects_other_layouts(prepared, tmp_path):
    other = tmp_path / "grid"
    shutil.copytree(prepared, other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps(dict(manifest, layout="grid8")))
    with pytest.raises(DataError, match="layout"):
        build_pretrain_dataset(other, 4)
    with pytest.raises(DataError, match="feature_dim"):
        build_pretrain_dataset(prepared, 4, feature_dim=2048)
    with pytest.raises(ValueError, match="group_size"):
        build_pretrain_dataset(prepared, 4, group_size=3)


def test_table_word_index_matches_the_wordpiece_encoder():
    """The table recomputes word_index from "##" pieces exactly as prepare's
    tokeniser assigns words (punctuation, unknown and truncated words)."""
    from data_prep.text.wordpiece import WordPieceEncoder

    texts = [
        "word1ab word2, word3cdef.",
        "word4 zzz word5ef word6 word7 word8 word9 word10 word11 word12 word13 word14 "
        "word15cd",  # cut between word15 and ##cd
        "word14",
    ]
    encoder = WordPieceEncoder(VOCAB + ["ab", "cd", "ef"], SEQ_LEN)
    ids, word_index, truncated = encoder.encode(texts)
    assert truncated == 1
    rows = [
        {
            "product_id": i,
            "category": "c",
            "subcategory": "s",
            "num_images": 1,
            "input_ids": ids[i][: int((word_index[i] >= 0).sum()) + 2].tolist(),
        }
        for i in range(len(texts))
    ]
    table = ProductTable.from_rows(rows, encoder.vocab, SEQ_LEN)
    np.testing.assert_array_equal(table.input_ids, ids)
    np.testing.assert_array_equal(table.word_index, word_index)
