"""Modality randomization: one K per step on every replica; K ~ U{0..L-1} (§4.7)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf  # noqa: F401
from kaleido_tf.errors import ConfigError
from kaleido_tf.training.modality_randomization import (
    ModalityRandomizationConfig,
    sample_num_text_layers,
)

REPO = Path(__file__).resolve().parents[3]

# Chi-square critical values at p = 0.001 (degrees of freedom -> value).
CHI2_999 = {2: 13.816, 5: 20.515}


def _draws(config, seed, steps, num_layers):
    @tf.function
    def draw(all_steps):
        return tf.map_fn(
            lambda s: config.sample(seed, s, num_layers),
            all_steps,
            fn_output_signature=tf.int32,
        )

    return draw(tf.range(steps, dtype=tf.int64)).numpy()


@pytest.mark.parametrize(
    "config, num_layers, support",
    [
        (ModalityRandomizationConfig(enabled=True), 6, range(0, 6)),  # spec default
        (
            ModalityRandomizationConfig(True, min_text_layers=1, max_text_layers=3),
            6,
            range(1, 4),
        ),
    ],
)
def test_distribution_is_uniform_over_the_configured_range(config, num_layers, support):
    n = 6000
    draws = _draws(config, 11, n, num_layers)
    assert set(draws.tolist()) == set(support)
    counts = np.array([(draws == k).sum() for k in support], np.float64)
    expected = n / len(support)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < CHI2_999[len(support) - 1], (counts, chi2)
    # Successive steps are not correlated: K(step) == K(step + 1) at chance rate.
    repeats = float(np.mean(draws[1:] == draws[:-1]))
    assert abs(repeats - 1 / len(support)) < 0.03


def test_draw_is_a_function_of_seed_and_step():
    config = ModalityRandomizationConfig(enabled=True)
    eager = [int(config.sample(5, step, 6)) for step in range(20)]
    np.testing.assert_array_equal(_draws(config, 5, 20, 6), eager)
    assert _draws(config, 6, 20, 6).tolist() != eager
    assert int(sample_num_text_layers(5, 7, 0, 5)) == eager[7]


def test_choices_and_range_errors():
    assert ModalityRandomizationConfig().choices(6) == (0, 1, 2, 3, 4, 5)
    assert ModalityRandomizationConfig(max_text_layers=2).choices(12) == (0, 1, 2)
    for bad in (
        ModalityRandomizationConfig(max_text_layers=6),  # M = 0
        ModalityRandomizationConfig(min_text_layers=4, max_text_layers=3),
        ModalityRandomizationConfig(min_text_layers=-1),
    ):
        with pytest.raises(ConfigError, match="min_text_layers"):
            bad.choices(6)


SCRIPT = r"""
import os
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import kaleido_tf
from kaleido_tf.training.modality_randomization import ModalityRandomizationConfig

config = ModalityRandomizationConfig(enabled=True)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    step = tf.Variable(0, dtype=tf.int64, trainable=False)

@tf.function
def replica_k():
    def fn():
        return config.sample(3, step, 6)
    return strategy.run(fn)

seen = []
for s in range(12):
    step.assign(s)
    per_replica = [int(k) for k in strategy.experimental_local_results(replica_k())]
    assert len(per_replica) == 2, per_replica
    assert per_replica[0] == per_replica[1], (s, per_replica)
    assert per_replica[0] == int(config.sample(3, s, 6)), (s, per_replica)
    seen.append(per_replica[0])
assert len(set(seen)) > 2, seen
print("ok", seen)
"""


def test_every_replica_draws_the_same_k():
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok" in result.stdout
