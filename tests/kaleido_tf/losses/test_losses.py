"""Losses and the reduction against numpy."""

import numpy as np
import tensorflow as tf

from kaleido_tf.losses.classification import softmax_cross_entropy
from kaleido_tf.losses.patch_kld import feature_kld
from kaleido_tf.losses.reduction import weighted_mean


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_feature_kld_is_kl_target_to_prediction():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(3, 2, 8)) * 3
    pred = rng.normal(size=(3, 2, 8))
    p, q = softmax(target), softmax(pred)
    expected = (p * (np.log(p) - np.log(q))).sum(-1)
    np.testing.assert_allclose(
        feature_kld(target, pred).numpy(), expected, rtol=1e-5, atol=1e-6
    )
    assert np.allclose(feature_kld(target, target).numpy(), 0, atol=1e-6)
    # KL is not symmetric: the argument order matters (spec §8 item 8).
    assert not np.allclose(feature_kld(pred, target).numpy(), expected)


def test_cross_entropy():
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 2])
    expected = -np.log(softmax(logits)[[0, 1], labels])
    np.testing.assert_allclose(
        softmax_cross_entropy(labels, logits).numpy(), expected, rtol=1e-6
    )


def test_weighted_mean_divides_by_the_weight_sum():
    values = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    weights = tf.constant([[1.0, 0.0], [1.0, 1.0]])
    share, total = weighted_mean(values, weights)
    assert float(total) == 3.0
    np.testing.assert_allclose(float(share), (1 + 3 + 4) / 3)
    share, _ = weighted_mean(values, tf.zeros_like(weights))
    assert float(share) == 0.0  # no masked slot anywhere: 0, not NaN
