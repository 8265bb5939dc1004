"""Category (CR) and sub-category (SUB) recognition fine-tuning (K-Q23).

A dropout + dense classifier on the pooled [CLS] output of each (image, own text)
pair, softmax cross-entropy; labels are the records' ``category_id`` or
``subcategory_id`` (indices into the data's ``categories.json``).

A system whose model is not a VLModel over patch features provides hooks, used
in place of the defaults: ``build_category_model(config)``,
``build_category_dataset(...)`` (``build_dataset``'s signature) and
``check_category_data(data_dir, config)`` (CommerceMM: a classifier on the fused
``w_cls`` of clean pixel pairs, spec imagebert_interbert_commercemm.md §4.8).

Reference: Kaleido-BERT §4.2 (CR & SUB); kaleido_fashionbert.md §4.7, K-Q23.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from kaleido_tf.config.experiment import ExperimentConfig
from kaleido_tf.errors import ConfigError
from kaleido_tf.finetuning.clean_pairs import clean_pairs_dataset, clean_pairs_per_epoch
from kaleido_tf.losses.classification import softmax_cross_entropy
from kaleido_tf.models.vl_model import VLModel
from kaleido_tf.systems.base import Objectives


def head_id(config: ExperimentConfig) -> str:
    """``category`` or ``subcategory``: the head id, output key prefix and task."""
    return config.finetune.task


def label_key(config: ExperimentConfig) -> str:
    """The record field holding the labels."""
    return f"{head_id(config)}_id"


def _system(config: ExperimentConfig):
    from kaleido_tf.systems import get_system

    return get_system(config.system)


def build_model(config: ExperimentConfig) -> VLModel:
    """The system's encoder with a ``num_classes``-way classifier on [CLS] (a
    system's ``build_category_model`` when it has one)."""
    from kaleido_tf.systems import get_system

    ft = config.finetune
    if ft.num_classes < 2:
        raise ConfigError(
            f"finetune.num_classes is {ft.num_classes}: set it, or let "
            "`kaleido-tf finetune` read it from the data's categories.json"
        )
    own = getattr(_system(config), "build_category_model", None)
    if own is not None:
        return own(config)
    heads = {
        head_id(config): {
            "type": "classification",
            "num_classes": ft.num_classes,
            "dropout": ft.classifier_dropout,
            "initializer_range": ft.classifier_initializer_range,
        }
    }
    return VLModel(
        encoder=get_system(config.system).encoder_kwargs(config),
        heads=heads,
        name=f"{config.system}_{head_id(config)}",
    )


def objectives(config: ExperimentConfig) -> Objectives:
    """Cross-entropy and accuracy; records with an unknown label (-1) weigh 0."""
    task, key = head_id(config), label_key(config)

    def parts(batch, out):
        labels = tf.cast(batch[key], tf.int32)
        known = tf.cast(labels >= 0, tf.float32)
        return tf.maximum(labels, 0), known, out[f"{task}_logits"]

    def loss(batch, out):
        labels, known, logits = parts(batch, out)
        return softmax_cross_entropy(labels, logits), known

    def accuracy(batch, out):
        labels, known, logits = parts(batch, out)
        predicted = tf.argmax(logits, -1, output_type=tf.int32)
        return tf.cast(tf.equal(predicted, labels), tf.float32), known

    return Objectives({task: loss}, {task: 1.0}, {task: accuracy})


def examples_per_epoch(data_dir, config: ExperimentConfig) -> int:
    """One example per image record."""
    return clean_pairs_per_epoch(data_dir)


def dummy_batch(config: ExperimentConfig, batch_size: int = 2, text_length: int = 8):
    """The system's build batch (``kaleido_tf.dummy_batch`` of the pretraining
    config): a system with its own batch structure (CommerceMM's pixels) builds
    its classifier from it; the others get the shared one, as before."""
    import kaleido_tf

    pretraining = dataclasses.replace(config, finetune=None)
    return kaleido_tf.dummy_batch(pretraining, batch_size, text_length)


def check_data(data_dir, config: ExperimentConfig) -> dict:
    """The Trainer's data check: the system's ``check_category_data`` when it has
    one (a pixel folder), else the shared check of ``model.layout``."""
    own = getattr(_system(config), "check_category_data", None)
    if own is not None:
        return own(data_dir, config)
    from kaleido_tf.training.trainer import check_data as shared_check

    return shared_check(config, data_dir)


def build_dataset(
    data_dir,
    config: ExperimentConfig,
    global_batch_size: int,
    start_step: int = 0,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Clean (image, own text) pairs with the label field, resumable (a system's
    ``build_category_dataset`` when it has one)."""
    own = getattr(_system(config), "build_category_dataset", None)
    if own is not None:
        return own(
            data_dir, config, global_batch_size, start_step, training, input_context
        )
    return clean_pairs_dataset(
        data_dir,
        config,
        global_batch_size,
        start_step,
        training,
        input_context,
        extra_keys=(label_key(config),),
    )
