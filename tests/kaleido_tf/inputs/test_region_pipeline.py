"""ImageBERT's region pipeline: masking rates, image-swap negatives, targets."""

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf  # noqa: F401
from kaleido_tf.errors import DataError
from kaleido_tf.inputs.region_masking import RegionMasker, TokenMasker
from kaleido_tf.inputs.region_pipeline import REGION_BATCH_KEYS, build_region_dataset
from tests.fixtures.region_prepared import FIRST_WORD, VOCAB_SIZE, write_region_prepared

MASK_ID = 6


@pytest.fixture(scope="module")
def region_data(tmp_path_factory):
    return write_region_prepared(tmp_path_factory.mktemp("regions") / "train")


def _draws(n, width, seed):
    return tf.random.stateless_uniform([n, width], [seed, 7], dtype=tf.float64)


def test_text_masking_rate_and_80_10_10_split_over_many_seeds():
    t, n = 24, 400
    masker = TokenMasker(
        t, MASK_ID, np.arange(FIRST_WORD, VOCAB_SIZE), max_masked_tokens=t
    )
    chosen = masked = randomised = kept = eligible = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        ids = rng.integers(FIRST_WORD, VOCAB_SIZE, (n, t)).astype(np.int32)
        words = np.tile(np.arange(t), (n, 1)).astype(np.int32)
        words[:, 0] = words[:, -1] = -1  # [CLS] and [SEP] are never masked
        ids[:, 0], ids[:, -1] = 4, 5
        out = masker.apply(ids, words, _draws(n, masker.num_uniforms, seed))
        w = out["masked_lm_weights"].numpy() > 0
        pos = out["masked_lm_positions"].numpy()
        new = np.take_along_axis(out["input_ids"].numpy(), pos, 1)[w]
        orig = out["masked_lm_ids"].numpy()[w]
        np.testing.assert_array_equal(orig, np.take_along_axis(ids, pos, 1)[w])
        assert not np.isin(pos[w], [0, t - 1]).any()
        # Outside the slots nothing changed.
        changed = out["input_ids"].numpy() != ids
        slot_mask = np.zeros_like(changed)
        np.put_along_axis(slot_mask, pos, w, 1)
        assert not (changed & ~slot_mask).any()
        eligible += (words >= 0).sum()
        chosen += w.sum()
        masked += (new == MASK_ID).sum()
        kept += (new == orig).sum()
        randomised += ((new != MASK_ID) & (new != orig)).sum()
    assert abs(chosen / eligible - 0.15) < 0.01
    # A random replacement equals the original with probability 1/33 (vocab).
    p_same = 1 / (VOCAB_SIZE - FIRST_WORD)
    assert abs(masked / chosen - 0.8) < 0.02
    assert abs(randomised / chosen - 0.1 * (1 - p_same)) < 0.015
    assert abs(kept / chosen - (0.1 + 0.1 * p_same)) < 0.015


def test_region_masking_rate_and_90_10_split_over_many_seeds():
    r, d, n = 36, 4, 300
    masker = RegionMasker(r, max_masked_regions=r)
    chosen = zeroed = real = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        features = rng.normal(size=(n, r, d)).astype(np.float32) + 3.0
        count = rng.integers(5, r + 1, n)
        mask = (np.arange(r)[None, :] < count[:, None]).astype(np.int32)
        features *= mask[..., None]
        out = masker.apply(features, mask, _draws(n, masker.num_uniforms, seed))
        w = out["weights"].numpy() > 0
        pos = out["positions"].numpy()
        assert (np.take_along_axis(mask, pos, 1)[w] == 1).all()  # only real ones
        np.testing.assert_array_equal(
            out["targets"].numpy()[w],
            np.take_along_axis(features, pos[..., None], 1)[w],
        )
        new = out["features"].numpy()
        is_zero = np.all(new == 0, axis=-1) & (mask == 1)
        # Zeroed regions are exactly the zeroed masked ones; others unchanged.
        np.testing.assert_array_equal(is_zero, out["zeroed"].numpy())
        untouched = ~out["zeroed"].numpy()
        np.testing.assert_array_equal(new[untouched], features[untouched])
        real += mask.sum()
        chosen += w.sum()
        zeroed += out["zeroed"].numpy().sum()
    assert abs(chosen / real - 0.15) < 0.01
    assert abs(zeroed / chosen - 0.9) < 0.02


