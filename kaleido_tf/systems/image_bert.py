"""ImageBERT as a system: detector regions, four objectives, conditional masking.

The model is the shared ``VLModel``: the cross-modal encoder over ``[CLS] text
[SEP] r1 .. rR`` with ImageBERT's region embedding (``PatchEmbedding`` with the box
position, biases on the projections and one dummy sequence position for every
region) and four heads: MLM (tied BERT LM head), MOC (FC to the detector's C
classes), MRFR (FC back to the D-dim RoI feature) and ITM (FC on the pooled [CLS]).

Reference: ImageBERT (Qi et al., arXiv 2001.07966) §3; imagebert_interbert_
commercemm.md §2.2-§2.7.

Deviation: ITM is a 2-way softmax on the pooled [CLS] (index 1 = match,
``constants.ITM_MATCH``, the framework's convention, loadable from BERT's NSP
classifier) instead of the paper's single sigmoid score; the two are equivalent
up to parametrisation (sigmoid(l1 - l0)). The MOC and MRFR heads are bias-free
dense layers (``masked_patch`` heads); the paper says only "a fully-connected
layer".
"""

from __future__ import annotations

import tensorflow as tf

from kaleido_tf import schema
from kaleido_tf.config.experiment import ExperimentConfig, ImageBertConfig
from kaleido_tf.losses.classification import softmax_cross_entropy
from kaleido_tf.losses.region_losses import distribution_kl, squared_l2
from kaleido_tf.models.vl_model import VLModel
from kaleido_tf.systems.base import (
    Objectives,
    argmax_accuracy,
    config_encoder_kwargs,
    pair_weight_fn,
)

NAME = "image_bert"


def settings(config: ExperimentConfig) -> ImageBertConfig:
    """The config's ``image_bert`` section (its defaults when absent)."""
    return config.image_bert or ImageBertConfig()


def head_specs(config: ExperimentConfig) -> dict[str, dict]:
    """Head id -> VLModel head spec for the enabled tasks (spec §2.3 head table)."""
    enc = config.model.encoder
    init = enc.initializer_range
    ib = settings(config)
    specs = {}
    if ib.mlm:  # dense + GELU + LN, tied word table + bias (BERT's LM head)
        specs["mlm"] = {
            "type": "masked_lm",
            "hidden_size": enc.hidden_size,
            "vocab_size": enc.vocab_size,
            "initializer_range": init,
        }
    if ib.itm:  # pooled [CLS] -> 2, index 1 = match
        specs["itm"] = {
            "type": "classification",
            "num_classes": 2,
            "initializer_range": init,
        }
    if ib.moc:  # H -> C class logits at the masked regions
        specs["moc"] = {
            "type": "masked_patch",
            "feature_dim": ib.num_classes,
            "initializer_range": init,
        }
    if ib.mrfr:  # H -> D regressed feature at the masked regions
        specs["mrfr"] = {
            "type": "masked_patch",
            "feature_dim": config.model.patch_feature_dim,
            "initializer_range": init,
        }
    return specs


def encoder_kwargs(config: ExperimentConfig) -> dict:
    """Keyword arguments of the CrossModalEncoder for ``config`` (shared by the
    pretraining model and every fine-tuning task): one level of R regions, the
    box (5-D location) position, ImageBERT's dummy sequence position and
    projection biases."""
    ib = settings(config)
    layout = schema.get_layout(config.model.layout)
    return {
        **config_encoder_kwargs(config),
        "level_sizes": [layout.num_patches],  # R regions, one level
        "per_level_projection": False,
        "per_level_segments": False,  # image segment id 1
        "patch_position_type": "box",  # PositionEmbed(5-D location)
        "patch_sequence_position": ib.dummy_sequence_position,
        "patch_projection_bias": ib.projection_bias,
    }


def build_model(config: ExperimentConfig) -> VLModel:
    """The ImageBERT pretraining VLModel for ``config`` (not yet built)."""
    return VLModel(encoder=encoder_kwargs(config), heads=head_specs(config), name=NAME)


def objectives(config: ExperimentConfig) -> Objectives:
    """MLM + MOC + MRFR + ITM, weights 1.0 (spec §2.4 [D]).

    MLM is averaged over the masked tokens, MOC and MRFR over the masked regions,
    of positive pairs only (``losses_on_negatives=False``: the masked slots of a
    negative pair get weight 0, although it was masked like a positive); ITM over
    the batch. MOC is CE on the detector's hard label, or with
    ``moc_target: distribution`` KL(detector distribution || prediction).
    """
    ib = settings(config)

    pair_weight = pair_weight_fn(ib.losses_on_negatives)  # conditional masking

    def mlm(batch, out):
        values = softmax_cross_entropy(batch["masked_lm_ids"], out["mlm_logits"])
        return values, batch["masked_lm_weights"] * pair_weight(batch)[:, None]

    def moc(batch, out):
        if ib.moc_target == "distribution":
            values = distribution_kl(batch["moc_target_probs"], out["moc_logits"])
        else:
            values = softmax_cross_entropy(batch["moc_labels"], out["moc_logits"])
        return values, batch["masked_region_weights"] * pair_weight(batch)[:, None]

    def mrfr(batch, out):
        values = squared_l2(
            batch["mrfr_targets"], out["mrfr_logits"], ib.mrfr_reduction
        )
        return values, batch["masked_region_weights"] * pair_weight(batch)[:, None]

    def itm(batch, out):
        values = softmax_cross_entropy(batch["itm_labels"], out["itm_logits"])
        return values, tf.ones_like(values)

    active = ib.active()
    all_losses = {"mlm": mlm, "moc": moc, "mrfr": mrfr, "itm": itm}
    all_accuracies = {
        "mlm": argmax_accuracy(
            "mlm_logits", "masked_lm_ids", "masked_lm_weights", pair_weight
        ),
        "moc": argmax_accuracy(
            "moc_logits", "moc_labels", "masked_region_weights", pair_weight
        ),
        "itm": argmax_accuracy("itm_logits", "itm_labels"),
    }
    return Objectives(
        losses={k: all_losses[k] for k in active},
        weights={k: 1.0 for k in active},
        accuracies={k: v for k, v in all_accuracies.items() if k in active},
    )


def examples_per_epoch(data_dir, config: ExperimentConfig) -> int:
    """Pairs per epoch: every image record with its text (and a negative with ITM)."""
    from kaleido_tf.inputs.region_pipeline import examples_per_epoch as count

    return count(data_dir, settings(config).active())


def build_dataset(
    data_dir,
    config: ExperimentConfig,
    global_batch_size: int,
    start_step: int = 0,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """ImageBERT pretraining batches (``region_pipeline.REGION_BATCH_KEYS``),
    resumable at ``start_step``."""
    from kaleido_tf.inputs.region_pipeline import build_region_dataset

    ib = settings(config)
    return build_region_dataset(
        data_dir,
        global_batch_size,
        tasks=ib.active(),
        training=training,
        input_context=input_context,
        start_step=start_step,
        layout=config.model.layout,
        seed=config.train.seed,
        max_masked_tokens=ib.max_masked_tokens,
        token_mask_rate=ib.token_mask_rate,
        max_masked_regions=ib.max_masked_regions,
        region_mask_rate=ib.region_mask_rate,
        region_zero_prob=ib.region_zero_prob,
        image_swap_fraction=ib.image_swap_fraction,
        moc_target=ib.moc_target,
        num_classes=ib.num_classes,
        feature_dim=config.model.patch_feature_dim,
    )
