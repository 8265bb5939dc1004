"""The inputs every fine-tuning task starts from: clean (image, text) pairs.

No masking and no corruption (K-Q18); the pretraining pipeline's shuffling,
sharding and exact resume; ``tasks=("itm",)`` adds a same-sub-category mismatched
pair per image, ``extra_keys`` carries record fields (labels, ids) into the batch.
"""

from __future__ import annotations

from collections.abc import Collection

import tensorflow as tf

from kaleido_tf.config.experiment import ExperimentConfig


def clean_pairs_dataset(
    data_dir,
    config: ExperimentConfig,
    global_batch_size: int,
    start_step: int = 0,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
    tasks: Collection[str] = (),
    extra_keys: Collection[str] = (),
) -> tf.data.Dataset:
    """Batches of clean pairs of a prepared folder (see the module docstring)."""
    from kaleido_tf.inputs.pipeline import build_pretrain_dataset

    return build_pretrain_dataset(
        data_dir,
        global_batch_size,
        tasks=tuple(tasks),
        masking="random",
        seed=config.train.seed,
        training=training,
        corrupt=False,
        input_context=input_context,
        start_step=start_step,
        feature_dim=config.model.patch_feature_dim,
        extra_keys=tuple(extra_keys),
    )


def clean_pairs_per_epoch(data_dir, tasks: Collection[str] = ()) -> int:
    """Pairs one epoch yields: one per image record, two with ``itm``."""
    from kaleido_tf.inputs.pipeline import examples_per_epoch

    return examples_per_epoch(data_dir, tuple(tasks))
