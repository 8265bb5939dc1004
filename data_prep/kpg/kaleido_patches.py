"""Patch geometry of the Kaleido Patch Generator and of FashionBERT's grid.

Kaleido-BERT §3.2 splits the (cropped) image at scales 1x1 ... 5x5 = 55 patches, each
with the 5-D position ``[x1, x2, y1, y2, w*h]``; FashionBERT §3.1 uses one 8x8 grid.
Both are a tuple of grid sizes (``schema.Layout.grids``), so one generator serves
both layouts.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from kaleido_tf.schema import Layout


def _edge(i: int, n: int, size: int) -> int:
    # round(i * size / n) with halves rounded up (no banker's rounding).
    return int(math.floor(i * size / n + 0.5))


def cell_boxes(grid: int, size: int) -> np.ndarray:
    """Pixel boxes of an ``grid x grid`` split of a ``size x size`` image.

    Cell (r, c) spans x in [round(c*size/n), round((c+1)*size/n)) and likewise y
    (kaleido_fashionbert.md §4.1). Cells are in row-major (raster) order.

    Returns:
        int64 [grid * grid, 4]: x1, y1, x2, y2 (end-exclusive).
    """
    boxes = []
    for r in range(grid):
        for c in range(grid):
            boxes.append(
                (
                    _edge(c, grid, size),
                    _edge(r, grid, size),
                    _edge(c + 1, grid, size),
                    _edge(r + 1, grid, size),
                )
            )
    return np.asarray(boxes, np.int64)


class KaleidoPatchGenerator:
    """Cuts a square crop into the patches of a layout.

    Args:
        layout: ``schema.LAYOUTS["kaleido"]`` or ``["grid8"]``.
        crop_size: Side of the square crop the patches are cut from.
        patch_size: Side each patch is resized to for the backbone.

    Example:
        >>> kpg = KaleidoPatchGenerator(LAYOUTS["kaleido"], 256, 224)
        >>> patches = kpg.patches(crop)        # uint8 [55, 224, 224, 3]
        >>> boxes = kpg.normalised_boxes()     # float32 [55, 5]

    Reference: Kaleido-BERT §3.2; FashionBERT §3.1.
    """

    def __init__(self, layout: Layout, crop_size: int, patch_size: int) -> None:
        self.layout = layout
        self.crop_size = crop_size
        self.patch_size = patch_size
        self.pixel_boxes = np.concatenate(
            [cell_boxes(n, crop_size) for n in layout.grids], axis=0
        )

    def normalised_boxes(self) -> np.ndarray:
        """float32 [P, 5]: ``[x1/W, x2/W, y1/H, y2/H, (w*h)/(W*H)]`` (K-Q5)."""
        b = self.pixel_boxes.astype(np.float64)
        s = float(self.crop_size)
        x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        area = (x2 - x1) * (y2 - y1) / (s * s)
        return np.stack([x1 / s, x2 / s, y1 / s, y2 / s, area], axis=1).astype(
            np.float32
        )

    def patch(self, crop: np.ndarray, index: int) -> np.ndarray:
        """Patch ``index`` of ``crop``, resized to ``patch_size`` (bilinear)."""
        x1, y1, x2, y2 = self.pixel_boxes[index]
        cell = crop[y1:y2, x1:x2]
        if cell.shape[0] == self.patch_size and cell.shape[1] == self.patch_size:
            return np.ascontiguousarray(cell)
        return cv2.resize(
            cell, (self.patch_size, self.patch_size), interpolation=cv2.INTER_LINEAR
        )

    def patches(self, crop: np.ndarray) -> np.ndarray:
        """uint8 [P, patch_size, patch_size, 3]: every patch of ``crop``."""
        if crop.shape[:2] != (self.crop_size, self.crop_size):
            raise ValueError(
                f"crop has shape {crop.shape}, expected ({self.crop_size}, "
                f"{self.crop_size}, 3)"
            )
        return np.stack([self.patch(crop, i) for i in range(len(self.pixel_boxes))])
