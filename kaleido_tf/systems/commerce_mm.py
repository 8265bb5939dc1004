"""CommerceMM as a system: pixels in the graph, 5 image-text and 9 Omni objectives.

The model is ``CommerceMMModel``: an image encoder (ResNet-50 grid or ViT-B/16,
trained end to end from pixels), one XLM-R-style stack of L layers split at K (the
first K the text encoder, the remaining M the fusion encoder), the ``f``/``g``/``h``
projection heads with one learned temperature, and the MLM, MIM-kl, MIM-fr and ITM
heads. Training has two step types (spec §4.6), each with its own batch structure
and objectives:

- the **image-text** step (``objectives``, ``IMAGE_TEXT_BATCH_KEYS``,
  ``build_dataset``): ``0.5·MLM + MIM-kl + MIM-fr + ITC + ITM`` from three
  sub-passes and one backward;
- the **Omni-Retrieval** step (``omni_objectives``, ``OMNI_BATCH_KEYS``,
  ``build_omni_dataset``): the 9 gated symmetric InfoNCE terms, weight 1.0 each.

Each step picks one type with probability ``commerce_mm.omni_step_probability``
(Omni) and, in the second stage, draws K (``commerce_mm.modality_randomization``);
the trainer passes K and the ITM seed to the model (``model(batch, training=True,
num_text_layers=K, seed=seed)``).

Reference: CommerceMM (Yu et al., KDD 2022) §3-§4; spec
imagebert_interbert_commercemm.md §4.

Deviation: ITM is a 2-way softmax (index 1 = match, ``constants.ITM_MATCH``)
instead of a single sigmoid, as every ITM head of the framework.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from kaleido_tf.config.experiment import CommerceMMConfig, ExperimentConfig
from kaleido_tf.errors import ConfigError
from kaleido_tf.losses.classification import softmax_cross_entropy
from kaleido_tf.losses.contrastive import symmetric_info_nce
from kaleido_tf.losses.masked_image_modeling import (
    mim_fr_loss_term,
    mim_kl_loss_term,
)
from kaleido_tf.losses.omni_retrieval import omni_loss_terms
from kaleido_tf.models.commerce_mm_model import CommerceMMModel
from kaleido_tf.systems.base import Objectives

NAME = "commerce_mm"
STEP_TYPES = ("image_text", "omni")

# One image-text batch (B pairs). S = commerce_mm.image_size, T = text length,
# M = commerce_mm.max_masked_tokens, D_t = teacher_feature_dim, K_c = num_clusters.
IMAGE_TEXT_BATCH_KEYS = (
    "input_ids",  # int32 [B, T], the intact text ([CLS] first)
    "input_mask",  # int32 [B, T], 1 = real token, 0 = padding
    "pixels",  # float32 [B, S, S, 3], intact RGB in [0, 255]
    "masked_input_ids",  # int32 [B, T], input_ids with the MLM slots replaced
    "masked_lm_positions",  # int32 [B, M], token positions of the MLM slots
    "masked_lm_ids",  # int32 [B, M], the original ids there
    "masked_lm_weights",  # float32 [B, M], 1 = real slot, 0 = padding
    "greyed_pixels",  # float32 [B, S, S, 3], pixels with mim_grey_ratio of the
    #   mim_patch_size patches set to mid-grey 127.5 (inputs/patch_greying.py)
    "teacher_features",  # float32 [B, D_t], r(v) of the intact image (MIM-fr)
    "teacher_clusters",  # float32 [B, K_c], c(v) of the intact image, sums to 1
)
# One Omni-Retrieval batch (B linked source/target tuples). A missing text is the
# empty text ([CLS] [SEP]) with *_text_present 0; a missing image is all mid-grey
# (127.5) pixels with *_image_present 0. The two sides' T may differ (the model
# pads the shorter one).
OMNI_BATCH_KEYS = (
    "source_input_ids",  # int32 [B, T]
    "source_input_mask",  # int32 [B, T]
    "source_pixels",  # float32 [B, S, S, 3] in [0, 255]
    "source_text_present",  # int32 [B], 1 = a real (non-empty) text (δ^T)
    "source_image_present",  # int32 [B], 1 = a real image (δ^I)
    "target_input_ids",  # int32 [B, T]
    "target_input_mask",  # int32 [B, T]
    "target_pixels",  # float32 [B, S, S, 3] in [0, 255]
    "target_text_present",  # int32 [B]
    "target_image_present",  # int32 [B]
)
# Mid-grey of [0, 255] pixels: MIM greying and the missing-image placeholder.
GREY_PIXEL = 127.5


def settings(config: ExperimentConfig) -> CommerceMMConfig:
    """The config's ``commerce_mm`` section (its defaults when absent)."""
    return config.commerce_mm or CommerceMMConfig()


