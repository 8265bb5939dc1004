"""Rotation and greyscale variants."""

import numpy as np
import pytest

from data_prep.pixel_variants.greyscale import grey
from data_prep.pixel_variants.rotations import rotations


def test_rotations_are_counter_clockwise_quarter_turns():
    patch = np.zeros((3, 3, 3), np.uint8)
    patch[0, 2] = 255  # top-right corner
    r = rotations(patch)
    assert r.shape == (3, 3, 3, 3)
    assert r[0][0, 0, 0] == 255  # 90 ccw: top-right -> top-left
    assert r[1][2, 0, 0] == 255  # 180: -> bottom-left
    assert r[2][2, 2, 0] == 255  # 270 ccw: -> bottom-right
    np.testing.assert_array_equal(np.rot90(r[2], 1), patch)  # full turn
    with pytest.raises(ValueError):
        rotations(np.zeros((2, 3, 3), np.uint8))


def test_grey_is_bt601_luma_in_every_channel():
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    g = grey(px)
    r, gg, b = (px[..., i].astype(np.float64) for i in range(3))
    luma = np.clip(np.rint(0.299 * r + 0.587 * gg + 0.114 * b), 0, 255)
    for c in range(3):
        np.testing.assert_array_equal(g[..., c], luma.astype(np.uint8))
    assert grey(np.full((1, 3), 255, np.uint8)).tolist() == [[255, 255, 255]]
