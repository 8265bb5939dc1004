"""The distribution strategy: all local GPUs (CPU when none), or several workers.

Several workers (``TF_CONFIG`` naming more than one task) run
``MultiWorkerMirroredStrategy``: every worker runs the same command, the
collective all-reduce keeps them in lock-step, and only the chief (the ``chief``
task, else worker 0) writes the model directory; the others write their
checkpoints to a temporary folder that is removed (the TensorFlow pattern).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf


def _tf_config() -> dict:
    return json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")


def num_workers() -> int:
    """Tasks (chief and workers) that ``TF_CONFIG`` names; 1 without it."""
    cluster = _tf_config().get("cluster", {})
    return max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))


def task() -> tuple[str, int]:
    """This process's ``(type, index)`` from ``TF_CONFIG`` (``("worker", 0)``)."""
    t = _tf_config().get("task", {})
    return str(t.get("type", "worker")), int(t.get("index", 0))


def is_chief() -> bool:
    """Whether this process writes checkpoints, summaries and run records."""
    kind, index = task()
    has_chief = bool(_tf_config().get("cluster", {}).get("chief"))
    return kind == "chief" or (kind == "worker" and index == 0 and not has_chief)


def get_strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """``MultiWorkerMirroredStrategy`` when TF_CONFIG names several workers, else
    ``MirroredStrategy`` over ``devices`` (default: every visible GPU, or the CPU)."""
    if num_workers() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy(devices)
