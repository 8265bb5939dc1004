"""Retrieval fine-tuning: ITM on clean matched / mismatched pairs (K-Q21).

Each training image gives its own product's text (label 1) and the text of another
product of the same sub-category (label 0), as in pretraining but with no masking and
no corruption (K-Q18). The ``itm`` head is the pretrained one, so step 0 is the
zero-shot model; evaluation scores candidates by its match probability.

Reference: Kaleido-BERT §4.2 (ITR, TIR); kaleido_fashionbert.md §2.1, K-Q21.
"""

from __future__ import annotations

import tensorflow as tf

from kaleido_tf.config.experiment import ExperimentConfig
from kaleido_tf.finetuning.clean_pairs import clean_pairs_dataset, clean_pairs_per_epoch
from kaleido_tf.losses.classification import softmax_cross_entropy
from kaleido_tf.models.vl_model import VLModel
from kaleido_tf.systems.base import Objectives

HEAD = "itm"


def build_model(config: ExperimentConfig) -> VLModel:
    """The system's encoder with the 2-way ITM head (class 1 = match)."""
    from kaleido_tf.systems import get_system

    system = get_system(config.system)
    heads = {
        HEAD: {
            "type": "classification",
            "num_classes": 2,
            "initializer_range": config.model.encoder.initializer_range,
        }
    }
    return VLModel(
        encoder=system.encoder_kwargs(config),
        heads=heads,
        name=f"{config.system}_retrieval",
    )


def objectives(config: ExperimentConfig) -> Objectives:
    """ITM cross-entropy and accuracy over every pair."""

    def itm(batch, out):
        values = softmax_cross_entropy(batch["itm_labels"], out["itm_logits"])
        return values, tf.ones_like(values)

    def accuracy(batch, out):
        predicted = tf.argmax(out["itm_logits"], -1, output_type=tf.int32)
        correct = tf.cast(tf.equal(predicted, batch["itm_labels"]), tf.float32)
        return correct, tf.ones_like(correct)

    return Objectives({"itm": itm}, {"itm": 1.0}, {"itm": accuracy})


def examples_per_epoch(data_dir, config: ExperimentConfig) -> int:
    """Two pairs (matched and mismatched) per image record."""
    return clean_pairs_per_epoch(data_dir, ("itm",))


def build_dataset(
    data_dir,
    config: ExperimentConfig,
    global_batch_size: int,
    start_step: int = 0,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Clean ITM pairs, resumable at ``start_step``."""
    return clean_pairs_dataset(
        data_dir,
        config,
        global_batch_size,
        start_step,
        training,
        input_context,
        tasks=("itm",),
    )
