"""Greyed patches for Grey-to-Colour Modeling (Kaleido-BERT §3.5, Task IV; K-Q17)."""

from __future__ import annotations

import numpy as np

BT601 = np.asarray([0.299, 0.587, 0.114], np.float32)


def grey(patches: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma, replicated to three channels.

    Args:
        patches: uint8 [..., 3] RGB.

    Returns:
        uint8 of the same shape: round(0.299 R + 0.587 G + 0.114 B) in every channel.
    """
    luma = np.rint(patches.astype(np.float32) @ BT601)
    luma = np.clip(luma, 0, 255).astype(np.uint8)
    return np.repeat(luma[..., None], 3, axis=-1)
