"""1 vs 2 logical CPU devices under MirroredStrategy: same loss, same gradients."""

import pytest

from tests.helpers import run_cpu_script

SCRIPT = r"""
import os
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import kaleido_tf
from kaleido_tf.systems import kaleido_bert
from kaleido_tf.training.trainer import global_loss_and_gradients
sys_path = None
from tests.kaleido_tf.models.test_vl_model import random_batch, tiny_config

config = tiny_config()
batch = random_batch(config, b=4, t=7, seed=3)
rng = np.random.default_rng(5)
batch.update({
    "masked_lm_ids": tf.constant(rng.integers(1, 31, (4, 10)), tf.int32),
    # uneven masked slots per example: the global denominator matters
    "masked_lm_weights": tf.constant(
        (rng.random((4, 10)) < [[0.9], [0.1], [0.5], [0.2]])
                                     .astype(np.float32)),
    "itm_labels": tf.constant([1, 0, 1, 1], tf.int32),
    "rr_labels": tf.constant([0, 3, 2, 1], tf.int32),
    "jps_labels": tf.constant([5, 0, 23, 7], tf.int32),
    "cp_labels": tf.constant([8, 0, 4, 4], tf.int32),
    "g2cm_targets": tf.constant(rng.normal(size=(4, 2, 8)), tf.float32),
    "g2cm_weights": tf.constant([[1, 1], [1, 0], [0, 0], [1, 1]], tf.float32),
    "b2cm_targets": tf.constant(rng.normal(size=(4, 3, 8)), tf.float32),
    "b2cm_weights": tf.ones([4, 3], tf.float32),
})
results = []
weights = None
for devices in (["/cpu:0"], ["/cpu:0", "/cpu:1"]):
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model = kaleido_tf.build_model(config)
    if weights is None:
        weights = model.get_weights()
    model.set_weights(weights)
    total, grads = global_loss_and_gradients(
        strategy, model, kaleido_bert.objectives(config), batch)
    results.append((float(total), [g.numpy() for g in grads]))
(t1, g1), (t2, g2) = results
print("totals", t1, t2)
assert abs(t1 - t2) <= 1e-5 * max(1.0, abs(t1)), (t1, t2)
worst = max(float(np.max(np.abs(a - b))) for a, b in zip(g1, g2))
scale = max(float(np.max(np.abs(a))) for a in g1)
print("max gradient difference", worst, "of", scale)
assert worst <= 1e-5 * max(1.0, scale), worst
assert scale > 0
print("OK")
"""


@pytest.mark.multi_device
def test_two_devices_give_the_same_loss_and_gradients():
    run_cpu_script(SCRIPT)