def image_encoder_kwargs(config: ExperimentConfig) -> dict:
    """Keyword arguments of ``ImageEncoder`` (without ``hidden_size``)."""
    cmm = settings(config)
    enc = config.model.encoder
    return {
        "backbone": cmm.image_backbone,
        "image_size": cmm.image_size,
        "resnet_model_id": cmm.resnet_model_id,
        "resnet_depth_multiplier": cmm.resnet_depth_multiplier,
        "vit_hidden_size": cmm.vit_hidden_size,
        "vit_num_layers": cmm.vit_num_layers,
        "vit_num_heads": cmm.vit_num_heads,
        "vit_mlp_dim": cmm.vit_mlp_dim,
        "vit_patch_size": cmm.vit_patch_size,
        "vit_dropout": cmm.vit_dropout,
        "initializer_range": enc.initializer_range,
        "output_dropout": enc.output_dropout,
    }


def encoder_kwargs(config: ExperimentConfig) -> dict:
    """Keyword arguments of ``CommerceMMEncoder`` for ``config`` (shared by the
    pretraining model and the fine-tuning tasks): ``model.encoder`` as the L-layer
    XLM-R-style stack, split at ``commerce_mm.num_text_layers``."""
    enc = config.model.encoder
    return {
        "vocab_size": enc.vocab_size,
        "hidden_size": enc.hidden_size,
        "num_layers": enc.num_layers,
        "num_attention_heads": enc.num_attention_heads,
        "inner_dim": enc.inner_dim,
        "num_text_layers": settings(config).num_text_layers,
        "image_encoder": image_encoder_kwargs(config),
        "max_sequence_length": enc.max_sequence_length,
        "type_vocab_size": enc.type_vocab_size,
        "initializer_range": enc.initializer_range,
        "output_dropout": enc.output_dropout,
        "attention_dropout": enc.attention_dropout,
    }


def build_model(config: ExperimentConfig) -> CommerceMMModel:
    """The CommerceMM pretraining model for ``config`` (not yet built; build it by
    calling it on ``dummy_batch(config)``, as ``kaleido_tf.build_model`` does)."""
    cmm = settings(config)
    return CommerceMMModel(
        encoder=encoder_kwargs(config),
        projection_dim=cmm.projection_dim,
        num_clusters=cmm.num_clusters,
        teacher_feature_dim=cmm.teacher_feature_dim,
        initial_temperature=cmm.initial_temperature,
        min_temperature=cmm.min_temperature,
        max_temperature=cmm.max_temperature,
        tasks=cmm.active(),
        itm_dropout=cmm.itm_dropout,
        initializer_range=config.model.encoder.initializer_range,
        name=NAME,
    )


