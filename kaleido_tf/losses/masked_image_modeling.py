"""MIM-kl and MIM-fr at the fused image [CLS] (CommerceMM §3.2).

Both are computed from one image-masked pass (50 % of the patches greyed in pixel
space, ``inputs/patch_greying.py``; intact text) and predict, at the fusion encoder's
output at ``v_cls``, a teacher's view of the **intact** image, precomputed offline:

- MIM-kl: ``D_KL(c(v) ‖ ψ(v_cls))``, with ``c(v)`` the ClusterFit soft cluster
  assignment (or its k-means substitute, spec §4.2) and ``ψ`` softmax over clusters;
- MIM-fr: ``‖φ(v_cls) − r(v)‖²₂`` averaged over the D dimensions (MSE), with ``r(v)``
  GrokNet's pool5 feature (or a frozen CNN's pool5 substitute), raw, un-normalised.

One value per example (only the [CLS] is recovered, not every masked patch).

Reference: CommerceMM §3.2 (MIM, the L_MIM-kl and L_MIM-fr equations); spec §4.3
(heads table: MIM-fr is squared L2 / MSE), §4.4 (MIM details, [D] MSE averaged over
dimensions on raw teacher features; the printed ‖D_KL‖ norm is a no-op).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


def mim_kl(teacher_probabilities: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """``KL(c(v) ‖ softmax(logits))`` over the clusters, per example.

    Args:
        teacher_probabilities: float [..., C]; the teacher's soft cluster
            assignment ``c(v)`` of the intact image; each row sums to 1. Zero
            entries contribute 0 (``0 log 0 = 0``).
        logits: float [..., C]; the MIM-kl head ``ψ`` at the fused ``v_cls``,
            before softmax.

    Returns:
        float32 [...]; ``Σ_c p_c (log p_c − log_softmax(logits)_c)``.

    Reference: CommerceMM §3.2, L_MIM-kl.
    """
    p = tf.cast(teacher_probabilities, tf.float32)
    log_q = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    return tf.reduce_sum(tf.math.xlogy(p, p) - p * log_q, axis=-1)


def mim_feature_regression(
    teacher_features: tf.Tensor, predictions: tf.Tensor
) -> tf.Tensor:
    """Squared L2 distance to the teacher's pooled feature, averaged over D (MSE).

    Args:
        teacher_features: float [..., D]; ``r(v)``, the teacher's pool5 feature of
            the intact image, un-normalised.
        predictions: float [..., D]; the MIM-fr head ``φ`` at the fused ``v_cls``.

    Returns:
        float32 [...]; ``mean_d (φ_d − r_d)²``.

    Reference: CommerceMM §3.2, L_MIM-fr (``‖φ − r‖²₂``); spec §4.4 [D] (averaged
    over dimensions).

    Deviation: the paper's sum over D is averaged instead (spec §4.4 [D]), which
    only rescales the loss by 1/D (equivalently its weight).
    """
    diff = tf.cast(predictions, tf.float32) - tf.cast(teacher_features, tf.float32)
    return tf.reduce_mean(tf.square(diff), axis=-1)


def _weights(batch: dict, values: tf.Tensor, weight_key: str | None) -> tf.Tensor:
    if weight_key is None:
        return tf.ones_like(values)
    return tf.cast(batch[weight_key], tf.float32)


def mim_kl_loss_term(
    logits_key: str = "mim_kl_logits",
    target_key: str = "mim_cluster_probabilities",
    weight_key: str | None = None,
) -> Callable[[dict, dict], tuple[tf.Tensor, tf.Tensor]]:
    """The MIM-kl ``LossTerm``.

    Args:
        logits_key: Model output float [B, C]; the MIM-kl head at fused ``v_cls``.
        target_key: Batch key float [B, C]; ``c(v)`` of the intact image.
        weight_key: Optional batch key float [B]; 1 = the example has a real
            image. None: every example counts.

    Returns:
        ``(batch, outputs) -> (values [B], weights [B])``.
    """

    def term(batch: dict, outputs: dict) -> tuple[tf.Tensor, tf.Tensor]:
        values = mim_kl(batch[target_key], outputs[logits_key])
        return values, _weights(batch, values, weight_key)

    return term


def mim_fr_loss_term(
    predictions_key: str = "mim_fr_predictions",
    target_key: str = "mim_teacher_features",
    weight_key: str | None = None,
) -> Callable[[dict, dict], tuple[tf.Tensor, tf.Tensor]]:
    """The MIM-fr ``LossTerm``.

    Args:
        predictions_key: Model output float [B, D]; the MIM-fr head at fused
            ``v_cls``.
        target_key: Batch key float [B, D]; ``r(v)`` of the intact image.
        weight_key: Optional batch key float [B]; 1 = the example has a real
            image. None: every example counts.

    Returns:
        ``(batch, outputs) -> (values [B], weights [B])``.
    """

    def term(batch: dict, outputs: dict) -> tuple[tf.Tensor, tf.Tensor]:
        values = mim_feature_regression(batch[target_key], outputs[predictions_key])
        return values, _weights(batch, values, weight_key)

    return term
