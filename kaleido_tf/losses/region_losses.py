"""Losses at masked regions: squared L2 regression (MRFR) and KL to a class
distribution (MOC's soft-label variant)."""

import tensorflow as tf


def squared_l2(
    targets: tf.Tensor, predictions: tf.Tensor, reduction: str = "sum"
) -> tf.Tensor:
    """``||prediction - target||^2`` over the last axis (``reduction="sum"``), or
    its mean over the D features (``"mean"``, UNITER's MRFR).

    Args:
        targets: float [..., D]; the original region features.
        predictions: float [..., D]; the head's regressed features.
        reduction: ``sum`` (the paper's squared L2) or ``mean`` (divided by D).

    Returns:
        float32 [...].

    Reference: ImageBERT §3.3 Task 3 (MRFR; the printed leading minus is a typo,
    imagebert_interbert_commercemm.md §2.4).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    diff = tf.cast(predictions, tf.float32) - tf.cast(targets, tf.float32)
    if reduction == "mean":
        return tf.reduce_mean(tf.square(diff), axis=-1)
    return tf.reduce_sum(tf.square(diff), axis=-1)


def distribution_kl(probs: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """``KL(p || softmax(logits))`` over the class axis.

    Args:
        probs: float [..., C]; the detector's class distribution (renormalised
            here: float16 storage may leave it off 1 by a little).
        logits: float [..., C]; the head's class logits.

    Returns:
        float32 [...]; ``sum_c p_c (log p_c - log q_c)``, 0 where ``p_c = 0``.

    Reference: UNITER (Chen et al. 2020) §3.1 MRC-kl, the KL option of ImageBERT's
    MOC (imagebert_interbert_commercemm.md C6).
    """
    p = tf.maximum(tf.cast(probs, tf.float32), 0.0)
    p = tf.math.divide_no_nan(p, tf.reduce_sum(p, axis=-1, keepdims=True))
    log_q = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    log_p = tf.math.log(tf.where(p > 0, p, 1.0))
    return tf.reduce_sum(p * (log_p - log_q), axis=-1)
