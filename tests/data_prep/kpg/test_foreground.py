"""Foreground crop geometry against independent numpy computations."""

import math

import numpy as np
import pytest

from data_prep.kpg.foreground import (
    BackgroundDifferenceCropper,
    CropBox,
    FullImageCropper,
    extract_crop,
    make_cropper,
)


def image_with_rect(h, w, x1, y1, x2, y2, bg=(240, 240, 236), fg=(180, 20, 30)):
    img = np.empty((h, w, 3), np.uint8)
    img[:] = bg
    img[y1:y2, x1:x2] = fg
    return img


def expected_square(x1, y1, x2, y2, margin):
    # Independent restatement of kaleido_fashionbert.md §4.1 / K-Q2.
    w, h = x2 - x1, y2 - y1
    gx1, gx2 = x1 - margin * w, x2 + margin * w
    gy1, gy2 = y1 - margin * h, y2 + margin * h
    side = math.ceil(max(gx2 - gx1, gy2 - gy1) - 1e-9)
    left = math.floor((gx1 + gx2) / 2 - side / 2 + 0.5)
    top = math.floor((gy1 + gy2) / 2 - side / 2 + 0.5)
    return left, top, left + side, top + side


@pytest.mark.parametrize(
    "rect, margin",
    [
        ((60, 40, 180, 220), 0.04),
        ((10, 100, 250, 140), 0.04),
        ((100, 100, 106, 230), 0.1),
    ],
)
def test_box_is_the_margined_square_around_the_foreground(rect, margin):
    img = image_with_rect(256, 256, *rect)
    cropper = BackgroundDifferenceCropper(margin=margin, morph_kernel=1)
    box = cropper.crop_box(img)
    assert (box.x1, box.y1, box.x2, box.y2) == expected_square(*rect, margin)
    assert box.x2 - box.x1 == box.y2 - box.y1
    assert box.found_foreground
    assert box.fill == (240, 240, 236)


def test_small_components_and_faint_pixels_are_ignored():
    img = image_with_rect(128, 128, 40, 30, 90, 100)
    img[2:5, 2:5] = (0, 0, 0)  # 9 px speck, < 1% of the area
    img[120:126, 10:120] = (235, 235, 231)  # below the 0.08 threshold
    box = BackgroundDifferenceCropper(margin=0.0).crop_box(img)
    assert (box.x1, box.y1, box.x2, box.y2) == expected_square(40, 30, 90, 100, 0.0)


def test_blank_image_falls_back_to_the_full_image():
    img = np.full((64, 48, 3), 250, np.uint8)
    box = BackgroundDifferenceCropper().crop_box(img)
    assert not box.found_foreground
    assert (box.x1, box.y1, box.x2, box.y2) == expected_square(0, 0, 48, 64, 0.0)
    assert make_cropper("none").crop_box(img) == box


def test_extract_crop_pads_with_background_outside_the_image():
    img = np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3)
    box = CropBox(-2, 3, 6, 11, fill=(7, 8, 9))
    crop = extract_crop(img, box, 8)  # side 8: no resampling
    expected = np.empty((8, 8, 3), np.uint8)
    expected[:] = (7, 8, 9)
    expected[0:7, 2:8] = img[3:10, 0:6]
    np.testing.assert_array_equal(crop, expected)


def test_extract_crop_resizes_to_the_output_size():
    img = image_with_rect(256, 256, 64, 64, 192, 192)
    box = CropBox(64, 64, 192, 192, fill=(0, 0, 0))
    crop = extract_crop(img, box, 64)
    assert crop.shape == (64, 64, 3)
    assert (crop == (180, 20, 30)).all()  # only foreground inside the box
    full = FullImageCropper().crop_box(img)
    assert extract_crop(img, full, 256) is not img
    np.testing.assert_array_equal(extract_crop(img, full, 256), img)
