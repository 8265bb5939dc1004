"""What a system provides to the shared trainer, evaluators and exporters (§2.4)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf

# (batch, model outputs) -> (per-entry losses, weights of the same shape).
LossTerm = Callable[[dict, dict], tuple[tf.Tensor, tf.Tensor]]
# (batch, model outputs) -> (per-entry correctness 0/1, weights).
AccuracyTerm = Callable[[dict, dict], tuple[tf.Tensor, tf.Tensor]]
# A loss's gradient norm w.r.t. the shared encoder, over the global batch.
GradientNorm = Callable[[tf.Tensor], tf.Tensor]
# (task id -> this replica's share of its loss, gradient norm or None)
#   -> (total of this replica, task id -> weight used, for logging).
Combine = Callable[
    [dict[str, tf.Tensor], GradientNorm | None],
    tuple[tf.Tensor, dict[str, tf.Tensor]],
]


@dataclasses.dataclass(frozen=True)
class Objectives:
    """The named losses of one experiment, summed with weights by the trainer.

    Attributes:
        losses: Task id -> loss term; logged as ``<id>_loss``.
        weights: Task id -> weight of its loss in the total.
        accuracies: Task id -> accuracy term; logged as ``<id>_accuracy``.
        combine: If set, replaces the fixed weighted sum: it receives each task's
            share of its loss (``losses/reduction.weighted_mean``; the global
            value is their ``global_sum``) and returns the total and the weights
            it used, logged as ``<id>_weight`` (FashionBERT's adaptive loss).
        combine_needs_gradients: ``combine`` calls its ``gradient_norm``
            argument; the trainer then keeps a persistent tape.
    """

    losses: dict[str, LossTerm]
    weights: dict[str, float]
    accuracies: dict[str, AccuracyTerm]
    combine: Combine | None = None
    combine_needs_gradients: bool = False

    def total(
        self, shares: dict[str, tf.Tensor], gradient_norm: GradientNorm | None = None
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """The loss to minimise from each task's share, and the weights used."""
        if self.combine is not None:
            return self.combine(shares, gradient_norm)
        total = tf.constant(0.0)
        for task, share in shares.items():
            total += self.weights[task] * share
        return total, {k: tf.constant(self.weights[k]) for k in shares}


def pair_weight_fn(losses_on_negatives: bool) -> Callable[[dict], tf.Tensor]:
    """batch -> float32 [B]: 1 where an example's masked losses count.

    With ``losses_on_negatives`` every example counts; else only matching pairs
    (the ITM label, conditional masking).
    """

    def pair_weight(batch: dict) -> tf.Tensor:
        if losses_on_negatives:
            return tf.ones_like(batch["itm_labels"], tf.float32)
        return tf.cast(batch["itm_labels"], tf.float32)  # 1 = ITM_MATCH

    return pair_weight


def argmax_accuracy(
    logits_key: str,
    label_key: str,
    weight_key: str | None = None,
    pair_weight: Callable[[dict], tf.Tensor] | None = None,
) -> AccuracyTerm:
    """Accuracy term: argmax of ``out[logits_key]`` == ``batch[label_key]``.

    Weights are ``batch[weight_key]`` (ones without it), times
    ``pair_weight(batch)[:, None]`` if given (per-slot terms of positives only).
    """

    def term(batch: dict, out: dict) -> tuple[tf.Tensor, tf.Tensor]:
        labels = tf.cast(batch[label_key], tf.int32)
        predicted = tf.argmax(out[logits_key], -1, output_type=tf.int32)
        correct = tf.cast(tf.equal(predicted, labels), tf.float32)
        weights = batch[weight_key] if weight_key else tf.ones_like(correct)
        if pair_weight is not None:
            weights = weights * pair_weight(batch)[:, None]
        return correct, weights

    return term


def config_encoder_kwargs(config) -> dict:
    """CrossModalEncoder keyword arguments straight from ``config.model`` (what
    every system shares); a system overrides the patch-embedding choices it fixes."""
    from kaleido_tf import schema

    enc = config.model.encoder
    layout = schema.get_layout(config.model.layout)
    return {
        "vocab_size": enc.vocab_size,
        "hidden_size": enc.hidden_size,
        "num_layers": enc.num_layers,
        "num_attention_heads": enc.num_attention_heads,
        "inner_dim": enc.inner_dim,
        "level_sizes": [n * n for n in layout.grids],
        "max_sequence_length": enc.max_sequence_length,
        "type_vocab_size": enc.type_vocab_size,
        "initializer_range": enc.initializer_range,
        "output_dropout": enc.output_dropout,
        "attention_dropout": enc.attention_dropout,
        "per_level_projection": enc.per_level_projection,
        "per_level_segments": enc.per_level_segments,
        "feature_dropout": enc.feature_dropout,
    }


# (data_dir, config, global_batch_size, start_step, training, input_context)
#   -> tf.data.Dataset; the signature of every system's ``build_dataset``.
BuildDataset = Callable[..., tf.data.Dataset]
# (config, step: int64 scalar tensor, the optimizer step about to be taken)
#   -> extra keyword arguments of the model's call in that step (e.g. K).
CallArguments = Callable[[object, tf.Tensor], dict]


@dataclasses.dataclass(frozen=True)
class StepType:
    """One kind of training step of a recipe with several (CommerceMM §4.6).

    A recipe module that defines ``step_types(config) -> dict[str, StepType]``
    is trained by the Trainer with one input iterator and one compiled train
    function per type; each step's type is drawn from ``probability`` (see
    ``training/step_types.py``). A recipe may also define ``step_schedule(config)
    -> "random" | "alternate"`` (default ``random``).

    Attributes:
        probability: Chance that a step is of this type; the probabilities of a
            recipe's types sum to 1. A type with 0 never runs and needs no data.
        objectives: The losses of this type's steps, logged as ``<id>_loss``
            (loss ids must differ between types).
        build_dataset: This type's input pipeline, with the signature of a
            system's ``build_dataset``; ``start_step`` counts this type's steps.
        data_key: Where its folder comes from: ``"data"`` = the Trainer's
            ``data_dir`` (``--data``); any other key = ``step_data[key]`` (CLI
            ``--step-data KEY=DIR``).
        check_data: ``(data_dir, config) -> manifest``, raising DataError on a
            folder the config cannot read; None = the Trainer's default check.
        call_arguments: Extra keyword arguments of the model's call, a function
            of ``(config, step)`` evaluated inside the replica step (the same on
            every replica), e.g. CommerceMM's K and ITM seed; None = none.

    Reference: CommerceMM (Yu et al., KDD 2022) §3.3; spec
    imagebert_interbert_commercemm.md §4.6, §4.10 #8 (the task-set sampler).
    """

    probability: float
    objectives: Objectives
    build_dataset: BuildDataset
    data_key: str = "data"
    check_data: Callable[..., dict] | None = None
    call_arguments: CallArguments | None = None
