"""Full-gallery R@K on hand-ranked examples; cached cross-encoder scores equal
direct model calls."""

import json

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.errors import DataError
from kaleido_tf.evaluation.full_gallery import (
    CrossEncoderScorer,
    evaluate_gallery,
    gallery_metrics,
    gallery_ranks,
    score_gallery,
)
from kaleido_tf.evaluation.karpathy_split import coco_folds, read_karpathy_split
from tests.conftest import TINY_MODEL

# 3 captions x 3 images, caption i belongs to image i.
SCORES_3X3 = np.array(
    [
        [0.9, 0.1, 0.3],
        [0.2, 0.5, 0.8],
        [0.4, 0.6, 0.7],
    ]
)


def test_three_by_three_ranks_by_hand():
    t2i, i2t = gallery_ranks(SCORES_3X3, [0, 1, 2])
    # Caption 0: 0.9 is its row's best. Caption 1: 0.8 (image 2) beats its 0.5.
    # Caption 2: 0.7 is its row's best.
    np.testing.assert_array_equal(t2i, [1, 2, 1])
    # Image 0: caption 0 (0.9) is the column's best. Image 1: caption 2 (0.6)
    # beats caption 1 (0.5). Image 2: caption 1 (0.8) beats caption 2 (0.7).
    np.testing.assert_array_equal(i2t, [1, 2, 2])
    m = gallery_metrics(SCORES_3X3, [0, 1, 2], ks=(1, 2, 3))
    assert m["text_to_image"]["rank@1"] == pytest.approx(2 / 3)
    assert m["text_to_image"]["rank@2"] == 1.0
    assert m["image_to_text"]["rank@1"] == pytest.approx(1 / 3)
    assert m["image_to_text"]["rank@2"] == 1.0
    assert m["text_to_image"]["mean_rank"] == pytest.approx(4 / 3)
    assert m["rsum"] == pytest.approx(100 * (2 / 3 + 1 + 1 + 1 / 3 + 1 + 1))


def test_two_captions_per_image_by_hand():
    scores = np.array(
        [
            [0.1, 0.9],  # image 0's caption, ranks it 2nd
            [0.8, 0.2],  # image 0's caption, ranks it 1st
            [0.7, 0.3],  # image 1's caption, ranks it 2nd
            [0.6, 0.5],  # image 1's caption, ranks it 2nd
        ]
    )
    t2i, i2t = gallery_ranks(scores, [0, 0, 1, 1])
    np.testing.assert_array_equal(t2i, [2, 1, 2, 2])
    # Image 0: its best caption (0.8) tops the column -> 1. Image 1: its best
    # caption (0.5) is beaten only by caption 0 (0.9) -> 2 (its other caption,
    # 0.3, does not count: only the best-ranked own caption does).
    np.testing.assert_array_equal(i2t, [1, 2])
    m = gallery_metrics(scores, [0, 0, 1, 1], ks=(1,))
    assert m["text_to_image"]["rank@1"] == 0.25
    assert m["image_to_text"]["rank@1"] == 0.5


def test_ties_count_against_the_model():
    t2i, i2t = gallery_ranks(np.ones([2, 2]), [0, 1])
    np.testing.assert_array_equal(t2i, [2, 2])
    np.testing.assert_array_equal(i2t, [2, 2])


def test_an_image_without_caption_is_refused():
    with pytest.raises(ValueError, match="no caption"):
        gallery_ranks(np.zeros([2, 3]), [0, 1])


def test_streamed_scores_and_folds_equal_slices_of_the_matrix():
    rng = np.random.default_rng(0)
    n_i = 6
    caption_image = np.repeat(np.arange(n_i), 2)
    full = rng.normal(size=[len(caption_image), n_i]).astype(np.float32)
    calls = []

    def score_pairs(c, i):
        calls.append(len(c))
        return full[c, i]

    got = score_gallery(score_pairs, np.arange(12), np.arange(n_i), batch_size=5)
    np.testing.assert_array_equal(got, full)
    assert max(calls) == 5 and sum(calls) == full.size
    # Two folds of 3 images: each scored on its own sub-gallery.
    calls.clear()
    folds = [range(0, 3), range(3, 6)]
    out = evaluate_gallery(score_pairs, caption_image, folds, batch_size=4)
    assert sum(calls) == 2 * 6 * 3  # only within-fold pairs
    per = [
        gallery_metrics(full[0:6, 0:3], caption_image[0:6]),
        gallery_metrics(full[6:12, 3:6], caption_image[6:12] - 3),
    ]
    assert out["per_fold"] == per
    for d in ("text_to_image", "image_to_text"):
        for k in (1, 5, 10):
            expected = (per[0][d][f"rank@{k}"] + per[1][d][f"rank@{k}"]) / 2
            assert out[d][f"rank@{k}"] == pytest.approx(expected)
    whole = evaluate_gallery(score_pairs, caption_image)
    assert whole == gallery_metrics(full, caption_image)


