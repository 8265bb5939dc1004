"""The distribution strategy: all local GPUs (CPU when none), or several workers."""

from __future__ import annotations

import json
import os

import tensorflow as tf


def get_strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """``MultiWorkerMirroredStrategy`` when TF_CONFIG names several workers, else
    ``MirroredStrategy`` over ``devices`` (default: every visible GPU, or the CPU)."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    workers = tf_config.get("cluster", {}).get("worker", [])
    if len(workers) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy(devices)
