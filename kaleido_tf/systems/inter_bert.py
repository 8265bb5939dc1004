"""InterBERT as a system: interaction + extraction, MSM, MRM and ITM-hn.

The model is ``InterBertModel``: image embedding (regions + the mean-pooled image
[CLS]), BERT's text embedding, ``model.encoder.num_layers`` single-stream
interaction blocks over ``[image; text]``, then an image extractor and a text
extractor (``inter_bert.num_*_extractor_layers``), with three heads: MSM (BERT's
tied LM head on the text stream), MRM (FC to the detector's C classes on the
image stream) and ITM (``MatchMLPHead`` on the product of the two [CLS] outputs,
index 1 = match).

Reference: InterBERT (Lin et al. 2020) §3; imagebert_interbert_commercemm.md
§3.2-§3.6, §3.10, §3.11.
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from kaleido_tf import schema
from kaleido_tf.config.experiment import ExperimentConfig, InterBertConfig
from kaleido_tf.losses.classification import softmax_cross_entropy
from kaleido_tf.losses.region_losses import distribution_kl
from kaleido_tf.models.inter_bert_model import InterBertModel
from kaleido_tf.systems.base import Objectives, argmax_accuracy, pair_weight_fn

logger = logging.getLogger(__name__)

NAME = "inter_bert"


def settings(config: ExperimentConfig) -> InterBertConfig:
    """The config's ``inter_bert`` section (its defaults when absent)."""
    return config.inter_bert or InterBertConfig()


def encoder_kwargs(config: ExperimentConfig) -> dict:
    """Keyword arguments of ``InterBertEncoder`` for ``config`` (shared by the
    pretraining model and the fine-tuning models): the interaction module is
    ``model.encoder`` (its ``num_layers``, heads, FFN, dropout), R is the region
    layout's slot count, the extractors come from ``inter_bert``."""
    enc = config.model.encoder
    ib = settings(config)
    return {
        "vocab_size": enc.vocab_size,
        "hidden_size": enc.hidden_size,
        "num_attention_heads": enc.num_attention_heads,
        "inner_dim": enc.inner_dim,
        "num_regions": schema.get_layout(config.model.layout).num_patches,
        "num_interaction_layers": enc.num_layers,
        "num_image_extractor_layers": ib.num_image_extractor_layers,
        "num_text_extractor_layers": ib.num_text_extractor_layers,
        "image_num_attention_heads": ib.image_num_attention_heads,
        "image_output_dropout": ib.image_output_dropout,
        "max_sequence_length": enc.max_sequence_length,
        "type_vocab_size": enc.type_vocab_size,
        "initializer_range": enc.initializer_range,
        "extractor_stddev": ib.extractor_stddev,
        "extractor_init": ib.extractor_init,
        "output_dropout": enc.output_dropout,
        "attention_dropout": enc.attention_dropout,
    }


def head_specs(config: ExperimentConfig, tasks=None) -> dict[str, dict]:
    """Head id -> ``InterBertModel`` head arguments for ``tasks`` (default: the
    enabled objectives)."""
    enc = config.model.encoder
    ib = settings(config)
    init = enc.initializer_range
    tasks = ib.active() if tasks is None else tuple(tasks)
    specs = {}
    if "msm" in tasks:  # BERT's LM head, tied to the word table (§3.3 [code])
        specs["msm"] = {
            "hidden_size": enc.hidden_size,
            "vocab_size": enc.vocab_size,
            "initializer_range": init,
        }
    if "mrm" in tasks:  # H -> C detector classes
        specs["mrm"] = {"num_classes": ib.num_classes, "initializer_range": init}
    if "itm" in tasks:  # ReLU poolers, product, dropout, 2-way (§3.3 [code])
        specs["itm"] = {
            "pooled_size": ib.pooled_size,
            "num_classes": 2,
            "dropout": ib.itm_dropout,
            "initializer_range": init,
        }
    return specs


def build_model(config: ExperimentConfig) -> InterBertModel:
    """The InterBERT pretraining model for ``config``, built on a zero batch
    (``kaleido_tf.dummy_batch``) so that its parameter count is logged
    (``log_parameter_count``; the issue asks for the paper configuration's)."""
    import kaleido_tf

    model = InterBertModel(
        encoder=encoder_kwargs(config), heads=head_specs(config), name=NAME
    )
    model(kaleido_tf.dummy_batch(config, batch_size=1), training=False)
    log_parameter_count(model)
    return model


def build_retrieval_model(config: ExperimentConfig) -> InterBertModel:
    """The retrieval fine-tuning model: the encoder and the ITM head only (the
    paper "reuses the output layer of the pretraining ITM task", §3.6), named
    ``<system>_retrieval`` as ``finetuning.retrieval_task.build_model``'s."""
    return InterBertModel(
        encoder=encoder_kwargs(config),
        heads=head_specs(config, ("itm",)),
        name=f"{config.system}_retrieval",
    )


def count_parameters(model: InterBertModel) -> dict[str, int]:
    """Parameters of a built model by part: ``text_embedding``,
    ``image_embedding``, ``interaction``, ``image_extractor``, ``text_extractor``,
    ``heads`` and ``total``."""

    def size(layers):
        return int(
            sum(np.prod(w.shape) for layer in layers for w in layer.trainable_weights)
        )

    enc = model.encoder
    counts = {
        "text_embedding": size([enc.text_embedding]),
        "image_embedding": size([enc.patch_embedding]),
        "interaction": size(enc.blocks),
        "image_extractor": size(enc.image_blocks),
        "text_extractor": size(enc.text_blocks),
        "heads": size(list(model.heads.values())),
    }
    counts["total"] = sum(counts.values())
    return counts


