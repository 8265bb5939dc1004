"""Foreground crop of the Kaleido Patch Generator (Kaleido-BERT §3.2, K-Q1, K-Q2).

The paper locks the product with a saliency network before splitting it. Fashion-Gen
backgrounds are near-uniform, so the default is training-free (kaleido_fashionbert.md
§4.1): background colour = median of the border pixels; foreground = pixels whose
largest channel difference from it exceeds a threshold; morphological close then open;
small components dropped; bounding box grown by a margin and made square. Any other
segmenter plugs in by implementing ``ForegroundCropper.crop_box``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol

import cv2
import numpy as np


@dataclasses.dataclass(frozen=True)
class CropBox:
    """A square crop of the source image.

    Attributes:
        x1, y1, x2, y2: Pixel bounds, end-exclusive; may lie outside the image,
            where the crop is padded with ``fill``.
        fill: RGB uint8 padding colour (the background colour).
        found_foreground: False when no foreground was found and the full image
            was used.
    """

    x1: int
    y1: int
    x2: int
    y2: int
    fill: tuple[int, int, int]
    found_foreground: bool = True


class ForegroundCropper(Protocol):
    """Anything that proposes the square crop of a product image."""

    name: str

    def crop_box(self, image: np.ndarray) -> CropBox:
        """Returns the crop of ``image`` (uint8 [H, W, 3])."""
        ...


def border_background(image: np.ndarray) -> np.ndarray:
    """Median colour of the one-pixel border, float32 [3] in [0, 1]."""
    border = np.concatenate(
        [image[0], image[-1], image[1:-1, 0], image[1:-1, -1]], axis=0
    ).astype(np.float32)
    return np.median(border, axis=0) / 255.0


def square_box(
    x1: float, y1: float, x2: float, y2: float, margin: float
) -> tuple[int, int, int, int]:
    """Grows a box by ``margin`` of its size per side, then squares it about its centre.

    Returns integer, end-exclusive bounds; the side is the rounded-up longer side.
    """
    w, h = x2 - x1, y2 - y1
    x1, x2 = x1 - margin * w, x2 + margin * w
    y1, y2 = y1 - margin * h, y2 + margin * h
    side = int(math.ceil(max(x2 - x1, y2 - y1) - 1e-9))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    left = int(math.floor(cx - side / 2.0 + 0.5))
    top = int(math.floor(cy - side / 2.0 + 0.5))
    return left, top, left + side, top + side


class FullImageCropper:
    """The whole image, made square (FashionBERT; Kaleido-BERT's no-SOD ablation)."""

    name = "none"

    def crop_box(self, image: np.ndarray) -> CropBox:
        h, w = image.shape[:2]
        fill = tuple(int(round(c * 255)) for c in border_background(image))
        x1, y1, x2, y2 = square_box(0, 0, w, h, 0.0)
        return CropBox(x1, y1, x2, y2, fill, found_foreground=False)


class BackgroundDifferenceCropper:
    """Training-free foreground crop for near-uniform product backgrounds.

    Args:
        threshold: Foreground when max |pixel - background| over channels exceeds
            this (RGB in [0, 1]).
        morph_kernel: Side of the square structuring element (close, then open).
        min_component_fraction: Components below this fraction of the area are
            dropped.
        margin: Fraction of the box size added on every side before squaring.

    Reference: kaleido_fashionbert.md §4.1 [D-SOD]; Kaleido-BERT §3.2.
    Deviation: the paper uses a saliency network (a "UNet-like" segmenter, or
    EGNet); none is public, and this default needs no training labels.
    """

    name = "background_difference"

    def __init__(
        self,
        threshold: float = 0.08,
        morph_kernel: int = 5,
        min_component_fraction: float = 0.01,
        margin: float = 0.04,
    ) -> None:
        self.threshold = threshold
        self.morph_kernel = morph_kernel
        self.min_component_fraction = min_component_fraction
        self.margin = margin

    def foreground_mask(self, image: np.ndarray) -> np.ndarray:
        """Bool [H, W] foreground after morphology and the component filter."""
        background = border_background(image)
        diff = np.abs(image.astype(np.float32) / 255.0 - background).max(axis=-1)
        mask = (diff > self.threshold).astype(np.uint8)
        kernel = np.ones((self.morph_kernel, self.morph_kernel), np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        min_area = self.min_component_fraction * mask.size
        keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]
        return np.isin(labels, keep)

    def crop_box(self, image: np.ndarray) -> CropBox:
        mask = self.foreground_mask(image)
        if not mask.any():
            return FullImageCropper().crop_box(image)
        fill = tuple(int(round(c * 255)) for c in border_background(image))
        ys, xs = np.nonzero(mask)
        x1, y1, x2, y2 = square_box(
            xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, self.margin
        )
        return CropBox(x1, y1, x2, y2, fill, found_foreground=True)


def extract_crop(image: np.ndarray, box: CropBox, output_size: int) -> np.ndarray:
    """Cuts ``box`` out of ``image``, padding outside with ``box.fill``, and resizes.

    Args:
        image: uint8 [H, W, 3].
        box: The square crop (may extend past the image).
        output_size: Side of the returned square.

    Returns:
        uint8 [output_size, output_size, 3]. A box of exactly ``output_size``
        inside the image is returned without resampling.
    """
    h, w = image.shape[:2]
    side = box.x2 - box.x1
    canvas = np.empty((box.y2 - box.y1, side, 3), np.uint8)
    canvas[:] = np.asarray(box.fill, np.uint8)
    sx1, sy1 = max(box.x1, 0), max(box.y1, 0)
    sx2, sy2 = min(box.x2, w), min(box.y2, h)
    if sx2 > sx1 and sy2 > sy1:
        canvas[sy1 - box.y1 : sy2 - box.y1, sx1 - box.x1 : sx2 - box.x1] = image[
            sy1:sy2, sx1:sx2
        ]
    if canvas.shape[0] == output_size and canvas.shape[1] == output_size:
        return canvas
    interpolation = cv2.INTER_AREA if side > output_size else cv2.INTER_LINEAR
    return cv2.resize(canvas, (output_size, output_size), interpolation=interpolation)


def make_cropper(
    method: str,
    threshold: float = 0.08,
    morph_kernel: int = 5,
    min_component_fraction: float = 0.01,
    margin: float = 0.04,
) -> ForegroundCropper:
    """The cropper called ``method`` (``background_difference`` or ``none``)."""
    if method == "none":
        return FullImageCropper()
    if method == "background_difference":
        return BackgroundDifferenceCropper(
            threshold, morph_kernel, min_component_fraction, margin
        )
    raise ValueError(f"unknown crop method {method!r}")