def dummy_batch(config: ExperimentConfig, batch_size: int = 2, text_length: int = 8):
    """An image-text batch (``IMAGE_TEXT_BATCH_KEYS``) of zeros and grey pixels;
    calling the model on it creates every variable (the Omni pass reads a subset)."""
    cmm = settings(config)
    b, t, m, s = batch_size, text_length, cmm.max_masked_tokens, cmm.image_size
    grey = tf.fill([b, s, s, 3], GREY_PIXEL)
    return {
        "input_ids": tf.zeros([b, t], tf.int32),
        "input_mask": tf.ones([b, t], tf.int32),
        "pixels": grey,
        "masked_input_ids": tf.zeros([b, t], tf.int32),
        "masked_lm_positions": tf.zeros([b, m], tf.int32),
        "masked_lm_ids": tf.zeros([b, m], tf.int32),
        "masked_lm_weights": tf.zeros([b, m], tf.float32),
        "greyed_pixels": grey,
        "teacher_features": tf.zeros([b, cmm.teacher_feature_dim], tf.float32),
        "teacher_clusters": tf.fill([b, cmm.num_clusters], 1.0 / cmm.num_clusters),
    }


def dummy_omni_batch(
    config: ExperimentConfig, batch_size: int = 2, text_length: int = 8
):
    """An Omni-Retrieval batch (``OMNI_BATCH_KEYS``), every modality present."""
    s = settings(config).image_size
    b, t = batch_size, text_length
    batch = {}
    for side in ("source", "target"):
        batch[f"{side}_input_ids"] = tf.zeros([b, t], tf.int32)
        batch[f"{side}_input_mask"] = tf.ones([b, t], tf.int32)
        batch[f"{side}_pixels"] = tf.fill([b, s, s, 3], GREY_PIXEL)
        batch[f"{side}_text_present"] = tf.ones([b], tf.int32)
        batch[f"{side}_image_present"] = tf.ones([b], tf.int32)
    return batch


def _accuracy(logits_key, label_key, weight_key, labels_from_outputs=False):
    def term(batch, out):
        source = out if labels_from_outputs else batch
        labels = tf.cast(source[label_key], tf.int32)
        predicted = tf.argmax(out[logits_key], -1, output_type=tf.int32)
        correct = tf.cast(tf.equal(predicted, labels), tf.float32)
        return correct, tf.cast(source[weight_key], tf.float32)

    return term


def objectives(config: ExperimentConfig) -> Objectives:
    """The image-text step: ``0.5·MLM + MIM-kl + MIM-fr + ITC + ITM`` (§4 [P]).

    MLM is averaged over the masked slots, MIM-kl and MIM-fr and ITC over the
    pairs (ITC's weight is the model's ``itc_weight``: 0 in a K = 0 step, where it
    is skipped), ITM over the B positives and the 2B drawn negatives (a row with
    no candidate negative has weight 0). Only the enabled tasks are listed.
    """
    cmm = settings(config)

    def mlm(batch, out):
        values = softmax_cross_entropy(batch["masked_lm_ids"], out["mlm_logits"])
        return values, tf.cast(batch["masked_lm_weights"], tf.float32)

    def itc(batch, out):
        del batch
        values, weights = symmetric_info_nce(
            out["text_embedding"], out["image_embedding"], out["contrastive_scale"]
        )
        return values, weights * out["itc_weight"]

    def itm(batch, out):
        del batch
        values = softmax_cross_entropy(out["itm_labels"], out["itm_logits"])
        return values, out["itm_weights"]

    all_losses = {
        "mlm": mlm,
        "mim_kl": mim_kl_loss_term(target_key="teacher_clusters"),
        "mim_fr": mim_fr_loss_term(target_key="teacher_features"),
        "itc": itc,
        "itm": itm,
    }
    all_weights = {"mlm": cmm.mlm_weight}  # §4: 0.5; the others 1.0
    all_accuracies = {
        "mlm": _accuracy("mlm_logits", "masked_lm_ids", "masked_lm_weights"),
        "itm": _accuracy("itm_logits", "itm_labels", "itm_weights", True),
    }
    active = cmm.active()
    return Objectives(
        losses={k: all_losses[k] for k in active},
        weights={k: all_weights.get(k, 1.0) for k in active},
        accuracies={k: v for k, v in all_accuracies.items() if k in active},
    )


