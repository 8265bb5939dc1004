"""Self-attention masks from padding masks."""

import tensorflow as tf


def padding_attention_mask(token_mask: tf.Tensor) -> tf.Tensor:
    """Every query may attend to every real key.

    Args:
        token_mask: int [B, L]; 1 = real token or patch, 0 = padding.

    Returns:
        int32 [B, L, L]; entry (b, q, k) is 1 when query q may attend to key k.
    """
    mask = tf.cast(token_mask, tf.int32)
    ones = tf.ones_like(mask)
    return ones[:, :, tf.newaxis] * mask[:, tf.newaxis, :]  # [B, L, L]
