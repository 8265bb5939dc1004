"""Kaleido and grid patch geometry against numpy."""

import cv2
import numpy as np

from data_prep.kpg.kaleido_patches import KaleidoPatchGenerator, cell_boxes
from kaleido_tf.schema import LAYOUTS


def test_kaleido_layout_has_55_patches_tiling_each_level():
    kpg = KaleidoPatchGenerator(LAYOUTS["kaleido"], 256, 224)
    assert kpg.pixel_boxes.shape == (55, 4)
    for n, sl in zip(
        (1, 2, 3, 4, 5),
        (slice(0, 1), slice(1, 5), slice(5, 14), slice(14, 30), slice(30, 55)),
    ):
        assert LAYOUTS["kaleido"].level_slice(n) == sl
        cover = np.zeros((256, 256), np.int32)
        for x1, y1, x2, y2 in kpg.pixel_boxes[sl]:
            cover[y1:y2, x1:x2] += 1
        assert (cover == 1).all(), f"level {n} does not tile the crop exactly once"


def test_cell_edges_are_rounded_fractions():
    boxes = cell_boxes(3, 256)
    # round(256/3) = 85, round(512/3) = 171; raster order, row-major.
    np.testing.assert_array_equal(boxes[1], [85, 0, 171, 85])
    np.testing.assert_array_equal(boxes[5], [171, 85, 256, 171])
    np.testing.assert_array_equal(cell_boxes(8, 256)[9], [32, 32, 64, 64])


def test_normalised_boxes_formula():
    kpg = KaleidoPatchGenerator(LAYOUTS["kaleido"], 200, 32)
    b = kpg.pixel_boxes.astype(np.float64)
    expected = np.stack(
        [
            b[:, 0] / 200,
            b[:, 2] / 200,
            b[:, 1] / 200,
            b[:, 3] / 200,
            (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / 200**2,
        ],
        axis=1,
    )
    np.testing.assert_allclose(kpg.normalised_boxes(), expected, rtol=1e-6)
    assert np.isclose(kpg.normalised_boxes()[0], [0, 1, 0, 1, 1]).all()
    areas = kpg.normalised_boxes()[:, 4]
    for n in range(1, 6):
        assert np.isclose(areas[LAYOUTS["kaleido"].level_slice(n)].sum(), 1.0)


def test_patches_are_resized_cells():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    kpg = KaleidoPatchGenerator(LAYOUTS["grid8"], 64, 32)
    patches = kpg.patches(crop)
    assert patches.shape == (64, 32, 32, 3)
    # Cell 10 of the 8x8 grid is row 1, column 2: pixels [8:16, 16:24].
    np.testing.assert_array_equal(
        patches[10],
        cv2.resize(crop[8:16, 16:24], (32, 32), interpolation=cv2.INTER_LINEAR),
    )
    same = KaleidoPatchGenerator(LAYOUTS["grid8"], 64, 8).patches(crop)
    np.testing.assert_array_equal(same[10], crop[8:16, 16:24])  # no resampling