def omni_objectives(config: ExperimentConfig) -> Objectives:
    """The Omni-Retrieval step: 9 gated symmetric InfoNCE terms ``omni_<u>2<v>``
    (u, v in t, i, m), weight 1.0 each (§4 [P]); each is averaged over its
    gated-in rows of the global batch (``losses/omni_retrieval.py``).

    Raises:
        ConfigError: ``commerce_mm.omni_step_probability`` is 0 (no Omni step).
    """
    if not settings(config).omni:
        raise ConfigError(
            "commerce_mm.omni_step_probability is 0, so there is no Omni-Retrieval "
            "step: set it > 0 (paper default 0.5) to train the 9 Omni tasks"
        )
    terms = omni_loss_terms()
    return Objectives(losses=terms, weights={k: 1.0 for k in terms}, accuracies={})


def initialize_weights(model: CommerceMMModel, config: ExperimentConfig, data_dir):
    """Loads ``commerce_mm.image_encoder_weights`` (relative to ``data_dir``) into
    the model's image backbone (the Trainer calls this before the first step of a
    fresh run); returns the path, or None when none is set."""
    from kaleido_tf.networks.image_encoder import load_image_encoder_weights

    weights = settings(config).image_encoder_weights
    if not weights:
        return None
    path = Path(data_dir) / weights
    load_image_encoder_weights(model.encoder.image_encoder, path)
    return path


def examples_per_epoch(data_dir, config: ExperimentConfig) -> int:
    """Image-text pairs per epoch: the records of the ``prepare-pixels`` folder."""
    from kaleido_tf.inputs.commerce_mm_pipeline import examples_per_epoch as count

    return count(data_dir)


