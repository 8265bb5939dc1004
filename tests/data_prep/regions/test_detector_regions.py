"""The reference detector and RoIAlign against independent numpy computations."""

import h5py
import numpy as np
import pytest

from data_prep.regions.detector_regions import DetectorRegionSource, roi_align
from data_prep.regions.reference_detector import export_reference_detector
from data_prep.synthetic.catalog import COLOURS
from kaleido_tf.errors import DataError
from tests.fixtures.fashiongen_h5 import default_products, write_fashiongen_h5

LAYER = "expanded_conv/project/BatchNorm"  # mobilenet_v3_small: 16 channels, stride 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("detector")
    det = export_reference_detector(root / "det", max_detections=12)
    h5 = write_fashiongen_h5(root / "f.h5", default_products()[:3])
    with h5py.File(h5) as f:
        images = f["input_image"][:]
    source = DetectorRegionSource(det, 8, "mobilenet_v3_small", 64, LAYER, roi_size=3)
    return det, images, source


def np_roi_align(fmap, box, k):
    """Detectron2 ROIAlign(aligned=True, sampling_ratio=1), then the mean."""
    h, w, _ = fmap.shape
    y1, x1, y2, x2 = (
        box[0] * h - 0.5,
        box[1] * w - 0.5,
        box[2] * h - 0.5,
        box[3] * w - 0.5,
    )
    out = []
    for i in range(k):
        for j in range(k):
            y = y1 + (i + 0.5) * (y2 - y1) / k
            x = x1 + (j + 0.5) * (x2 - x1) / k
            y, x = min(max(y, 0.0), h - 1.0), min(max(x, 0.0), w - 1.0)
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1_, x1_ = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            ly, lx = y - y0, x - x0
            out.append(
                (1 - ly) * (1 - lx) * fmap[y0, x0]
                + (1 - ly) * lx * fmap[y0, x1_]
                + ly * (1 - lx) * fmap[y1_, x0]
                + ly * lx * fmap[y1_, x1_]
            )
    return np.mean(out, axis=0)


def test_roi_align_matches_numpy():
    rng = np.random.default_rng(0)
    fmap = rng.normal(size=(1, 5, 7, 3)).astype(np.float32)
    boxes = np.float32(
        [
            [0, 0, 1, 1],
            [0.1, 0.2, 0.5, 0.9],
            [0.6, 0.05, 0.62, 0.3],
            [0.3, 0.3, 0.3, 0.3],
        ]
    )
    got = roi_align(fmap, boxes, 4).numpy()
    for b, box in enumerate(boxes):
        np.testing.assert_allclose(got[b], np_roi_align(fmap[0], box, 4), atol=1e-5)


def test_reference_detector_scores_and_classes(setup):
    _, images, source = setup
    names = list(COLOURS)
    palette = np.float32([COLOURS[n] for n in names]) / 255
    assert source.class_names == names and source.num_classes == len(names)
    products = default_products()
    for image, product in ((images[0], products[0]), (images[4], products[2])):
        out = source.detect(image)
        h, w = image.shape[:2]
        img = image.astype(np.float32) / 255
        border = np.concatenate([img[0], img[-1], img[1:-1, 0], img[1:-1, -1]])
        mask = np.abs(img - np.median(border, 0)).max(-1) > 0.08
        nearest = ((img[:, :, None] - palette) ** 2).sum(-1).argmin(-1)
        scores = out["detection_scores"]
        assert len(scores) >= 4 and (np.diff(scores) <= 0).all()
        boxes = np.round(out["detection_boxes"] * [h, w, h, w]).astype(int)
        for (y1, x1, y2, x2), score, cls, multi in zip(
            boxes, scores, out["detection_classes"], out["detection_multiclass_scores"]
        ):
            m = mask[y1:y2, x1:x2]
            assert score == pytest.approx(m.mean(), abs=1e-6)
            counts = np.bincount(nearest[y1:y2, x1:x2][m], minlength=len(names))
            assert int(cls) == counts.argmax() + 1
            np.testing.assert_allclose(
                multi[1:], score * counts / counts.sum(), atol=1e-6
            )
            assert multi.sum() == pytest.approx(1.0, abs=1e-6)
        # NMS: kept boxes overlap by at most the IoU threshold.
        b = out["detection_boxes"]
        for i in range(len(b)):
            for j in range(i):
                iy = max(0, min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]))
                ix = max(0, min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]))
                area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
                inter = iy * ix
                assert inter / (area(b[i]) + area(b[j]) - inter) <= 0.5 + 1e-6
        # The best window lies on the product: its class is the product's colour.
        rgb = np.float32(product["colour"]) / 255
        assert (
            int(out["detection_classes"][0])
            == ((palette - rgb) ** 2).sum(1).argmin() + 1
        )


def test_detections_have_roi_aligned_features(setup):
    _, images, source = setup
    image = images[1]
    det = source(image)
    h, w = image.shape[:2]
    raw = source.detect(image)
    assert det.num_boxes == 8 and det.features.shape == (8, 16)
    np.testing.assert_allclose(det.scores, raw["detection_scores"][:8])
    assert (
        det.classes.tolist() == (raw["detection_classes"][:8] - 1).astype(int).tolist()
    )
    yx = raw["detection_boxes"][:8]
    np.testing.assert_allclose(det.boxes, yx[:, [1, 0, 3, 2]] * [w, h, w, h], rtol=1e-6)
    fmap = source.feature_map(image)[0]
    for k in (0, 5):
        box = det.boxes[k] / [w, h, w, h]
        want = np_roi_align(fmap, box[[1, 0, 3, 2]], 3)
        np.testing.assert_allclose(det.features[k], want, rtol=1e-4, atol=1e-4)
    entry = source.describe()
    assert entry["kind"] == "savedmodel" and len(entry["sha256"]) == 64
    assert (
        entry["backbone"]["output_layer"] == LAYER
        and entry["backbone"]["weights"] is None
    )


def test_not_a_savedmodel(tmp_path):
    with pytest.raises(DataError, match="saved_model.pb"):
        DetectorRegionSource(tmp_path, 8, "mobilenet_v3_small", 64, LAYER)