def log_parameter_count(model: InterBertModel) -> dict[str, int]:
    """Logs ``count_parameters(model)`` (INFO) and returns it. The paper reports
    173M; the spec derives about 199M for 12 + 6 + 6 and 157M for the released
    6 + 6 + 6 (§3.3, §3.11 #2): the logged count is ours, not the paper's."""
    counts = count_parameters(model)
    logger.info(
        "InterBERT %s: %d parameters (%.1fM; %s; the paper reports 173M, spec "
        "§3.11 #2)",
        model.name,
        counts["total"],
        counts["total"] / 1e6,
        ", ".join(f"{k} {v}" for k, v in counts.items() if k != "total"),
    )
    return counts


def objectives(config: ExperimentConfig) -> Objectives:
    """MSM + MRM + ITM, weights 1.0 each (λ1 = λ2 = λ3 = 1, spec §3.4 [D]).

    MSM is averaged over the masked tokens and MRM over the masked regions of
    positive pairs only (``losses_on_negatives=False``, spec §3.11 #12: a
    negative pair is masked like a positive, its slot weights are 0); ITM over
    the batch. MRM is CE on the detector's class, or with ``mrm_target:
    distribution`` KL(detector distribution || prediction).
    """
    ib = settings(config)

    pair_weight = pair_weight_fn(ib.losses_on_negatives)

    def msm(batch, out):
        values = softmax_cross_entropy(batch["masked_lm_ids"], out["msm_logits"])
        return values, batch["masked_lm_weights"] * pair_weight(batch)[:, None]

    def mrm(batch, out):
        if ib.mrm_target == "distribution":
            values = distribution_kl(batch["mrm_label_probs"], out["mrm_logits"])
        else:
            values = softmax_cross_entropy(batch["mrm_labels"], out["mrm_logits"])
        return values, batch["mrm_weights"] * pair_weight(batch)[:, None]

    def itm(batch, out):
        values = softmax_cross_entropy(batch["itm_labels"], out["itm_logits"])
        return values, tf.ones_like(values)

    active = ib.active()
    losses = {"msm": msm, "mrm": mrm, "itm": itm}
    accuracies = {
        "msm": argmax_accuracy(
            "msm_logits", "masked_lm_ids", "masked_lm_weights", pair_weight
        ),
        "mrm": argmax_accuracy("mrm_logits", "mrm_labels", "mrm_weights", pair_weight),
        "itm": argmax_accuracy("itm_logits", "itm_labels"),
    }
    return Objectives(
        losses={k: losses[k] for k in active},
        weights={k: 1.0 for k in active},
        accuracies={k: accuracies[k] for k in active},
    )


def examples_per_epoch(data_dir, config: ExperimentConfig) -> int:
    """Pairs per epoch: every image record with its text (and a negative with ITM)."""
    from kaleido_tf.inputs.inter_bert_pipeline import examples_per_epoch as count

    return count(data_dir, settings(config).active())


def build_dataset(
    data_dir,
    config: ExperimentConfig,
    global_batch_size: int,
    start_step: int = 0,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """InterBERT pretraining batches (``inter_bert_pipeline.INTER_BERT_BATCH_KEYS``),
    resumable at ``start_step``."""
    from kaleido_tf.inputs.inter_bert_pipeline import build_inter_bert_dataset

    ib = settings(config)
    return build_inter_bert_dataset(
        data_dir,
        global_batch_size,
        tasks=ib.active(),
        training=training,
        input_context=input_context,
        start_step=start_step,
        layout=config.model.layout,
        seed=config.train.seed,
        max_masked_tokens=ib.max_masked_tokens,
        anchor_rate=ib.anchor_rate,
        max_span_length=ib.max_span_length,
        max_masked_regions=ib.max_masked_regions,
        region_anchor_rate=ib.region_anchor_rate,
        iou_threshold=ib.iou_threshold,
        mrm_target=ib.mrm_target,
        num_classes=ib.num_classes,
        hard_negative_fraction=ib.hard_negative_fraction,
        feature_dim=config.model.patch_feature_dim,
    )


def text_cls_embeddings(
    model: InterBertModel, input_ids, input_mask, batch_size: int = 256
) -> np.ndarray:
    """Text-only [CLS] embeddings (interaction module + text extractor, no image
    tokens; spec §3.11 #18), ``batch_size`` texts per call.

    Args:
        model: A built ``InterBertModel``.
        input_ids: int [N, T].
        input_mask: int [N, T]; 1 = real token.
        batch_size: Texts per forward pass.

    Returns:
        float32 [N, H].
    """
    ids = np.asarray(input_ids, np.int32)
    mask = np.asarray(input_mask, np.int32)
    step = max(1, int(batch_size))
    fn = tf.function(
        lambda i, m: model.text_cls_embedding(i, m, training=False),
        reduce_retracing=True,
    )
    parts = [
        fn(tf.constant(ids[s : s + step]), tf.constant(mask[s : s + step])).numpy()
        for s in range(0, len(ids), step)
    ]
    hidden = model.encoder.hidden_size
    return np.concatenate(parts) if parts else np.zeros([0, hidden], np.float32)
