"""CommerceMM's image-text and Omni pipelines on folders built by the real
``prepare-pixels`` / ``prepare-omni``: batch contract, pixels against TF's JPEG
decoder, ~50% greyed patches, the MLM rate and policy, determinism, resume and
sharding."""

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.errors import DataError
from kaleido_tf.inputs import commerce_mm_pipeline as cmp
from kaleido_tf.inputs.pixel_records import pixel_dataset
from kaleido_tf.manifest import read_manifest
from kaleido_tf.systems import commerce_mm
from tests.fixtures import pixel_prepared as fx

GREY = 127.5


@pytest.fixture(scope="module")
def folders():
    return fx.pixel_prepared()


def config(*extra):
    return kaleido_tf.load_config(
        "commerce_mm/demo",
        [
            f"commerce_mm.image_size={fx.IMAGE_SIZE}",
            f"commerce_mm.num_clusters={fx.NUM_CLUSTERS}",
            "commerce_mm.image_backbone=vit",
            "commerce_mm.vit_patch_size=8",
            "commerce_mm.max_masked_tokens=12",
            *extra,
        ],
    )


def batches(ds, n):
    return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


def stacked(rows):
    return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


def records(folder):
    manifest = read_manifest(folder)
    return [
        {k: v.numpy() for k, v in r.items()} for r in pixel_dataset(folder, manifest)
    ]


def raw_jpegs(folder):
    """The stored ``image_jpeg`` bytes, in file order, read without our parser."""
    out = []
    for shard in read_manifest(folder)["shards"]:
        for raw in tf.data.TFRecordDataset(str(folder / shard["file"])):
            example = tf.train.Example.FromString(raw.numpy())
            out.append(example.features.feature["image_jpeg"].bytes_list.value[0])
    return out


def test_image_text_batch_matches_the_records(folders):
    recs = records(folders["pixels"])
    jpegs = raw_jpegs(folders["pixels"])
    n = len(recs)
    ds = cmp.build_image_text_dataset(folders["pixels"], config(), 4, training=False)
    got = stacked(batches(ds, 100))
    assert set(got) == set(commerce_mm.IMAGE_TEXT_BATCH_KEYS)
    assert got["input_ids"].shape == (n, fx.SEQ_LEN) and n == 20
    assert got["pixels"].shape == (n, fx.IMAGE_SIZE, fx.IMAGE_SIZE, 3)
    assert got["teacher_clusters"].shape == (n, fx.NUM_CLUSTERS)
    for i, r in enumerate(recs):  # evaluation order = file order
        np.testing.assert_array_equal(got["input_ids"][i], r["input_ids"])
        np.testing.assert_array_equal(got["input_mask"][i], r["input_ids"] != 0)
        # [0, 255] RGB: the stored JPEG's own uint8 values (accurate DCT).
        rgb = tf.io.decode_jpeg(jpegs[i], dct_method="INTEGER_ACCURATE").numpy()
        np.testing.assert_array_equal(got["pixels"][i], rgb.astype(np.float32))
        assert got["pixels"][i].max() > 1.0
        np.testing.assert_allclose(got["teacher_features"][i], r["teacher_features"])
        # Evaluation: clean copies, no MLM slot.
        np.testing.assert_array_equal(got["greyed_pixels"][i], got["pixels"][i])
        np.testing.assert_array_equal(got["masked_input_ids"][i], r["input_ids"])
    assert got["masked_lm_weights"].sum() == 0


def grey_fraction(pixels, greyed, patch):
    """Per image: fraction of patches that are all GREY (never in a JPEG: integer
    values), checking that the other pixels are untouched."""
    b, s = pixels.shape[0], pixels.shape[1]
    g = s // patch
    tiles = greyed.reshape(b, g, patch, g, patch, 3)
    grey = np.all(tiles == GREY, axis=(2, 4, 5))  # [B, g, g]
    keep = ~np.repeat(np.repeat(grey, patch, 1), patch, 2)
    np.testing.assert_array_equal(greyed[keep], pixels[keep])
    return grey.reshape(b, -1).mean(1)


def test_half_of_the_patches_are_greyed(folders):
    # ViT-style 8-px patches: 16 per image, exactly 8 greyed in every image.
    ds = cmp.build_image_text_dataset(folders["pixels"], config(), 4)
    got = stacked(batches(ds, 10))
    frac = grey_fraction(got["pixels"], got["greyed_pixels"], 8)
    np.testing.assert_array_equal(frac, 0.5)
    # ResNet-style 32-px blocks: 1 per image, greyed half of the time (floor(0.5
    # + u)): ~50% over many examples, and differently per epoch.
    inputs = cmp.ImageTextInputs(folders["pixels"], seed=3, patch_size=32)
    ds = cmp.make_dataset(inputs, 10)
    got = stacked(batches(ds, 24))  # 240 examples, 12 epochs
    frac = grey_fraction(got["pixels"], got["greyed_pixels"], 32)
    assert abs(frac.mean() - 0.5) < 0.1  # 4 standard deviations
    per_epoch = frac.reshape(12, 20)
    assert not np.all(per_epoch == per_epoch[0])


