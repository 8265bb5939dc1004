"""Retrieval fine-tuning: ITM on clean matched / mismatched pairs (K-Q21).

Each training image gives its own product's text (label 1) and the text of another
product of the same sub-category (label 0), as in pretraining but with no masking and
no corruption (K-Q18). The ``itm`` head is the pretrained one, so step 0 is the
zero-shot model; evaluation scores candidates by its match probability.

``finetune.retrieval_loss`` selects ImageBERT's alternatives (§4.3, Table 4 part
4): ``ce``, ``triplet`` and ``sum`` train on groups of P = ``finetune.group_size``
contiguous pairs (``group_pairs``): the positive (an image and its own text), then
P - 1 negatives drawn from the other positives of the same batch, either other
captions for the image or other images for the caption (50/50 per group,
spec §2.11 row 17). ``binary`` (the default) is unchanged.

Deviation: the group negatives are in-batch (any product of the batch but the
positive's own), not drawn from the same sub-category as ``binary``'s are: the
image negatives need another image's features, which only the batch holds.

Reference: Kaleido-BERT §4.2 (ITR, TIR); kaleido_fashionbert.md §2.1, K-Q21;
imagebert_interbert_commercemm.md §2.6, §2.11 rows 15-18.
"""

from __future__ import annotations

import tensorflow as tf

from kaleido_tf import constants
from kaleido_tf.config.experiment import ExperimentConfig
from kaleido_tf.errors import ConfigError
from kaleido_tf.finetuning.clean_pairs import clean_pairs_dataset, clean_pairs_per_epoch
from kaleido_tf.losses.classification import softmax_cross_entropy
from kaleido_tf.losses.retrieval_ranking import (
    group_cross_entropy,
    hardest_negative_triplet,
    match_scores,
)
from kaleido_tf.models.vl_model import VLModel
from kaleido_tf.systems.base import Objectives

HEAD = "itm"
GROUP_LOSSES = ("ce", "triplet", "sum")
# Batch key of the group losses: float32 [B], 1 on every pair of a usable group,
# 0 on a group whose negatives include a pair of the positive's own product (a
# batch with two images of one product and too few others).
GROUP_WEIGHTS = "retrieval_group_weights"
_SALT = 0x52616E6B  # "Rank": separates these draws from the pipeline's


def build_model(config: ExperimentConfig) -> VLModel:
    """The system's encoder with the 2-way ITM head (class 1 = match); a system
    whose model is not a single-stream VLModel provides ``build_retrieval_model``
    (InterBERT: its two streams and match head)."""
    from kaleido_tf.systems import get_system

    system = get_system(config.system)
    if hasattr(system, "build_retrieval_model"):
        return system.build_retrieval_model(config)
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


def _retrieval_loss(config: ExperimentConfig) -> str:
    return "binary" if config.finetune is None else config.finetune.retrieval_loss


def objectives(config: ExperimentConfig) -> Objectives:
    """The losses of ``finetune.retrieval_loss`` and ITM accuracy over every pair.

    ``binary``: ``itm`` (cross-entropy per pair). ``ce``: ``rank_ce`` (one value
    per group). ``triplet``: ``rank_triplet`` (one per group). ``sum``: all three,
    each weighted 1.0 (each is its own mean, so the total is their sum).
    """
    mode = _retrieval_loss(config)
    p = config.finetune.group_size if config.finetune is not None else 2
    margin = config.finetune.triplet_margin if config.finetune is not None else 0.0

    def group_weights(batch):
        return tf.reshape(batch[GROUP_WEIGHTS], [-1, p])[:, 0]

    def itm(batch, out):
        values = softmax_cross_entropy(batch["itm_labels"], out["itm_logits"])
        if mode == "binary":
            return values, tf.ones_like(values)
        return values, batch[GROUP_WEIGHTS]

    def rank_ce(batch, out):
        values = group_cross_entropy(match_scores(out["itm_logits"]), p)
        return values, group_weights(batch)

    def rank_triplet(batch, out):
        scores = match_scores(out["itm_logits"])
        values = hardest_negative_triplet(scores, p, margin)
        return values, group_weights(batch)

    def accuracy(batch, out):
        predicted = tf.argmax(out["itm_logits"], -1, output_type=tf.int32)
        correct = tf.cast(tf.equal(predicted, batch["itm_labels"]), tf.float32)
        return correct, tf.ones_like(correct)

    terms = {
        "binary": {"itm": itm},
        "ce": {"rank_ce": rank_ce},
        "triplet": {"rank_triplet": rank_triplet},
        "sum": {"itm": itm, "rank_ce": rank_ce, "rank_triplet": rank_triplet},
    }[mode]
    return Objectives(terms, {k: 1.0 for k in terms}, {"itm": accuracy})


