"""MIM-kl and MIM-fr against numpy."""

import numpy as np
import tensorflow as tf

from kaleido_tf.losses.masked_image_modeling import (
    mim_feature_regression,
    mim_fr_loss_term,
    mim_kl,
    mim_kl_loss_term,
)
from kaleido_tf.losses.reduction import weighted_mean


def test_mim_kl_is_kl_teacher_to_prediction():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(11), size=3)
    p[1, [2, 5]] = 0.0  # zero-probability clusters: 0 log 0 = 0
    p[1] /= p[1].sum()
    logits = rng.normal(size=(3, 11)) * 2
    q = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = np.array(
        [sum(pc * np.log(pc / qc) for pc, qc in zip(pr, qr) if pc > 0)
         for pr, qr in zip(p, q)]
    )  # fmt: skip
    got = mim_kl(tf.constant(p, tf.float32), tf.constant(logits, tf.float32))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(got.numpy()))
    # Zero when the prediction is the teacher's distribution.
    same = mim_kl(tf.constant(p[:1], tf.float32), tf.constant(np.log(p[:1] + 0.0)))
    np.testing.assert_allclose(same.numpy(), [0.0], atol=1e-6)


def test_mim_kl_gradient_is_softmax_minus_teacher():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(5), size=2).astype(np.float32)
    logits = tf.Variable(rng.normal(size=(2, 5)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(mim_kl(p, logits))
    q = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(tape.gradient(loss, logits).numpy(), q - p, atol=1e-6)


def test_mim_fr_is_mean_squared_error_over_dimensions():
    rng = np.random.default_rng(2)
    target = rng.normal(size=(4, 9)) * 10  # raw, un-normalised teacher features
    pred = rng.normal(size=(4, 9))
    expected = ((pred - target) ** 2).sum(-1) / 9
    got = mim_feature_regression(tf.constant(target), tf.constant(pred))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_loss_terms_read_batch_and_outputs():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(6), size=3).astype(np.float32)
    logits = rng.normal(size=(3, 6)).astype(np.float32)
    feats = rng.normal(size=(3, 4)).astype(np.float32)
    pred = rng.normal(size=(3, 4)).astype(np.float32)
    batch = {
        "mim_cluster_probabilities": tf.constant(p),
        "mim_teacher_features": tf.constant(feats),
        "image_present": tf.constant([1.0, 0.0, 1.0]),
    }
    outputs = {
        "mim_kl_logits": tf.constant(logits),
        "mim_fr_predictions": tf.constant(pred),
    }
    values, weights = mim_kl_loss_term()(batch, outputs)
    np.testing.assert_array_equal(weights.numpy(), [1, 1, 1])
    np.testing.assert_allclose(values.numpy(), mim_kl(p, logits).numpy())
    values, weights = mim_fr_loss_term(weight_key="image_present")(batch, outputs)
    np.testing.assert_array_equal(weights.numpy(), [1, 0, 1])
    share, _ = weighted_mean(values, weights)
    per_example = ((pred - feats) ** 2).mean(-1)
    np.testing.assert_allclose(
        float(share), (per_example[0] + per_example[2]) / 2, rtol=1e-5
    )