def test_karpathy_split_and_coco_folds(tmp_path):
    images = [
        {
            "filename": f"COCO_val2014_{i:012d}.jpg",
            "imgid": i,
            "cocoid": 100 + i,
            "split": "test" if i % 2 else "restval",
            "sentences": [
                {"raw": f"caption {i} {j}", "tokens": [], "sentid": j} for j in range(2)
            ],
        }
        for i in range(6)
    ]
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    test = read_karpathy_split(path, "test")
    assert [im.key for im in test] == [f"COCO_val2014_{i:012d}" for i in (1, 3, 5)]
    assert test[0].alternate_keys == ("101", "1")
    assert test[2].captions == ("caption 5 0", "caption 5 1")
    assert len(read_karpathy_split(path, "restval")) == 3
    with pytest.raises(DataError, match="no images"):
        read_karpathy_split(path, "val")
    assert coco_folds(5000) == [range(k * 1000, (k + 1) * 1000) for k in range(5)]
    with pytest.raises(DataError, match="--folds 1"):
        coco_folds(4999)


def tiny_itm_model(patch_dim=8):
    config = kaleido_tf.load_config(
        "kaleido_bert/finetune_retrieval",
        [
            *TINY_MODEL,
            f"model.patch_feature_dim={patch_dim}",
            "model.encoder.vocab_size=31",
        ],
    )
    return config, kaleido_tf.build_model(config)


def test_cached_scores_equal_direct_model_calls():
    config, model = tiny_itm_model()
    for w in model.heads["itm"].weights:  # a sharper head: score gaps well above 1e-5
        w.assign(w * 100.0)
    rng = np.random.default_rng(1)
    n_c, n_i, t, p = 5, 3, 7, 55
    ids = rng.integers(5, 31, size=[n_c, t]).astype(np.int32)
    lengths = np.array([7, 3, 5, 2, 6])
    mask = (np.arange(t)[None] < lengths[:, None]).astype(np.int32)
    ids = ids * mask
    features = rng.normal(size=[n_i, p, 8]).astype(np.float32)
    boxes = rng.uniform(size=[n_i, p, 5]).astype(np.float32)
    patch_mask = np.ones([n_i, p], np.int32)
    patch_mask[1, 40:] = 0  # a padded visual sequence, as a region record has
    scorer = CrossEncoderScorer(
        model, ids, mask, features, boxes, patch_mask, embed_batch_size=2
    )
    got = score_gallery(scorer, np.arange(n_c), np.arange(n_i), batch_size=4)
    c, i = np.divmod(np.arange(n_c * n_i), n_i)
    batch = {
        "input_ids": tf.constant(ids[c]),
        "input_mask": tf.constant(mask[c]),
        "segment_ids": tf.zeros([len(c), t], tf.int32),
        "patch_features": tf.constant(features[i]),
        "patch_boxes": tf.constant(boxes[i]),
        "patch_mask": tf.constant(patch_mask[i]),
    }
    for key, value in kaleido_tf.dummy_batch(config, batch_size=1).items():
        batch.setdefault(key, tf.zeros([len(c), *value.shape[1:]], value.dtype))
    logits = model(batch, training=False)["itm_logits"].numpy()
    expected = (logits[:, 1] - logits[:, 0]).reshape(n_c, n_i)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.ptp(got) > 1e-3  # the pairs differ
    # The mask reaches the model: changing a masked-out token changes nothing,
    # changing a real one does.
    features[1, 40:] = rng.normal(size=[p - 40, 8])
    again = CrossEncoderScorer(model, ids, mask, features, boxes, patch_mask)
    assert np.abs(again(c, i) - got.reshape(-1)).max() < 1e-6
    features[1, :40] = rng.normal(size=[40, 8])
    moved = CrossEncoderScorer(model, ids, mask, features, boxes, patch_mask)
    assert np.abs(moved(c, i) - got.reshape(-1))[i == 1].min() > 1e-5