def examples_per_epoch(data_dir, config: ExperimentConfig) -> int:
    """Two pairs (matched and mismatched) per image record; P with the group
    losses."""
    if _retrieval_loss(config) in GROUP_LOSSES:
        return clean_pairs_per_epoch(data_dir) * config.finetune.group_size
    return clean_pairs_per_epoch(data_dir, ("itm",))


def group_pairs(
    batch: dict[str, tf.Tensor], group_size: int, seed: tf.Tensor
) -> dict[str, tf.Tensor]:
    """G positive pairs -> G groups of P pairs, each group contiguous, positive first.

    Per group g (a stateless draw from ``seed``): whether its negatives are other
    captions (text j with image g) or other images (text g with image j), 50/50;
    and P - 1 distinct other positives j of the batch, in random order (with
    repeats only when the batch has fewer than P groups). Text keys are taken
    from the text's row, the visual keys (``patch_*``, ``region_*``) from the
    image's row. ``itm_labels`` is 1 for the positive and 0 for the negatives,
    except a negative of the positive's own product (label 1; its group gets
    ``GROUP_WEIGHTS`` 0).

    Args:
        batch: Clean positive pairs (``clean_pairs_dataset`` without ``itm``),
            [G, ...] each, with ``product_id``.
        group_size: P.
        seed: int64 [2], the stateless seed of this batch.

    Returns:
        The batch keys at [G P, ...] plus ``GROUP_WEIGHTS`` float32 [G P].
    """
    p = group_size
    g = tf.shape(batch["input_ids"])[0]
    product = batch["product_id"]  # [G]
    same = tf.equal(product[:, None], product[None, :])  # [G, G]; own row too
    keys = tf.random.stateless_uniform([g, g + 1], seed)
    # Others first in random order, own-product rows last.
    order = tf.argsort(
        tf.where(same, -1.0, keys[:, :g]), axis=1, direction="DESCENDING"
    )
    others = tf.maximum(g - 1, 1)
    picks = tf.gather(order, tf.range(p - 1) % others, axis=1)  # [G, P-1]
    rows = tf.range(g)[:, None]
    other_text = keys[:, g] < 0.5  # [G]: True = other captions, same image
    text = tf.concat(
        [rows, tf.where(other_text[:, None], picks, tf.tile(rows, [1, p - 1]))], 1
    )  # [G, P]
    image = tf.concat(
        [rows, tf.where(other_text[:, None], tf.tile(rows, [1, p - 1]), picks)], 1
    )
    text, image = tf.reshape(text, [-1]), tf.reshape(image, [-1])  # [G P]
    match = tf.equal(tf.gather(product, text), tf.gather(product, image))
    labels = tf.where(match, constants.ITM_MATCH, constants.ITM_MISMATCH)
    bad = tf.reduce_any(tf.reshape(match, [-1, p])[:, 1:], axis=1)  # [G]
    out = {}
    for key, value in batch.items():
        visual = key.startswith(("patch_", "region_"))
        out[key] = tf.gather(value, image if visual else text)
    out["itm_labels"] = tf.cast(labels, tf.int32)
    out[GROUP_WEIGHTS] = tf.repeat(1.0 - tf.cast(bad, tf.float32), p)
    return out


def build_dataset(
    data_dir,
    config: ExperimentConfig,
    global_batch_size: int,
    start_step: int = 0,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Clean ITM pairs, resumable at ``start_step``; groups of P pairs with the
    group losses (``global_batch_size`` pairs = ``global_batch_size / P`` groups).

    Raises:
        ConfigError: With a group loss, a batch size that is not a multiple of P.
    """
    if _retrieval_loss(config) not in GROUP_LOSSES:
        return clean_pairs_dataset(
            data_dir,
            config,
            global_batch_size,
            start_step,
            training,
            input_context,
            tasks=("itm",),
        )
    p = config.finetune.group_size
    if global_batch_size % p:
        raise ConfigError(
            f"finetune.retrieval_loss {config.finetune.retrieval_loss!r} trains on "
            f"groups of finetune.group_size = {p} pairs: set train.global_batch_size "
            f"to a multiple of {p} (found {global_batch_size})"
        )
    positives = clean_pairs_dataset(
        data_dir,
        config,
        global_batch_size // p,
        start_step,
        training,
        input_context,
        extra_keys=("product_id",),
    )
    base = tf.constant([config.train.seed, _SALT], tf.int64)
    pipe = 0 if input_context is None else input_context.input_pipeline_id

    def groups(step, batch):
        seed = tf.random.experimental.stateless_fold_in(base, step)
        seed = tf.random.experimental.stateless_fold_in(seed, pipe)
        return group_pairs(batch, p, seed)

    return (
        positives.enumerate(start=start_step)
        .map(groups, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )
