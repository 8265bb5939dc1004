"""Symmetric InfoNCE, the learned temperature and cross-replica negatives vs numpy."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from kaleido_tf.losses.contrastive import (
    LearnedTemperature,
    itc_loss_term,
    symmetric_info_nce,
)
from kaleido_tf.losses.reduction import weighted_mean
from tests.helpers import run_cpu_script


def np_symmetric_info_nce(text, image, scale):
    """Per-row text->image plus image->text cross-entropy, written with loops."""
    t = text / np.linalg.norm(text, axis=1, keepdims=True)
    v = image / np.linalg.norm(image, axis=1, keepdims=True)
    b = len(t)
    out = np.zeros(b)
    for i in range(b):
        row = [scale * t[i] @ v[j] for j in range(b)]  # text i vs every image
        col = [scale * t[j] @ v[i] for j in range(b)]  # image i vs every text
        out[i] = (np.log(np.sum(np.exp(row))) - row[i]) + (
            np.log(np.sum(np.exp(col))) - col[i]
        )
    return out


def test_symmetric_info_nce_matches_numpy():
    rng = np.random.default_rng(1)
    text = rng.normal(size=(5, 7)).astype(np.float32)
    image = rng.normal(size=(5, 7)).astype(np.float32)
    values, weights = symmetric_info_nce(text, image, tf.constant(3.0))
    np.testing.assert_allclose(
        values.numpy(), np_symmetric_info_nce(text, image, 3.0), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(weights.numpy(), np.ones(5))
    # Swapping the arguments swaps the two directions: the per-row sum is the same.
    swapped, _ = symmetric_info_nce(image, text, tf.constant(3.0))
    np.testing.assert_allclose(swapped.numpy(), values.numpy(), rtol=1e-5)


def test_masked_key_is_no_negative_and_its_row_has_weight_zero():
    rng = np.random.default_rng(2)
    text = rng.normal(size=(4, 6)).astype(np.float32)
    image = rng.normal(size=(4, 6)).astype(np.float32)
    mask = np.array([1, 1, 0, 1], np.float32)
    values, weights = symmetric_info_nce(
        text, image, tf.constant(2.0), second_mask=mask
    )
    keep = [0, 1, 3]
    # Removing image 2 from the batch removes it as a negative; text 2 stays a
    # negative for the images (only the image is missing).
    t = text / np.linalg.norm(text, axis=1, keepdims=True)
    v = image / np.linalg.norm(image, axis=1, keepdims=True)
    s = 2.0 * t @ v.T
    for i in keep:
        row = s[i, keep]
        col = s[:, i]
        expected = (np.log(np.exp(row).sum()) - s[i, i]) + (
            np.log(np.exp(col).sum()) - s[i, i]
        )
        np.testing.assert_allclose(values.numpy()[i], expected, rtol=1e-5)
    np.testing.assert_array_equal(weights.numpy(), mask)
    assert values.numpy()[2] == 0.0


def test_learned_temperature_init_clip_and_gradient():
    layer = LearnedTemperature()
    np.testing.assert_allclose(float(layer(tf.constant(1.0))), 1 / 0.07, rtol=1e-6)
    assert [w.name.split("/")[-1] for w in layer.weights] == [
        "log_inverse_temperature:0"
    ]
    rng = np.random.default_rng(3)
    text = rng.normal(size=(4, 5)).astype(np.float32)
    image = rng.normal(size=(4, 5)).astype(np.float32)
    with tf.GradientTape() as tape:
        values, weights = symmetric_info_nce(text, image, layer(tf.constant(1.0)))
        loss, _ = weighted_mean(values, weights)
    (grad,) = tape.gradient(loss, layer.trainable_weights)
    # Central difference in log(1/τ) on the numpy reference.
    log_scale, eps = math.log(1 / 0.07), 1e-3

    def np_loss(x):
        return np_symmetric_info_nce(text, image, math.exp(x)).mean()

    expected = (np_loss(log_scale + eps) - np_loss(log_scale - eps)) / (2 * eps)
    np.testing.assert_allclose(float(grad), expected, rtol=1e-3)
    assert abs(float(grad)) > 1e-4
    # The forward clips to [1/0.5, 1/0.001]; the optimizer's constraint clamps the
    # variable itself after an update.
    layer.log_inverse_temperature.assign(10.0)
    np.testing.assert_allclose(float(layer(tf.constant(1.0))), 1000.0, rtol=1e-5)
    optimizer = tf_keras.optimizers.SGD(learning_rate=100.0)
    optimizer.apply_gradients([(tf.constant(1.0), layer.log_inverse_temperature)])
    np.testing.assert_allclose(
        layer.log_inverse_temperature.numpy(), math.log(2.0), rtol=1e-6
    )
    config = layer.get_config()
    assert LearnedTemperature.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="initial_temperature"):
        LearnedTemperature(initial_temperature=0.9)


def test_itc_loss_term_reads_the_model_outputs():
    rng = np.random.default_rng(4)
    outputs = {
        "text_embedding": tf.constant(rng.normal(size=(3, 4)), tf.float32),
        "image_embedding": tf.constant(rng.normal(size=(3, 4)), tf.float32),
        "contrastive_scale": tf.constant(5.0),
    }
    values, weights = itc_loss_term()({}, outputs)
    expected = np_symmetric_info_nce(
        outputs["text_embedding"].numpy(), outputs["image_embedding"].numpy(), 5.0
    )
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-5)
    assert weights.shape == (3,)


SCRIPT = r"""
import os
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import kaleido_tf
import tf_keras
from kaleido_tf.losses.contrastive import LearnedTemperature, itc_loss_term
from kaleido_tf.losses.reduction import weighted_mean
from kaleido_tf.systems.base import Objectives
from kaleido_tf.training.trainer import global_loss_and_gradients
from tests.kaleido_tf.losses.test_contrastive import np_symmetric_info_nce


class Tiny(tf_keras.Model):
    def __init__(self):
        super().__init__()
        self.text = tf_keras.layers.Dense(5, name="text_projection")
        self.image = tf_keras.layers.Dense(5, name="image_projection")
        self.temperature = LearnedTemperature(initial_temperature=0.2, name="tau")

    def call(self, batch, training=None):
        return {
            "text_embedding": self.text(batch["text_features"]),
            "image_embedding": self.image(batch["image_features"]),
            "contrastive_scale": self.temperature(tf.constant(1.0)),
        }


rng = np.random.default_rng(7)
batch = {
    "text_features": tf.constant(rng.normal(size=(6, 4)), tf.float32),
    "image_features": tf.constant(rng.normal(size=(6, 3)), tf.float32),
}
objectives = Objectives(losses={"itc": itc_loss_term()}, weights={"itc": 1.0},
                        accuracies={})
# Reference: one device, no strategy (the plain tape, global_sum is the identity).
model = Tiny()
model(batch)
with tf.GradientTape() as tape:
    outputs = model(batch)
    total = tf.add_n([weighted_mean(*term(batch, outputs))[0]
                      for term in objectives.losses.values()])
results = [(float(total),
            [g.numpy() for g in tape.gradient(total, model.trainable_variables)])]
weights = model.get_weights()
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    replicated = Tiny()
    replicated(batch)
replicated.set_weights(weights)
total, grads = global_loss_and_gradients(strategy, replicated, objectives, batch)
results.append((float(total), [g.numpy() for g in grads]))
out = model(batch)
expected = np_symmetric_info_nce(out["text_embedding"].numpy(),
                                 out["image_embedding"].numpy(), 5.0).mean()
(t1, g1), (t2, g2) = results
print("totals", t1, t2, expected)
assert abs(t1 - expected) <= 1e-5 * abs(expected), (t1, expected)
assert abs(t2 - expected) <= 1e-5 * abs(expected), (t2, expected)
worst = max(float(np.max(np.abs(a - b))) for a, b in zip(g1, g2))
scale = min(float(np.max(np.abs(a))) for a in g1)
print("max gradient difference", worst, "smallest gradient", scale)
assert scale > 0 and worst <= 1e-5, worst
print("OK")
"""


@pytest.mark.multi_device
def test_two_replicas_give_the_single_device_loss_and_gradients():
    run_cpu_script(SCRIPT)
