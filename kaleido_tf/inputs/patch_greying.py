"""Greying half of an image's patches in pixel space (CommerceMM MIM masking).

The image-masked pass of CommerceMM's MIM-kl / MIM-fr replaces 50 % of the patches
of the raw image by grey pixels before the image encoder. A patch is a
``patch_size × patch_size`` square of the grid the encoder sees: 16×16 pixels for
ViT-B/16 (98 of 196 patches at 224), 32×32 blocks aligned to ResNet-50's 7×7 output
grid (24 or 25 of 49). The patches are chosen uniformly at random per image, without
replacement; the count per image is ``floor(ratio·P + u)`` with u ~ U[0, 1), i.e.
``ratio·P`` exactly when that is an integer, else one of its two neighbours with
the probabilities that make the expected count exactly ``ratio·P`` (24 or 25 of 49,
half the time each). The grey is mid-grey of the pixel range, applied before any
normalisation: 128 for uint8 images, 0.5 for float images in [0, 1].

Reference: CommerceMM §3.2 ("a larger masking ratio of 50%", "The masked patches
are replaced with grey pixels"); spec §4.4 [D] (mask granularity, grey value), §4.11 #5.
"""

from __future__ import annotations

import tensorflow as tf

from kaleido_tf.errors import DataError

# Mid-grey of the pixel range (also the placeholder of a missing image, §4.2).
UINT8_GREY = 128
FLOAT_GREY = 0.5


def grey_patches(
    images: tf.Tensor,
    patch_size: int,
    seed: tf.Tensor,
    ratio: float = 0.5,
    grey: float | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Replaces a random ``ratio`` of each image's patches by grey pixels.

    Args:
        images: uint8 or float [B, H, W, 3] (or [H, W, 3]); raw pixels, before
            normalisation. H and W must be multiples of ``patch_size``.
        patch_size: Side of a square patch in pixels (16 for ViT-B/16, 32 for the
            ResNet-50 grid).
        seed: int32/int64 [2]; stateless seed (e.g. per (seed, epoch, example) as
            in ``inputs/pipeline.py``). The same seed and shape give the same mask.
        ratio: Fraction of patches greyed, in [0, 1] (paper: 0.5).
        grey: Pixel value of a greyed patch; None: ``UINT8_GREY`` for uint8 images,
            ``FLOAT_GREY`` otherwise.

    Returns:
        (greyed: same dtype and shape as ``images``; mask: float32 [B, P] (or [P]),
        P = (H / patch_size)·(W / patch_size) in raster order, row-major over the
        patch grid; 1 = greyed, 0 = untouched).

    Raises:
        DataError: The image is not [B, H, W, 3] / [H, W, 3], or H or W is not a
            multiple of ``patch_size``.
        ValueError: ``patch_size`` < 1 or ``ratio`` outside [0, 1].
    """
    if patch_size < 1:
        raise ValueError(f"patch_size must be >= 1, got patch_size={patch_size}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got ratio={ratio}")
    images = tf.convert_to_tensor(images)
    single = images.shape.rank == 3
    if single:
        images = images[tf.newaxis]
    if images.shape.rank != 4 or images.shape[-1] != 3:
        raise DataError(
            f"grey_patches needs images [B, H, W, 3] or [H, W, 3], got shape "
            f"{images.shape}: decode the images to RGB first"
        )
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        raise DataError(
            "grey_patches needs a static image size: resize the images to a fixed "
            "size (e.g. 224x224) before masking"
        )
    if height % patch_size or width % patch_size:
        raise DataError(
            f"image size {height}x{width} is not a multiple of patch_size "
            f"{patch_size}: resize the images (e.g. to 224x224) first"
        )
    if grey is None:
        grey = UINT8_GREY if images.dtype == tf.uint8 else FLOAT_GREY
    rows, cols = height // patch_size, width // patch_size
    patches = rows * cols
    batch = tf.shape(images)[0]

    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    scores = tf.random.stateless_uniform([batch, patches], seed=seeds[0])
    jitter = tf.random.stateless_uniform([batch, 1], seed=seeds[1])
    counts = tf.floor(ratio * patches + jitter)  # [B, 1]
    # Rank of each patch's score in its image: the `count` lowest are greyed.
    order = tf.argsort(scores, axis=1)
    ranks = tf.argsort(order, axis=1)  # [B, P]
    mask = tf.cast(tf.cast(ranks, tf.float32) < counts, tf.float32)

    # [B, rows, cols] -> [B, H, W, 1]
    pixel_mask = tf.reshape(mask, [batch, rows, 1, cols, 1])
    pixel_mask = tf.tile(pixel_mask, [1, 1, patch_size, 1, patch_size])
    pixel_mask = tf.reshape(pixel_mask, [batch, height, width, 1]) > 0
    greyed = tf.where(pixel_mask, tf.cast(grey, images.dtype), images)
    if single:
        return greyed[0], mask[0]
    return greyed, mask
