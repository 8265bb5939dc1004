"""FashionBERT's inputs on the 8x8 grid: whole-word masking, masked patches, ITM."""

import numpy as np
import pytest

from kaleido_tf.errors import DataError
from kaleido_tf.inputs.fashion_bert_pipeline import (
    FASHION_BATCH_KEYS,
    build_fashion_bert_dataset,
)
from kaleido_tf.inputs.pipeline import build_pretrain_dataset
from kaleido_tf.inputs.product_table import ProductTable
from kaleido_tf.manifest import read_manifest

K = 6  # F-Q5: 10% of 64 patches


def one_pass(data, corrupt, seed=3, **kwargs):
    ds = build_fashion_bert_dataset(
        data, 64, seed=seed, training=False, corrupt=corrupt, **kwargs
    )
    batches = [{k: v.numpy() for k, v in b.items()} for b in ds]
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


@pytest.fixture(scope="module")
def passes(grid8_prepared):
    return one_pass(grid8_prepared, True), one_pass(grid8_prepared, False)


@pytest.fixture(scope="module")
def table(grid8_prepared):
    return ProductTable.load(grid8_prepared, read_manifest(grid8_prepared))


def test_batches_have_the_documented_keys_and_shapes(passes, table):
    masked, clean = passes
    assert sorted(masked) == sorted(FASHION_BATCH_KEYS) == sorted(clean)
    b = masked["input_ids"].shape[0]
    assert b == 2 * 197  # every image record: a positive and a negative pair
    assert masked["patch_features"].shape == (b, 64, 576)
    assert masked["masked_lm_positions"].shape == (b, 20)  # F-Q6: 20 slots
    assert masked["mpm_positions"].shape == (b, K)
    assert masked["mpm_targets"].shape == (b, K, 576)
    np.testing.assert_array_equal(masked["itm_labels"][::2], 1)
    np.testing.assert_array_equal(masked["itm_labels"][1::2], 0)
    # The same pairs, in the same order, with and without masking.
    np.testing.assert_array_equal(masked["itm_labels"], clean["itm_labels"])
    np.testing.assert_array_equal(masked["input_mask"], clean["input_mask"])


def test_whole_word_masking_never_splits_a_word(passes, table):
    masked, clean = passes
    words_of = {tuple(ids): w for ids, w in zip(table.input_ids, table.word_index)}
    n_masked_words = []
    for i in range(len(clean["input_ids"])):
        word_index = words_of[tuple(clean["input_ids"][i])]
        real = masked["masked_lm_weights"][i] > 0
        positions = masked["masked_lm_positions"][i][real]
        assert len(set(positions)) == len(positions)
        np.testing.assert_array_equal(  # labels are the original tokens
            masked["masked_lm_ids"][i][real], clean["input_ids"][i][positions]
        )
        words = set(word_index[positions])
        assert -1 not in words  # [CLS], [SEP], [PAD] are never masked
        for w in words:  # every piece of a touched word is masked
            assert set(np.flatnonzero(word_index == w)) <= set(positions)
        num_words = len(set(word_index[word_index >= 0]))
        budget = max(1, round(0.15 * num_words))
        assert 1 <= len(words) <= budget
        n_masked_words.append(len(words) == budget)
        # Unmasked positions keep their token.
        keep = np.setdiff1d(np.arange(len(word_index)), positions)
        np.testing.assert_array_equal(
            masked["input_ids"][i][keep], clean["input_ids"][i][keep]
        )
    assert np.mean(n_masked_words) > 0.95  # the budget is met unless slots run out


