"""CommerceMMModel under MirroredStrategy: 1 and 2 replicas, same global batch and
seed, give the same image-text losses and gradients (global ITC negatives, ITM
negatives drawn from and fused with the all-gathered global batch)."""

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
from kaleido_tf.losses.reduction import weighted_mean
from kaleido_tf.systems import commerce_mm
from kaleido_tf.training.trainer import global_loss_and_gradients

B, T, V, S = 4, 6, 31, 64
config = kaleido_tf.load_config("commerce_mm/demo", [
    f"model.encoder.vocab_size={V}", "model.encoder.hidden_size=16",
    "model.encoder.num_layers=2", "model.encoder.inner_dim=24",
    "model.encoder.max_sequence_length=8", "commerce_mm.num_text_layers=1",
    "commerce_mm.projection_dim=8", "commerce_mm.max_masked_tokens=2",
    "commerce_mm.teacher_feature_dim=6", "commerce_mm.num_clusters=5",
    # A one-block ViT: cheaper than a ResNet to run on two eager replicas.
    "commerce_mm.image_backbone=vit", "commerce_mm.vit_hidden_size=16",
    "commerce_mm.vit_num_layers=1", "commerce_mm.vit_num_heads=2",
    "commerce_mm.vit_mlp_dim=16", "commerce_mm.vit_patch_size=32"])
SEED = tf.constant([5, 9])


class Seeded:
    # The trainer's global_loss_and_gradients with the step's ITM seed.
    def __init__(self, model):
        self.model = model

    @property
    def trainable_variables(self):
        return self.model.trainable_variables

    def __call__(self, batch, training=None):
        return self.model(batch, training=training, seed=SEED)


rng = np.random.default_rng(1)
clusters = rng.uniform(size=(B, 5))
image_text = {
    "input_ids": rng.integers(1, V, (B, T)).astype(np.int32),
    "input_mask": np.ones((B, T), np.int32),
    "pixels": rng.uniform(0, 255, (B, S, S, 3)).astype(np.float32),
    "masked_input_ids": rng.integers(1, V, (B, T)).astype(np.int32),
    "masked_lm_positions": np.array([[1, 2]] * B, np.int32),
    "masked_lm_ids": rng.integers(1, V, (B, 2)).astype(np.int32),
    "masked_lm_weights": np.array([[1, 1], [1, 0], [1, 1], [0, 1]], np.float32),
    "greyed_pixels": rng.uniform(0, 255, (B, S, S, 3)).astype(np.float32),
    "teacher_features": rng.normal(size=(B, 6)).astype(np.float32),
    "teacher_clusters": (clusters / clusters.sum(-1, keepdims=True)).astype(np.float32),
}
image_text["input_mask"][2, 4:] = 0
model = kaleido_tf.build_model(config)
weights = model.get_weights()
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    replicated = kaleido_tf.build_model(config)
replicated.set_weights(weights)

# The Omni terms use the same gathers (tests/kaleido_tf/losses/test_omni_retrieval.py).
for name, batch, objectives in [
    ("image_text", image_text, commerce_mm.objectives(config)),
]:
    batch = {k: tf.constant(v) for k, v in batch.items()}
    with tf.GradientTape() as tape:
        out = model(batch, training=False, seed=SEED)
        shares = {k: weighted_mean(*t(batch, out))[0]
                  for k, t in objectives.losses.items()}
        total, _ = objectives.total(shares)
    g1 = [None if g is None else tf.convert_to_tensor(g).numpy()
          for g in tape.gradient(total, model.trainable_variables)]
    t2, g2 = global_loss_and_gradients(strategy, Seeded(replicated), objectives, batch)
    print(name, float(total), float(t2))
    assert abs(float(total) - float(t2)) <= 1e-5 * abs(float(total)), name
    worst, largest = 0.0, 0.0
    for a, b in zip(g1, g2):
        if a is None:
            assert not np.any(b.numpy()), name
            continue
        worst = max(worst, float(np.max(np.abs(a - b.numpy()))))
        largest = max(largest, float(np.max(np.abs(a))))
    print(name, "max gradient difference", worst, "largest gradient", largest)
    assert largest > 0 and worst <= 1e-5 * max(1.0, largest) * 10, (name, worst)
print("OK")
"""


@pytest.mark.multi_device
def test_two_replicas_give_the_single_device_loss_and_gradients():
    run_cpu_script(SCRIPT)
