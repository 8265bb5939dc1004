"""Kaleido-BERT as a system: its model, input pipeline and seven objectives.

Reference: Kaleido-BERT (Zhuge et al., CVPR 2021) §3; kaleido_fashionbert.md §4-6.
"""

from __future__ import annotations

import tensorflow as tf

from kaleido_tf import schema
from kaleido_tf.config.experiment import ExperimentConfig
from kaleido_tf.losses.classification import softmax_cross_entropy
from kaleido_tf.losses.patch_kld import feature_kld
from kaleido_tf.models.vl_model import VLModel
from kaleido_tf.systems.base import (
    Objectives,
    argmax_accuracy,
    config_encoder_kwargs,
    pair_weight_fn,
)

NAME = "kaleido_bert"
NUM_ROTATIONS = 4  # 0, 90, 180, 270 degrees (AKPM I)
NUM_PERMUTATIONS = 24  # 4! jigsaw permutations (AKPM II)
NUM_CAMOUFLAGE_SLOTS = 9  # which level-3 patch was replaced (AKPM III)


def head_specs(config: ExperimentConfig) -> dict[str, dict]:
    """Head id -> VLModel head spec for the enabled tasks (§5 head table)."""
    layout = schema.get_layout(config.model.layout)
    enc = config.model.encoder
    init = enc.initializer_range
    specs = {}
    tasks = config.tasks
    if tasks.mlm:
        specs["mlm"] = {
            "type": "masked_lm",
            "hidden_size": enc.hidden_size,
            "vocab_size": enc.vocab_size,
            "initializer_range": init,
        }
    if tasks.itm:
        specs["itm"] = {
            "type": "classification",
            "num_classes": 2,
            "initializer_range": init,
        }
    levels = {
        "rr": (1, NUM_ROTATIONS),
        "jps": (2, NUM_PERMUTATIONS),
        "cp": (3, NUM_CAMOUFLAGE_SLOTS),
    }
    for task, (grid, classes) in levels.items():
        if getattr(tasks, task):
            sl = layout.level_slice(grid)
            specs[task] = {
                "type": "level_classification",
                "num_classes": classes,
                "patch_start": sl.start,
                "num_level_patches": sl.stop - sl.start,
                "initializer_range": init,
            }
    for task in ("g2cm", "b2cm"):
        if getattr(tasks, task):
            specs[task] = {
                "type": "masked_patch",
                "feature_dim": config.model.patch_feature_dim,
                "initializer_range": init,
            }
    return specs


def encoder_kwargs(config: ExperimentConfig) -> dict:
    """Keyword arguments of the CrossModalEncoder for ``config`` (shared by the
    pretraining model and every fine-tuning task): the config's as they are."""
    return config_encoder_kwargs(config)


def build_model(config: ExperimentConfig) -> VLModel:
    """The Kaleido-BERT pretraining VLModel for ``config`` (not yet built)."""
    return VLModel(encoder=encoder_kwargs(config), heads=head_specs(config), name=NAME)


def objectives(config: ExperimentConfig) -> Objectives:
    """The seven losses of Eq. 8 (unweighted sum), restricted to enabled tasks."""
    on_negatives = config.tasks.losses_on_negatives

    pair_weight = pair_weight_fn(on_negatives)  # K-Q26

    def mlm(batch, out):
        values = softmax_cross_entropy(batch["masked_lm_ids"], out["mlm_logits"])
        weights = batch["masked_lm_weights"] * pair_weight(batch)[:, None]
        return values, weights

    def itm(batch, out):
        values = softmax_cross_entropy(batch["itm_labels"], out["itm_logits"])
        return values, tf.ones_like(values)

    def level(task):
        def term(batch, out):
            values = softmax_cross_entropy(
                batch[f"{task}_labels"], out[f"{task}_logits"]
            )
            return values, pair_weight(batch)

        return term

    def reconstruction(task):
        def term(batch, out):
            values = feature_kld(batch[f"{task}_targets"], out[f"{task}_logits"])
            weights = batch[f"{task}_weights"] * pair_weight(batch)[:, None]
            return values, weights

        return term

    all_losses = {
        "mlm": mlm,
        "itm": itm,
        "rr": level("rr"),
        "jps": level("jps"),
        "cp": level("cp"),
        "g2cm": reconstruction("g2cm"),
        "b2cm": reconstruction("b2cm"),
    }
    all_accuracies = {
        "mlm": argmax_accuracy("mlm_logits", "masked_lm_ids", "masked_lm_weights"),
        "itm": argmax_accuracy("itm_logits", "itm_labels"),
        "rr": argmax_accuracy("rr_logits", "rr_labels"),
        "jps": argmax_accuracy("jps_logits", "jps_labels"),
        "cp": argmax_accuracy("cp_logits", "cp_labels"),
    }
    active = config.tasks.active()
    return Objectives(
        losses={k: all_losses[k] for k in active},
        weights={k: 1.0 for k in active},  # Eq. 8: unweighted sum
        accuracies={k: v for k, v in all_accuracies.items() if k in active},
    )


def examples_per_epoch(data_dir, config: ExperimentConfig) -> int:
    """Pairs per epoch: every image record with its text (and a negative with ITM)."""
    from kaleido_tf.inputs.pipeline import examples_per_epoch as count

    return count(data_dir, config.tasks.active())


def build_dataset(
    data_dir,
    config: ExperimentConfig,
    global_batch_size: int,
    start_step: int = 0,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Kaleido-BERT pretraining batches (AGM + AKPM), resumable at ``start_step``."""
    from kaleido_tf.inputs.pipeline import build_pretrain_dataset

    tasks = config.tasks
    return build_pretrain_dataset(
        data_dir,
        global_batch_size,
        tasks=tasks.active(),
        masking=tasks.masking,
        seed=config.train.seed,
        max_masked_tokens=tasks.max_masked_tokens,
        token_mask_rate=tasks.token_mask_rate,
        training=training,
        input_context=input_context,
        start_step=start_step,
        feature_dim=config.model.patch_feature_dim,
    )
