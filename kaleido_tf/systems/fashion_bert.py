"""FashionBERT as a system: the 8x8 grid, three objectives and the adaptive loss.

The model is the shared ``VLModel``: the cross-modal encoder with FashionBERT's patch
embedding (a learned 64-row patch position table instead of boxes, F-Q3; patch type
id 1, F-Q4) and three heads: whole-word MLM, TIA (= ITM) and MPM.

Reference: FashionBERT (Gao et al., SIGIR 2020) §2; kaleido_fashionbert.md §3, §6,
§9 F-Q*.
"""

from __future__ import annotations

import tensorflow as tf

from kaleido_tf.config.experiment import ExperimentConfig, FashionBertConfig
from kaleido_tf.losses.adaptive_weighting import adaptive_combine
from kaleido_tf.losses.classification import softmax_cross_entropy
from kaleido_tf.losses.patch_kld import feature_kld
from kaleido_tf.models.vl_model import VLModel
from kaleido_tf.systems.base import (
    Objectives,
    argmax_accuracy,
    config_encoder_kwargs,
    pair_weight_fn,
)

NAME = "fashion_bert"


def settings(config: ExperimentConfig) -> FashionBertConfig:
    """The config's ``fashion_bert`` section (its defaults when absent)."""
    return config.fashion_bert or FashionBertConfig()


def head_specs(config: ExperimentConfig) -> dict[str, dict]:
    """Head id -> VLModel head spec for the enabled tasks (§5 head table)."""
    enc = config.model.encoder
    init = enc.initializer_range
    fb = settings(config)
    specs = {}
    if fb.mlm:  # dense + GELU + LN, tied word table + bias ([C-F] MLMHead)
        specs["mlm"] = {
            "type": "masked_lm",
            "hidden_size": enc.hidden_size,
            "vocab_size": enc.vocab_size,
            "initializer_range": init,
        }
    if fb.itm:  # pooled [CLS] -> 2, index 1 = match ([C-F] NSPHead)
        specs["itm"] = {
            "type": "classification",
            "num_classes": 2,
            "initializer_range": init,
        }
    if fb.mpm:  # H -> D, no bias ([C-F] cls/img_predictions)
        specs["mpm"] = {
            "type": "masked_patch",
            "feature_dim": config.model.patch_feature_dim,
            "initializer_range": init,
        }
    return specs


def encoder_kwargs(config: ExperimentConfig) -> dict:
    """Keyword arguments of the CrossModalEncoder for ``config`` (shared by the
    pretraining model and every fine-tuning task). ``num_layers`` is 12 in the
    paper, 2 / 6 for the Table 4 variants; ``level_sizes`` is [64]."""
    return {
        **config_encoder_kwargs(config),
        "per_level_projection": False,  # one grid: one projection
        "per_level_segments": False,  # patch type id 1 (F-Q4)
        "patch_position_type": "index",  # learned 64 x H table (F-Q3)
    }


def build_model(config: ExperimentConfig) -> VLModel:
    """The FashionBERT pretraining VLModel for ``config`` (not yet built)."""
    return VLModel(
        encoder=encoder_kwargs(config),
        heads=head_specs(config),
        trim_text_padding=settings(config).vsl_inference,
        name=NAME,
    )


def objectives(config: ExperimentConfig) -> Objectives:
    """MLM (Eq. 1), MPM (Eq. 2, KL(target || prediction), F-Q7) and TIA (Eq. 3),
    combined by the adaptive loss of Eq. 4-6 (``losses/adaptive_weighting.py``)."""
    fb = settings(config)

    pair_weight = pair_weight_fn(fb.losses_on_negatives)  # F-Q10

    def mlm(batch, out):
        values = softmax_cross_entropy(batch["masked_lm_ids"], out["mlm_logits"])
        return values, batch["masked_lm_weights"] * pair_weight(batch)[:, None]

    def itm(batch, out):
        values = softmax_cross_entropy(batch["itm_labels"], out["itm_logits"])
        return values, tf.ones_like(values)

    def mpm(batch, out):
        values = feature_kld(batch["mpm_targets"], out["mpm_logits"])
        return values, batch["mpm_weights"] * pair_weight(batch)[:, None]

    active = fb.active()
    all_losses = {"mlm": mlm, "itm": itm, "mpm": mpm}
    all_accuracies = {
        "mlm": argmax_accuracy("mlm_logits", "masked_lm_ids", "masked_lm_weights"),
        "itm": argmax_accuracy("itm_logits", "itm_labels"),
    }
    return Objectives(
        losses={k: all_losses[k] for k in active},
        weights={k: 1.0 / len(active) for k in active},  # Algorithm 1 line 1
        accuracies={k: v for k, v in all_accuracies.items() if k in active},
        combine=adaptive_combine(
            active, fb.adaptive_loss, fb.adaptive_alpha, fb.adaptive_weight_grad
        ),
        combine_needs_gradients=fb.adaptive_loss == "gradient_norm",
    )


def examples_per_epoch(data_dir, config: ExperimentConfig) -> int:
    """Pairs per epoch: every image record with its text (and a negative with ITM)."""
    from kaleido_tf.inputs.fashion_bert_pipeline import examples_per_epoch as count

    return count(data_dir, settings(config).active())


def build_dataset(
    data_dir,
    config: ExperimentConfig,
    global_batch_size: int,
    start_step: int = 0,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """FashionBERT pretraining batches (WWM + MPM + ITM), resumable at
    ``start_step``."""
    from kaleido_tf.inputs.fashion_bert_pipeline import build_fashion_bert_dataset

    fb = settings(config)
    return build_fashion_bert_dataset(
        data_dir,
        global_batch_size,
        tasks=fb.active(),
        seed=config.train.seed,
        max_masked_tokens=fb.max_masked_tokens,
        token_mask_rate=fb.token_mask_rate,
        num_masked_patches=fb.num_masked_patches,
        training=training,
        input_context=input_context,
        start_step=start_step,
        feature_dim=config.model.patch_feature_dim,
    )
