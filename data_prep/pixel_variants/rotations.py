"""Level-1 rotations for Rotation Recognition (Kaleido-BERT §3.5, Task I; K-Q14)."""

from __future__ import annotations

import numpy as np


def rotations(patch: np.ndarray, count: int = 3) -> np.ndarray:
    """The patch rotated counter-clockwise by 90, 180, 270 degrees.

    RR label k (k = 1..3) is the patch rotated by k * 90 degrees; label 0 is the
    unrotated patch, which the record already holds.

    Args:
        patch: uint8 [S, S, 3], a square patch.
        count: How many rotations (3 gives 90, 180, 270).

    Returns:
        uint8 [count, S, S, 3].
    """
    if patch.shape[0] != patch.shape[1]:
        raise ValueError(f"rotations need a square patch, got {patch.shape}")
    return np.stack([np.rot90(patch, k) for k in range(1, count + 1)])