def build_dataset(
    data_dir,
    config: ExperimentConfig,
    global_batch_size: int,
    start_step: int = 0,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Image-text batches (``IMAGE_TEXT_BATCH_KEYS``) of a ``prepare-pixels``
    folder, resumable at ``start_step`` (``inputs/commerce_mm_pipeline.py``)."""
    from kaleido_tf.inputs.commerce_mm_pipeline import build_image_text_dataset

    return build_image_text_dataset(
        data_dir, config, global_batch_size, start_step, training, input_context
    )


def build_omni_dataset(
    data_dir,
    config: ExperimentConfig,
    global_batch_size: int,
    start_step: int = 0,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Omni-Retrieval batches (``OMNI_BATCH_KEYS``) of a ``prepare-omni`` folder,
    resumable at ``start_step`` Omni steps (``inputs/commerce_mm_pipeline.py``)."""
    from kaleido_tf.inputs.commerce_mm_pipeline import build_omni_dataset as build

    return build(
        data_dir, config, global_batch_size, start_step, training, input_context
    )


def _check_pixel_data(data_dir, config: ExperimentConfig) -> dict:
    from kaleido_tf.inputs.commerce_mm_pipeline import ImageTextInputs

    cmm = settings(config)
    return ImageTextInputs(
        data_dir,
        patch_size=cmm.mim_patch_size,
        image_size=cmm.image_size,
        teacher_feature_dim=cmm.teacher_feature_dim,
        num_clusters=cmm.num_clusters,
        max_seq_length=config.model.encoder.max_sequence_length,
    ).manifest


def _check_omni_data(data_dir, config: ExperimentConfig) -> dict:
    from kaleido_tf.inputs.commerce_mm_pipeline import OmniInputs

    return OmniInputs(
        data_dir,
        image_size=settings(config).image_size,
        max_seq_length=config.model.encoder.max_sequence_length,
    ).manifest


# Separates the ITM-negative seed stream from other (seed, step) draws.
_ITM_STREAM = 0x49544D  # "ITM"


def call_arguments(config: ExperimentConfig, step: tf.Tensor) -> dict:
    """The model's per-step call arguments, a function of (``train.seed``, step):
    ``seed`` int64 [2] of the ITM negative draws and, with modality
    randomization, ``num_text_layers`` K (``training/modality_randomization``);
    identical on every replica and worker, and replayed by a resumed run."""
    seed = config.train.seed
    args = {
        "seed": tf.random.experimental.stateless_fold_in(
            tf.constant([seed, _ITM_STREAM], tf.int64), tf.cast(step, tf.int64)
        )
    }
    randomization = settings(config).modality_randomization
    if randomization.enabled:
        args["num_text_layers"] = randomization.sample(
            seed, step, config.model.encoder.num_layers
        )
    return args


def step_types(config: ExperimentConfig) -> dict:
    """The two step types (spec §4.6): ``image_text`` on ``--data`` (a
    ``prepare-pixels`` folder) with probability 1 - p, ``omni`` on
    ``--step-data omni=DIR`` / ``--omni-data DIR`` (a ``prepare-omni`` folder)
    with p = ``commerce_mm.omni_step_probability``."""
    from kaleido_tf.systems.base import StepType

    p = settings(config).omni_step_probability
    types = {
        "image_text": StepType(
            probability=1.0 - p,
            objectives=objectives(config) if p < 1.0 else None,
            build_dataset=build_dataset,
            check_data=_check_pixel_data,
            call_arguments=call_arguments,
        ),
        "omni": StepType(
            probability=p,
            objectives=omni_objectives(config) if p > 0.0 else None,
            build_dataset=build_omni_dataset,
            data_key="omni",
            check_data=_check_omni_data,
            call_arguments=call_arguments,
        ),
    }
    return types


def step_schedule(config: ExperimentConfig) -> str:
    """``commerce_mm.step_schedule``: ``random`` or ``alternate``."""
    return settings(config).step_schedule


# --- categorization fine-tuning (finetuning/category_task.py hooks) ------------


def build_category_model(config: ExperimentConfig):
    """``finetune.task`` category / subcategory: the CommerceMM encoder with a
    ``finetune.num_classes``-way classifier on the fused ``w_cls`` (spec §4.3
    head table, §4.8); the encoder loads from a pretraining run by name
    (``finetuning/pretrained_weights.load_pretrained_weights``)."""
    from kaleido_tf.models.commerce_mm_classifier import CommerceMMClassifier

    ft = config.finetune
    return CommerceMMClassifier(
        encoder=encoder_kwargs(config),
        head_id=ft.task,
        num_classes=ft.num_classes,
        dropout=ft.classifier_dropout,
        initializer_range=ft.classifier_initializer_range,
        name=f"{NAME}_{ft.task}",
    )


def build_category_dataset(
    data_dir,
    config: ExperimentConfig,
    global_batch_size: int,
    start_step: int = 0,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Clean (text, pixels) pairs of a ``prepare-pixels`` folder with the
    ``<task>_id`` label (``inputs/commerce_mm_labels.py``), resumable."""
    from kaleido_tf.inputs.commerce_mm_labels import build_labelled_dataset

    return build_labelled_dataset(
        data_dir,
        config,
        f"{config.finetune.task}_id",
        global_batch_size,
        start_step,
        training,
        input_context,
    )


def check_category_data(data_dir, config: ExperimentConfig) -> dict:
    """The pixel folder's manifest, checked against the config (raises
    DataError): the Trainer's data check of a categorization run."""
    from kaleido_tf.inputs.commerce_mm_labels import LabelledPixelInputs

    manifest = LabelledPixelInputs(
        data_dir,
        f"{config.finetune.task}_id",
        image_size=settings(config).image_size,
        max_seq_length=config.model.encoder.max_sequence_length,
    ).manifest
    if int(manifest.get("vocab_size", 0)) > config.model.encoder.vocab_size:
        from kaleido_tf.errors import DataError

        raise DataError(
            f"{data_dir}: vocab.txt has {manifest['vocab_size']} tokens but "
            f"model.encoder.vocab_size is {config.model.encoder.vocab_size}"
        )
    return manifest
