"""Greying half of the patches in pixel space: counts, untouched pixels, seeds."""

import numpy as np
import pytest
import tensorflow as tf

from kaleido_tf.errors import DataError
from kaleido_tf.inputs.patch_greying import grey_patches


def pixel_mask(mask, rows, cols, patch):
    """[B, rows*cols] patch mask -> [B, H, W] pixel mask, by np.kron."""
    grid = mask.reshape(-1, rows, cols)
    return np.stack([np.kron(g, np.ones((patch, patch))) for g in grid]) > 0


def test_half_the_patches_are_grey_and_the_rest_untouched():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 48, 32, 3), dtype=np.uint8)
    images[images == 128] = 127  # so that a grey pixel can only come from masking
    greyed, mask = grey_patches(images, 8, tf.constant([1, 2]))
    greyed, mask = greyed.numpy(), mask.numpy()
    assert greyed.dtype == np.uint8 and greyed.shape == images.shape
    assert mask.shape == (5, 24)
    np.testing.assert_array_equal(mask.sum(1), np.full(5, 12))  # 50 % of 6x4
    where = pixel_mask(mask, 6, 4, 8)
    np.testing.assert_array_equal(greyed[~where], images[~where])
    assert np.all(greyed[where] == 128)
    assert not np.any(greyed[~where] == 128)


def test_odd_patch_counts_average_to_half_and_every_patch_is_chosen_alike():
    images = np.zeros((600, 28, 28, 3), np.float32)  # a 7x7 grid of 4-px patches
    _, mask = grey_patches(images, 4, tf.constant([5, 6]))
    counts = mask.numpy().sum(1)
    assert set(np.unique(counts)) == {24.0, 25.0}  # "24 or 25 of 49"
    assert abs(counts.mean() - 24.5) < 0.1  # std of the mean ~0.02
    per_patch = mask.numpy().mean(0)
    assert np.all(np.abs(per_patch - 0.5) < 0.1)  # std per patch ~0.02


def test_float_images_get_mid_grey_and_seeds_are_deterministic():
    rng = np.random.default_rng(1)
    image = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    greyed, mask = grey_patches(image, 4, tf.constant([7, 7]))
    assert greyed.shape == (16, 16, 3) and mask.shape == (16,)
    where = pixel_mask(mask.numpy()[None], 4, 4, 4)[0]
    assert np.all(greyed.numpy()[where] == 0.5)
    np.testing.assert_array_equal(greyed.numpy()[~where], image[~where])
    again, mask_again = grey_patches(image, 4, tf.constant([7, 7]))
    np.testing.assert_array_equal(mask_again.numpy(), mask.numpy())
    _, other = grey_patches(image, 4, tf.constant([8, 7]))
    assert not np.array_equal(other.numpy(), mask.numpy())
    custom, _ = grey_patches(image, 4, tf.constant([7, 7]), ratio=1.0, grey=0.25)
    assert np.all(custom.numpy() == 0.25)


def test_bad_sizes_are_refused():
    with pytest.raises(DataError, match="multiple of patch_size"):
        grey_patches(np.zeros((1, 30, 32, 3), np.uint8), 8, tf.constant([0, 0]))
    with pytest.raises(DataError, match=r"\[B, H, W, 3\]"):
        grey_patches(np.zeros((1, 32, 32), np.uint8), 8, tf.constant([0, 0]))
    with pytest.raises(ValueError, match="ratio"):
        grey_patches(np.zeros((1, 32, 32, 3), np.uint8), 8, tf.constant([0, 0]), 1.5)
