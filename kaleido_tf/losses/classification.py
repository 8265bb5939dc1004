"""Softmax cross-entropy per example (ITM, RR, JPS, CP, category)."""

import tensorflow as tf


def softmax_cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Cross-entropy of integer labels.

    Args:
        labels: int [...]; class indices.
        logits: float [..., C].

    Returns:
        float32 [...]; -log softmax(logits)[label], computed in float32.
    """
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32)
    )
