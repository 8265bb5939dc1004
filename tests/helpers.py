"""``check_layer``: the checks every layer, head and model gets (STYLE §2.7);
``run_cpu_script``: a script in its own CPU-only process (multi-device tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras


def _canonical(config: dict) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def check_layer(
    layer: tf_keras.layers.Layer,
    call,
    expected_shapes: dict[str, tuple] | tuple,
    trainable_weights: int,
    non_trainable_weights: int = 0,
    zero_gradient: tuple[str, ...] = ("self_attention/key/bias",),
) -> None:
    """Config round trip, output shapes, exact weight counts, and training.

    Args:
        layer: A fresh layer.
        call: ``call(layer) -> tensor or dict of tensors``, the eager call.
        expected_shapes: The output shape, or key -> shape for dict outputs.
        trainable_weights: Exact number of trainable variables after building.
        non_trainable_weights: Exact number of non-trainable variables.
        zero_gradient: Name parts of variables whose gradient is zero by
            mathematics: a key bias adds q.b to every logit of a query, which the
            softmax cancels.
    """
    # (1) get_config -> from_config -> get_config is identical.
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert _canonical(clone.get_config()) == _canonical(config)
    # (2) eager output shapes.
    out = call(layer)
    outputs = out if isinstance(out, dict) else {"output": out}
    shapes = (
        expected_shapes
        if isinstance(expected_shapes, dict)
        else {"output": expected_shapes}
    )
    for key, shape in shapes.items():
        assert tuple(outputs[key].shape) == tuple(shape), (key, outputs[key].shape)
        assert outputs[key].dtype == tf.float32
    # (3) exact weight counts.
    assert len(layer.trainable_weights) == trainable_weights, [
        w.name for w in layer.trainable_weights
    ]
    assert len(layer.non_trainable_weights) == non_trainable_weights
    # (4) one SGD step changes every trainable variable (the Keras 3 trap).
    before = [w.numpy().copy() for w in layer.trainable_weights]
    optimizer = tf_keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        out = call(layer)
        values = out if isinstance(out, dict) else {"output": out}
        loss = tf.add_n(
            [
                tf.reduce_sum(tf.square(v - 0.3))
                for k, v in values.items()
                if v.dtype == tf.float32 and k != "embedding_table"
            ]
        )
    grads = tape.gradient(loss, layer.trainable_weights)
    optimizer.apply_gradients(zip(grads, layer.trainable_weights))
    for w, b in zip(layer.trainable_weights, before):
        if any(part in w.name for part in zero_gradient):
            continue
        assert not np.allclose(w.numpy(), b), f"{w.name} did not change in training"
    # (6) stable, explicit names: a clone built the same way has the same names.
    call(clone)
    assert [w.name for w in clone.weights] == [w.name for w in layer.weights]


def run_cpu_script(
    script: str, *args: str, marker: str | None = "OK", timeout: int = 300
) -> subprocess.CompletedProcess:
    """Runs ``python -c script args`` from the repository root on the CPU only.

    A fresh process, so that the script can split the CPU into logical devices
    before TensorFlow starts. Asserts a zero exit status (showing the output's
    tail otherwise) and, if ``marker`` is given, that stdout contains it.
    """
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo), CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    if marker is not None:
        assert marker in result.stdout
    return result