def test_masked_tokens_are_replaced_80_10_10(passes, table):
    masked, clean = passes
    real = masked["masked_lm_weights"] > 0
    rows = np.nonzero(real)[0]
    now = np.take_along_axis(masked["input_ids"], masked["masked_lm_positions"], 1)
    was = masked["masked_lm_ids"]
    now, was = now[real], was[real]
    assert len(rows) > 600
    mask_rate = np.mean(now == table.mask_id)
    kept_rate = np.mean(now == was)
    assert mask_rate == pytest.approx(0.8, abs=0.05)
    assert kept_rate == pytest.approx(0.1, abs=0.04)
    assert 1 - mask_rate - kept_rate == pytest.approx(0.1, abs=0.04)


def test_masked_patches_are_zeroed_and_their_features_are_the_targets(passes):
    masked, clean = passes
    positions = masked["mpm_positions"]
    assert np.all(np.diff(positions, axis=1) > 0)  # K distinct, ascending
    assert positions.min() >= 0 and positions.max() < 64
    np.testing.assert_array_equal(masked["mpm_weights"], 1.0)
    hit = np.zeros((len(positions), 64), bool)
    np.put_along_axis(hit, positions, True, axis=1)
    row_norms = np.abs(masked["patch_features"]).sum(-1)
    assert np.all(row_norms[hit] == 0)
    np.testing.assert_array_equal(  # everything else is untouched
        masked["patch_features"][~hit], clean["patch_features"][~hit]
    )
    assert np.all(np.abs(clean["patch_features"]).sum(-1)[hit] > 0)
    np.testing.assert_array_equal(
        masked["mpm_targets"],
        np.take_along_axis(clean["patch_features"], positions[:, :, None], 1),
    )
    counts = hit.sum(0)  # uniform over the 64 patches: ~37 each here
    assert counts.min() > 10 and counts.max() < 80
    # Positive and negative of one image draw their patches independently.
    assert np.mean(np.all(positions[::2] == positions[1::2], axis=1)) < 0.1


def test_clean_pairs_carry_no_masks(passes):
    _, clean = passes
    np.testing.assert_array_equal(clean["masked_lm_weights"], 0.0)
    np.testing.assert_array_equal(clean["mpm_weights"], 0.0)


def test_same_seed_same_masks_other_seed_other_masks(grid8_prepared, passes):
    masked, _ = passes
    again = one_pass(grid8_prepared, True)
    other = one_pass(grid8_prepared, True, seed=4)
    for key in ("input_ids", "mpm_positions", "masked_lm_positions"):
        np.testing.assert_array_equal(again[key], masked[key])
    assert not np.array_equal(other["mpm_positions"], masked["mpm_positions"])


def test_released_sizes_and_task_switches(grid8_prepared):
    released = one_pass(
        grid8_prepared, True, max_masked_tokens=10, num_masked_patches=5
    )
    assert released["mpm_positions"].shape[1] == 5
    assert released["masked_lm_positions"].shape[1] == 10
    no_mpm = one_pass(grid8_prepared, True, tasks=("mlm", "itm"))
    np.testing.assert_array_equal(no_mpm["mpm_weights"], 0.0)
    assert np.all(np.abs(no_mpm["patch_features"]).sum(-1) > 0)
    with pytest.raises(ValueError, match="FashionBERT task"):
        build_fashion_bert_dataset(grid8_prepared, 8, tasks=("rr",))


def test_shared_builder_gives_clean_grid8_pairs_for_fine_tuning(grid8_prepared):
    ds = build_pretrain_dataset(
        grid8_prepared,
        8,
        tasks=(),
        masking="random",
        training=False,
        corrupt=False,
        extra_keys=("category_id",),
    )
    batch = next(iter(ds))
    assert batch["patch_features"].shape == (8, 64, 576)
    assert batch["category_id"].shape == (8,)
    np.testing.assert_array_equal(batch["itm_labels"].numpy(), 1)
    with pytest.raises(DataError, match="layout 'grid8'"):
        build_pretrain_dataset(grid8_prepared, 8, tasks=(), masking="agm")
    with pytest.raises(DataError, match="rr"):
        build_pretrain_dataset(grid8_prepared, 8, tasks=("rr",), masking="random")