@pytest.mark.parametrize("policy", ["all_mask", "bert_80_10_10"])
def test_mlm_rate_and_replacement_policy(folders, policy):
    cfg = config(f"commerce_mm.mlm_mask_policy={policy}")
    inputs = cmp.ImageTextInputs(
        folders["pixels"], seed=1, max_masked_tokens=12, mask_policy=policy
    )
    table = inputs.table
    special = {table.cls_id, table.sep_id, table.pad_id}
    ds = cmp.build_image_text_dataset(folders["pixels"], cfg, 10)
    got = stacked(batches(ds, 20))  # 200 examples, 10 epochs
    ids, masked = got["input_ids"], got["masked_input_ids"]
    chosen = np.zeros_like(ids, bool)
    pos, w = got["masked_lm_positions"], got["masked_lm_weights"]
    for i in range(len(ids)):
        real = pos[i][w[i] > 0]
        chosen[i, real] = True
        np.testing.assert_array_equal(got["masked_lm_ids"][i][w[i] > 0], ids[i, real])
    eligible = ~np.isin(ids, list(special))
    assert not np.any(chosen & ~eligible)  # [CLS], [SEP], [PAD] never masked
    np.testing.assert_array_equal(masked[~chosen], ids[~chosen])
    rate = chosen.sum() / eligible.sum()
    assert abs(rate - 0.15) < 0.04, rate  # > 4 standard deviations
    to_mask = np.mean(masked[chosen] == table.mask_id)
    if policy == "all_mask":
        assert to_mask == 1.0
    else:
        assert abs(to_mask - 0.8) < 0.12, to_mask


def test_deterministic_and_resumable(folders):
    cfg = config()
    first = batches(cmp.build_image_text_dataset(folders["pixels"], cfg, 4), 9)
    again = batches(cmp.build_image_text_dataset(folders["pixels"], cfg, 4), 9)
    other = batches(
        cmp.build_image_text_dataset(folders["pixels"], config("train.seed=5"), 4), 1
    )
    for a, b in zip(first, again):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(first[0]["input_ids"], other[0]["input_ids"])
    # Resume at step 5 (example 20: the first of epoch 2) and 6 (mid-epoch).
    for start in (5, 6):
        resumed = batches(
            cmp.build_image_text_dataset(folders["pixels"], cfg, 4, start_step=start),
            9 - start,
        )
        for a, b in zip(first[start:], resumed):
            for k in a:
                np.testing.assert_array_equal(a[k], b[k])
    omni = batches(cmp.build_omni_dataset(folders["omni"], cfg, 6), 5)
    resumed = batches(cmp.build_omni_dataset(folders["omni"], cfg, 6, start_step=3), 2)
    for a, b in zip(omni[3:], resumed):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_input_pipelines_split_each_global_batch(folders):
    cfg = config()
    whole = batches(cmp.build_image_text_dataset(folders["pixels"], cfg, 4), 3)
    parts = []
    for pipe in range(2):
        ctx = tf.distribute.InputContext(2, pipe, 2)
        parts.append(
            batches(
                cmp.build_image_text_dataset(
                    folders["pixels"], cfg, 4, input_context=ctx
                ),
                3,
            )
        )
    for i, batch in enumerate(whole):
        for k in batch:
            joined = np.concatenate([parts[0][i][k], parts[1][i][k]])
            np.testing.assert_array_equal(batch[k], joined)


def test_omni_batch_flags_and_placeholders(folders):
    recs = records(folders["omni"])
    ds = cmp.build_omni_dataset(folders["omni"], config(), 4, training=False)
    got = stacked(batches(ds, 100))
    assert set(got) == set(commerce_mm.OMNI_BATCH_KEYS)
    assert len(got["source_input_ids"]) == len(recs) == 20
    for i, r in enumerate(recs):
        for side, pre in (("source", "src"), ("target", "tgt")):
            assert got[f"{side}_image_present"][i] == r[f"{pre}_has_image"]
            assert got[f"{side}_text_present"][i] == r[f"{pre}_has_text"]
            np.testing.assert_array_equal(
                got[f"{side}_input_ids"][i], r[f"{pre}_input_ids"]
            )
            pixels = got[f"{side}_pixels"][i]
            if r[f"{pre}_has_image"]:
                np.testing.assert_array_equal(pixels, np.round(r[f"{pre}_image"] * 255))
            else:  # a missing image: all mid-grey of [0, 255]
                assert np.all(pixels == GREY)
            if not r[f"{pre}_has_text"]:  # [CLS] [SEP]
                assert got[f"{side}_input_mask"][i].sum() == 2
    assert (
        got["source_image_present"].min() == 0 and got["source_text_present"].min() == 0
    )


def test_mismatched_folders_are_refused(folders):
    with pytest.raises(DataError, match="prepare-pixels"):
        cmp.build_image_text_dataset(folders["omni"], config(), 4)
    with pytest.raises(DataError, match="prepare-omni"):
        cmp.build_omni_dataset(folders["pixels"], config(), 4)
    with pytest.raises(DataError, match="num_clusters"):
        cmp.build_image_text_dataset(
            folders["pixels"], config("commerce_mm.num_clusters=7"), 4
        )
    with pytest.raises(DataError, match="image_size"):
        cmp.build_image_text_dataset(
            folders["pixels"], config("commerce_mm.image_size=64"), 4
        )
