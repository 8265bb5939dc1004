"""Held-out pretraining losses and accuracies (Kaleido-BERT Fig. 6, ITM accuracy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from kaleido_tf.config.experiment import ExperimentConfig
from kaleido_tf.systems import get_system


def evaluate_pretraining(
    model,
    config: ExperimentConfig,
    data_dir: str | Path,
    batch_size: int = 64,
    max_batches: int | None = None,
    seed: int | None = None,
) -> dict[str, float]:
    """Per-task losses and accuracies of ``model`` on a prepared (held-out) split.

    The pairs, masks and corruptions are drawn as in training but from a fixed seed
    and in file order, so two models are compared on identical inputs. Every entry
    counts: the last, partial batch is kept (STYLE pitfall 7).

    Args:
        model: The model to score.
        config: Its experiment config (tasks, masking, seed).
        data_dir: A prepared folder.
        batch_size: Examples per forward pass.
        max_batches: Stop after this many batches.
        seed: Seed of the negatives, masks and corruptions (default
            ``config.train.seed``); another seed than training's gives pairs and
            masks the model has not been trained on.

    Returns:
        ``<task>_loss`` (weighted means over the split), ``<task>_accuracy``,
        ``total_loss`` and ``examples``.
    """
    system = get_system(config.system)
    objectives = system.objectives(config)
    from kaleido_tf.inputs.pipeline import build_pretrain_dataset

    tasks = config.tasks
    dataset = build_pretrain_dataset(
        data_dir,
        batch_size,
        tasks=tasks.active(),
        masking=tasks.masking,
        seed=config.train.seed if seed is None else seed,
        max_masked_tokens=tasks.max_masked_tokens,
        token_mask_rate=tasks.token_mask_rate,
        training=False,
        corrupt=True,
        feature_dim=config.model.patch_feature_dim,
    )
    sums: dict[str, list[float]] = {}

    @tf.function(reduce_retracing=True)  # the last batch may be smaller
    def forward(batch):
        return model(batch, training=False)

    examples = 0
    for i, batch in enumerate(dataset):
        if max_batches is not None and i >= max_batches:
            break
        outputs = forward(batch)
        examples += int(batch["input_ids"].shape[0])
        terms = [(f"{k}_loss", t) for k, t in objectives.losses.items()]
        terms += [(f"{k}_accuracy", t) for k, t in objectives.accuracies.items()]
        for key, term in terms:
            values, weights = term(batch, outputs)
            entry = sums.setdefault(key, [0.0, 0.0])
            entry[0] += float(tf.reduce_sum(values * weights))
            entry[1] += float(tf.reduce_sum(weights))
    result = {k: (s / w if w else float("nan")) for k, (s, w) in sums.items()}
    result["total_loss"] = float(
        np.sum([objectives.weights[k] * result[f"{k}_loss"] for k in objectives.losses])
    )
    result["examples"] = examples
    return result
