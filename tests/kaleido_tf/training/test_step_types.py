"""Several step types in the Trainer: the host draw of each step's type (≈ p,
stateless, replayed on resume) and a resume that continues each type's iterator
after its own steps (a toy two-step-type recipe)."""

import math
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import kaleido_tf
from kaleido_tf.errors import ConfigError
from kaleido_tf.training.step_types import (
    draw_step_types,
    runs,
    step_uniforms,
    steps_taken,
)
from kaleido_tf.training.trainer import Trainer, read_history

MIX = {"image_text": 0.7, "omni": 0.3}


def test_step_type_frequency_is_p():
    n = 20000
    for p in (0.5, 0.3, 0.05):
        mix = {"image_text": 1.0 - p, "omni": p}
        types = draw_step_types(11, 0, n, mix)
        share = types.count("omni") / n
        assert abs(share - p) < 4.5 * math.sqrt(p * (1 - p) / n), (p, share)
    # Independent draws: the number of omni steps in consecutive pairs is
    # binomial(2, p), and a run of either type ends with probability 2p(1 - p)
    # per step (mean run 1 / 0.42).
    types = np.asarray(draw_step_types(3, 0, n, MIX)) == "omni"
    pairs = types[0::2].astype(int) + types[1::2]
    both = np.mean(pairs == 2)
    assert abs(both - 0.09) < 4.5 * math.sqrt(0.09 * 0.91 / (n / 2)), both
    lengths = [k for _, k in runs(["o" if t else "i" for t in types])]
    assert abs(np.mean(lengths) - 1 / 0.42) < 0.15
    # u_s is uniform: a Kolmogorov-Smirnov distance far below 4.5 / sqrt(n).
    u = np.sort(step_uniforms(3, 0, n))
    ks = np.max(np.abs(u - np.arange(1, n + 1) / n))
    assert ks < 4.5 / math.sqrt(n) and u.min() >= 0.0 and u.max() < 1.0


def test_step_types_are_stateless_and_replayed_on_resume():
    full = draw_step_types(7, 0, 500, MIX)
    # Any window of steps draws what the whole run drew for those steps.
    assert draw_step_types(7, 123, 321, MIX) == full[123:321]
    assert draw_step_types(8, 0, 500, MIX) != full  # another seed, other steps
    counts = steps_taken(7, 200, MIX)
    assert counts == {
        "image_text": full[:200].count("image_text"),
        "omni": full[:200].count("omni"),
    }
    # A type with probability 0 never runs; alternate takes turns.
    assert set(draw_step_types(7, 0, 500, {"a": 1.0, "b": 0.0})) == {"a"}
    assert draw_step_types(7, 3, 7, {"a": 0.5, "b": 0.5}, "alternate") == [
        "b",
        "a",
        "b",
        "a",
    ]
    with pytest.raises(ConfigError, match="sum"):
        draw_step_types(7, 0, 5, {"a": 0.5, "b": 0.6})
    with pytest.raises(ConfigError, match="equal"):
        draw_step_types(7, 0, 5, {"a": 0.3, "b": 0.7}, "alternate")


class _Linear(tf_keras.Model):
    """y = x w + b: the smallest model a step-type recipe can train."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = tf_keras.layers.Dense(1, kernel_initializer="ones")

    def call(self, inputs, training=None):
        return {"y": self.dense(inputs["x"])[:, 0]}

    def get_config(self):
        return {}


def _batches(offset):
    """A step type's data: batch i (of its own steps) is a function of i, so a
    resume that starts the iterator at the wrong step changes the weights."""

    def build(data_dir, config, global_batch_size, start_step, training, input_context):
        del data_dir, config, training
        size = input_context.get_per_replica_batch_size(global_batch_size)
        first = input_context.input_pipeline_id * size

        def batch(i):
            rows = tf.cast(first + tf.range(size), tf.float32)
            i = tf.cast(i, tf.float32)
            x = tf.stack([tf.sin(i + rows + offset), tf.cos(3 * i - rows)], -1)
            return {"x": x, "t": tf.sin(2 * i + offset) + rows / 10}

        return tf.data.Dataset.range(start_step, 10**6).map(batch)

    return build


def _mse(batch, out):
    values = (out["y"] - batch["t"]) ** 2
    return values, tf.ones_like(values)


def _toy_recipe():
    from kaleido_tf.systems.base import Objectives, StepType

    def step_types(config):
        del config
        manifest = {"shards": []}
        return {
            "a": StepType(
                0.6,
                Objectives({"a_mse": _mse}, {"a_mse": 1.0}, {}),
                _batches(0.0),
                check_data=lambda d, c: manifest,
            ),
            "b": StepType(
                0.4,
                Objectives({"b_mse": _mse}, {"b_mse": 2.0}, {}),
                _batches(1.5),
                data_key="b_data",
                check_data=lambda d, c: manifest,
            ),
        }

    return types.SimpleNamespace(
        NAME="toy",
        build_model=lambda config: _Linear(name="toy"),
        dummy_batch=lambda config, b, t: {"x": tf.zeros([b, 2])},
        examples_per_epoch=lambda data_dir, config: 64,
        step_types=step_types,
    )


def test_resume_continues_each_iterator_after_its_own_steps(tmp_path, monkeypatch):
    from kaleido_tf import systems

    monkeypatch.setitem(systems.SYSTEMS, "kaleido_bert", _toy_recipe())
    cfg = kaleido_tf.load_config(
        "kaleido_bert/demo",
        [
            "train.global_batch_size=4",
            "train.max_steps=12",
            "train.log_every_steps=1",
            "train.checkpoint_every_steps=100",
            "train.optimizer.warmup_steps=0",
            "train.optimizer.learning_rate=0.05",
            "train.seed=4",
        ],
    )
    expected = draw_step_types(4, 0, 12, {"a": 0.6, "b": 0.4})
    assert (
        expected[:5].count("b") and expected[5:].count("a") and expected[5:].count("b")
    )
    data = {"b_data": tmp_path}

    def fit(folder, stop_at=None):
        trainer = Trainer(cfg, tmp_path, folder, step_data=data)
        trainer.fit(progress=False, log=lambda m: None, stop_at=stop_at)
        return trainer

    full = fit(tmp_path / "full")
    fit(tmp_path / "cut", stop_at=5)
    resumed = fit(tmp_path / "cut")
    assert resumed.step == 12
    for a, b in zip(full.model.weights, resumed.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
    rows = read_history(tmp_path / "cut")
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert rows == read_history(tmp_path / "full")
    for row, kind in zip(rows, expected):
        assert row[f"{kind}_steps"] == 1 and f"{kind}_mse_loss" in row
        other = "b" if kind == "a" else "a"
        assert row[f"{other}_steps"] == 0 and f"{other}_mse_loss" not in row
        weight = 1.0 if kind == "a" else 2.0
        assert row["total_loss"] == pytest.approx(weight * row[f"{kind}_mse_loss"])
