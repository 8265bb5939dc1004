"""RegionOverlapMasker (MRM): IoU groups against numpy, zeroing, target slots."""

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf  # noqa: F401
from kaleido_tf.inputs.region_overlap_masking import RegionOverlapMasker, pairwise_iou

R, D, C = 12, 8, 7


def _iou(a, b):
    """IoU of two (x1, y1, x2, y2) boxes, by hand."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _regions(rng, g):
    """Clustered boxes (so that IoU > 0.4 groups exist), 5-D locations, masks."""
    centres = rng.random((g, 3, 2)) * 0.6 + 0.2
    pick = rng.integers(0, 3, (g, R))
    c = np.take_along_axis(centres, pick[..., None].repeat(2, -1), 1)
    c = c + rng.normal(scale=0.04, size=(g, R, 2))
    half = rng.uniform(0.08, 0.2, (g, R, 2))
    lo, hi = np.clip(c - half, 0, 1), np.clip(c + half, 0, 1)
    area = (hi[..., 0] - lo[..., 0]) * (hi[..., 1] - lo[..., 1])
    boxes = np.concatenate([lo, hi, area[..., None]], -1).astype(np.float32)
    count = rng.integers(1, R + 1, g)
    mask = (np.arange(R)[None] < count[:, None]).astype(np.int32)
    boxes *= mask[..., None]  # padding regions are zero, as in region records
    return boxes, mask


def test_pairwise_iou_against_numpy():
    boxes, _ = _regions(np.random.default_rng(0), 4)
    got = pairwise_iou(tf.constant(boxes)).numpy()
    for g in range(4):
        for i in range(R):
            for j in range(R):
                assert abs(got[g, i, j] - _iou(boxes[g, i], boxes[g, j])) < 1e-5


@pytest.mark.parametrize("force", [False, True])
def test_masked_regions_are_exactly_those_overlapping_an_anchor(force):
    rng = np.random.default_rng(1)
    boxes, mask = _regions(rng, 300)
    masker = RegionOverlapMasker(R, force_anchor=force)
    u = rng.random((300, masker.num_uniforms)).astype(np.float32)
    got = masker.select(tf.constant(boxes), tf.constant(mask), tf.constant(u))
    anchors, masked = got["anchors"].numpy(), got["region_masked"].numpy()
    np.testing.assert_array_equal(anchors, (mask == 1) & (u < 0.1) | (anchors & force))
    for g in range(len(boxes)):
        real = np.flatnonzero(mask[g])
        for r in range(R):
            near = [_iou(boxes[g, r], boxes[g, a]) for a in np.flatnonzero(anchors[g])]
            # Every masked region overlaps an anchor (or is one) by IoU > 0.4,
            # and every real region that does is masked.
            expected = r in real and (anchors[g, r] or any(v > 0.4 for v in near))
            assert masked[g, r] == expected, (g, r)
    assert not masked[mask == 0].any() and not anchors[mask == 0].any()
    grew = masked.sum() > anchors.sum()
    assert grew  # the IoU groups mask more than the anchors
    if force:
        assert anchors.any(1).all()
        no_draw = ~((mask == 1) & (u < 0.1)).any(1)
        lowest = np.argmin(np.where(mask == 1, u, 2.0), 1)
        np.testing.assert_array_equal(
            np.flatnonzero(anchors[no_draw].ravel()) % R, lowest[no_draw]
        )
    else:
        assert not anchors.any(1).all()


def test_anchor_rate_is_ten_percent_of_real_regions():
    rng = np.random.default_rng(2)
    boxes, mask = _regions(rng, 2000)
    masker = RegionOverlapMasker(R)
    u = tf.random.stateless_uniform([2000, masker.num_uniforms], (3, 4))
    anchors = masker.select(tf.constant(boxes), tf.constant(mask), u)["anchors"]
    rate = anchors.numpy().sum() / mask.sum()
    assert abs(rate - 0.1) < 0.01


def test_apply_zeroes_features_and_lists_targets():
    rng = np.random.default_rng(3)
    boxes, mask = _regions(rng, 50)
    features = rng.normal(size=(50, R, D)).astype(np.float32)
    classes = np.where(mask == 1, rng.integers(0, C, (50, R)), -1).astype(np.int32)
    probs = rng.dirichlet(np.ones(C), (50, R)).astype(np.float32)
    masker = RegionOverlapMasker(R, max_masked_regions=4)
    u = rng.random((50, R)).astype(np.float32) * 0.5  # many anchors: some cap at K
    masked = masker.select(tf.constant(boxes), tf.constant(mask), tf.constant(u))[
        "region_masked"
    ]
    out = masker.apply(
        tf.constant(features), masked, tf.constant(classes), tf.constant(probs)
    )
    masked = masked.numpy()
    np.testing.assert_array_equal(
        out["patch_features"].numpy(), features * ~masked[..., None]
    )
    assert (masked.sum(1) > 4).any()
    for g in range(50):
        positions = np.flatnonzero(masked[g])[:4]
        n = len(positions)
        np.testing.assert_array_equal(out["mrm_positions"].numpy()[g, :n], positions)
        np.testing.assert_array_equal(
            out["mrm_labels"].numpy()[g, :n], classes[g, positions]
        )
        np.testing.assert_allclose(
            out["mrm_label_probs"].numpy()[g, :n], probs[g, positions]
        )
        np.testing.assert_array_equal(out["mrm_weights"].numpy()[g], np.arange(4) < n)
        assert not out["mrm_positions"].numpy()[g, n:].any()
        assert not out["mrm_labels"].numpy()[g, n:].any()
        assert not out["mrm_label_probs"].numpy()[g, n:].any()


def test_runs_in_a_traced_function_with_unknown_batch():
    rng = np.random.default_rng(4)
    boxes, mask = _regions(rng, 5)
    masker = RegionOverlapMasker(R, force_anchor=True)
    u = rng.random((5, R)).astype(np.float32)
    spec = [
        tf.TensorSpec([None, R, 5], tf.float32),
        tf.TensorSpec([None, R], tf.int32),
        tf.TensorSpec([None, R], tf.float32),
    ]
    traced = tf.function(lambda b, m, x: masker.select(b, m, x), input_signature=spec)
    eager = masker.select(tf.constant(boxes), tf.constant(mask), tf.constant(u))
    graph = traced(boxes, mask, u)
    np.testing.assert_array_equal(
        graph["region_masked"].numpy(), eager["region_masked"].numpy()
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="iou_threshold"):
        RegionOverlapMasker(R, iou_threshold=1.5)
    with pytest.raises(ValueError, match="num_regions"):
        RegionOverlapMasker(0)
