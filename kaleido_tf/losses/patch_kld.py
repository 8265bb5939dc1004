"""KL divergence between softmaxed feature vectors (G2CM, B2CM; FashionBERT MPM)."""

import tensorflow as tf


def feature_kld(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """``KL(softmax(target) || softmax(prediction))`` over the feature dimension.

    Args:
        targets: float [..., D]; the original (colour / unblanked) features.
        logits: float [..., D]; the head's predictions.

    Returns:
        float32 [...]; sum_d p_d (log p_d - log q_d), p = softmax(target),
        q = softmax(prediction).

    Reference: Kaleido-BERT Eq. 6-7; the released ``image_reconstruction_kld_loss``
    (kaleido_fashionbert.md §4.5: KL(target || prediction), softmax over D).
    """
    log_p = tf.nn.log_softmax(tf.cast(targets, tf.float32), axis=-1)
    log_q = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    return tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)
