"""region_values against an independent numpy restatement of §2.2."""

import numpy as np
import pytest

from data_prep.regions.region_records import Detections, region_values
from kaleido_tf.errors import DataError
from kaleido_tf.schema import RegionLayout, region_fields

R, D, C = 5, 8, 6
W, H = 40, 30


def detections(n=7, background=True, classes=False, seed=0):
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(-5, 30, n)
    y1 = rng.uniform(-5, 25, n)
    boxes = np.stack(
        [x1, y1, x1 + rng.uniform(0, 20, n), y1 + rng.uniform(0, 15, n)], 1
    )
    scores = np.array([0.3, 0.9, 0.5, 0.9, 0.1, 0.7, 0.5][:n], np.float32)
    probs = rng.dirichlet(np.ones(C + int(background)), n).astype(np.float32)
    return Detections(
        boxes=boxes.astype(np.float32),
        scores=scores,
        features=rng.normal(size=(n, D)).astype(np.float32),
        image_width=W,
        image_height=H,
        class_probs=probs,
        classes=rng.integers(0, C, n) if classes else None,
    )


def expected(det, background):
    """The same values, written out row by row."""
    order = sorted(range(det.num_boxes), key=lambda i: (-float(det.scores[i]), i))[:R]
    rows = []
    for i in order:
        x1, y1, x2, y2 = (float(v) for v in det.boxes[i])
        x1, x2 = min(max(x1, 0), W), min(max(x2, 0), W)
        y1, y2 = min(max(y1, 0), H), min(max(y2, 0), H)
        probs = det.class_probs[i][1:] if background else det.class_probs[i]
        label = (
            int(det.classes[i]) if det.classes is not None else int(np.argmax(probs))
        )
        rows.append(
            {
                "box": [x1, y1, x2, y2],
                "loc": [
                    x1 / W,
                    y1 / H,
                    x2 / W,
                    y2 / H,
                    (x2 - x1) * (y2 - y1) / (W * H),
                ],
                "feat": det.features[i],
                "score": det.scores[i],
                "cls": label,
                "dist": probs / probs.sum(),
            }
        )
    return rows


@pytest.mark.parametrize("background", [True, False])
@pytest.mark.parametrize("given_classes", [False, True])
def test_top_r_clip_locations_labels_padding(background, given_classes):
    det = detections(background=background, classes=given_classes)
    layout = RegionLayout("test5", R)
    out = region_values(det, layout, D, C, class_distribution=True)
    fields = region_fields(layout, D, C, class_distribution=True)
    assert set(out) == set(fields)
    for key, spec in fields.items():
        assert np.shape(out[key]) == spec.shape, key
    rows = expected(det, background)
    # Scores 0.9 (rows 1, 3), 0.7 (5), 0.5 (2, 6): ties keep source order.
    np.testing.assert_array_equal(
        out["region_scores"], np.float32([0.9, 0.9, 0.7, 0.5, 0.5])
    )
    assert int(out["num_regions"]) == R
    assert out["image_size"].tolist() == [W, H]
    for k, row in enumerate(rows):
        np.testing.assert_allclose(out["region_boxes"][k], row["box"], rtol=1e-6)
        np.testing.assert_allclose(out["region_locations"][k], row["loc"], rtol=1e-5)
        np.testing.assert_array_equal(out["region_features"][k], row["feat"])
        assert out["region_classes"][k] == row["cls"]
        np.testing.assert_allclose(out["region_class_probs"][k], row["dist"], rtol=1e-5)
    assert (out["region_boxes"] >= 0).all() and (
        out["region_boxes"][:, 0::2] <= W
    ).all()


def test_fewer_regions_than_r_are_padded():
    det = detections(n=3)
    out = region_values(det, RegionLayout("test5", R), D, C, class_distribution=False)
    assert int(out["num_regions"]) == 3
    assert out["region_classes"].tolist()[3:] == [-1, -1]
    for key in ("region_boxes", "region_locations", "region_features", "region_scores"):
        assert not out[key][3:].any(), key
    assert "region_class_probs" not in out


def test_no_regions_gives_an_all_padding_record():
    det = Detections(
        np.zeros((0, 4)), np.zeros(0), np.zeros((0, D)), W, H, classes=np.zeros(0, int)
    )
    out = region_values(det, RegionLayout("test5", R), D, C, class_distribution=False)
    assert int(out["num_regions"]) == 0 and (out["region_classes"] == -1).all()


def test_bad_inputs_are_refused():
    layout = RegionLayout("test5", R)
    det = detections()
    with pytest.raises(DataError, match="features have shape"):
        region_values(det, layout, D + 1, C, False)
    with pytest.raises(DataError, match="class scores have shape"):
        region_values(det, layout, D, C + 3, False)
    bad = Detections(
        det.boxes, det.scores, det.features * np.nan, W, H, det.class_probs
    )
    with pytest.raises(DataError, match="NaN"):
        region_values(bad, layout, D, C, False)
    flipped = Detections(
        det.boxes[:, [2, 1, 0, 3]], det.scores, det.features, W, H, det.class_probs
    )
    with pytest.raises(DataError, match="x2 < x1"):
        region_values(flipped, layout, D, C, False)
    labels = Detections(
        det.boxes, det.scores, det.features, W, H, classes=np.full(7, C)
    )
    with pytest.raises(DataError, match="class ids"):
        region_values(labels, layout, D, C, False)
    with pytest.raises(DataError, match="no class scores"):
        region_values(labels.select(np.arange(0)), layout, D, C, True)
