"""Gathering hidden states at given positions."""

import tensorflow as tf


def gather_positions(sequence: tf.Tensor, positions: tf.Tensor) -> tf.Tensor:
    """Hidden states at per-example positions.

    Args:
        sequence: float [B, L, H].
        positions: int [B, K]; indices into L.

    Returns:
        float [B, K, H].
    """
    return tf.gather(sequence, tf.cast(positions, tf.int32), batch_dims=1)