def test_slot_caps_keep_a_random_subset():
    masker = RegionMasker(36, max_masked_regions=2, rate=0.9)
    mask = np.ones((200, 36), np.int32)
    out = masker.apply(tf.ones([200, 36, 2]), mask, _draws(200, 72, 3))
    w = out["weights"].numpy()
    assert (w.sum(1) == 2).all()
    pos = out["positions"].numpy()
    assert (np.diff(pos, axis=1) > 0).all()  # ascending
    assert pos.max() > 30  # not only the first slots


def _epoch(region_data, **kwargs):
    ds = build_region_dataset(
        region_data["dir"],
        8,
        training=True,
        num_epochs=1,
        group_size=8,
        max_masked_tokens=6,
        max_masked_regions=12,
        extra_keys=("image_id",),
        **kwargs,
    )
    return [{k: v.numpy() for k, v in b.items()} for b in ds]


def test_negatives_swap_the_caption_or_carry_another_records_regions(region_data):
    records = region_data["records"]
    kinds = {"caption": 0, "image": 0}
    for seed in range(3):
        for batch in _epoch(region_data, seed=seed, corrupt=False):
            assert set(batch) == {*REGION_BATCH_KEYS, "image_id"}
            for i in range(len(batch["itm_labels"])):
                own = records[batch["image_id"][i].decode()]
                own_feats = own["region_features"].astype(np.float16)
                feats = batch["patch_features"][i]
                same_image = np.array_equal(feats, own_feats.astype(np.float32))
                same_text = np.array_equal(batch["input_ids"][i], own["input_ids"])
                if batch["itm_labels"][i] == 1:
                    assert same_image and same_text
                    continue
                assert same_image != same_text  # exactly one side replaced
                if same_image:
                    kinds["caption"] += 1
                    continue
                kinds["image"] += 1
                donors = [
                    r
                    for r in records.values()
                    if np.array_equal(
                        feats,
                        r["region_features"].astype(np.float16).astype(np.float32),
                    )
                ]
                assert len(donors) == 1
                donor = donors[0]
                assert donor["product_id"] != own["product_id"]
                # The donor's boxes and region count come along with its features.
                np.testing.assert_allclose(
                    batch["patch_boxes"][i], donor["region_locations"], atol=1e-6
                )
                assert batch["patch_mask"][i].sum() == donor["num_regions"]
    total = kinds["caption"] + kinds["image"]
    assert total == 3 * len(records)
    assert 0.3 < kinds["image"] / total < 0.7, kinds


def test_masking_is_applied_to_negatives_and_targets_are_the_originals(region_data):
    records = region_data["records"]
    batches = _epoch(region_data, seed=5)
    neg_tokens = neg_regions = 0
    for batch in batches:
        for i in range(len(batch["itm_labels"])):
            negative = batch["itm_labels"][i] == 0
            w = batch["masked_region_weights"][i] > 0
            neg_regions += negative * w.sum()
            neg_tokens += negative * (batch["masked_lm_weights"][i] > 0).sum()
            if negative:
                continue
            own = records[batch["image_id"][i].decode()]
            pos = batch["moc_positions"][i][w]
            np.testing.assert_array_equal(batch["mrfr_positions"][i][w], pos)
            np.testing.assert_array_equal(
                batch["moc_labels"][i][w], own["region_classes"][pos]
            )
            original = own["region_features"].astype(np.float16).astype(np.float32)
            np.testing.assert_array_equal(batch["mrfr_targets"][i][w], original[pos])
            assert (pos < own["num_regions"]).all()
            # Locations are kept even for masked regions.
            np.testing.assert_allclose(
                batch["patch_boxes"][i], own["region_locations"], atol=1e-6
            )
    assert neg_tokens > 0 and neg_regions > 0


def test_distribution_targets_and_data_checks(region_data, tmp_path):
    batch = _epoch(region_data, seed=1, moc_target="distribution")[0]
    probs = batch["moc_target_probs"]
    w = batch["masked_region_weights"] > 0
    np.testing.assert_allclose(probs[w].sum(-1), 1.0, atol=2e-3)
    np.testing.assert_array_equal(probs[w].argmax(-1), batch["moc_labels"][w])
    with pytest.raises(DataError, match="num_classes"):
        build_region_dataset(region_data["dir"], 8, num_classes=1600)
    with pytest.raises(DataError, match="layout"):
        build_region_dataset(region_data["dir"], 8, layout="regions100")
    plain = write_region_prepared(tmp_path / "plain", class_distribution=False)
    with pytest.raises(DataError, match="region_class_probs"):
        build_region_dataset(plain["dir"], 8, moc_target="distribution")
