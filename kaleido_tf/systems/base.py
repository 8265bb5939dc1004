"""What a system provides to the shared trainer, evaluators and exporters (§2.4)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf

# (batch, model outputs) -> (per-entry losses, weights of the same shape).
LossTerm = Callable[[dict, dict], tuple[tf.Tensor, tf.Tensor]]
# (batch, model outputs) -> (per-entry correctness 0/1, weights).
AccuracyTerm = Callable[[dict, dict], tuple[tf.Tensor, tf.Tensor]]


@dataclasses.dataclass(frozen=True)
class Objectives:
    """The named losses of one experiment, summed with weights by the trainer.

    Attributes:
        losses: Task id -> loss term; logged as ``<id>_loss``.
        weights: Task id -> weight of its loss in the total.
        accuracies: Task id -> accuracy term; logged as ``<id>_accuracy``.
    """

    losses: dict[str, LossTerm]
    weights: dict[str, float]
    accuracies: dict[str, AccuracyTerm]
