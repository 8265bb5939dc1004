"""ImageBERT's retrieval fine-tuning losses over groups of P candidate pairs.

A group is P contiguous pairs of a batch: the positive pair first, then P-1
negative pairs (the same image with other captions, or the same caption with
other images). Every pair's score is the ITM match margin
``s = logit[1] - logit[0]`` (class 1 = match, ``constants.ITM_MATCH``), the
log-odds of P(match) = softmax(itm_logits)[1] and the score retrieval ranks by
(``evaluation/ranking_metrics.match_margin``): the paper's ``s(t)`` on the
first-token output is not specified further, and the margin is the one scalar
of a 2-way head that does not change when both logits move together.

- ``group_cross_entropy``: CE over the P scores, the positive as the class
  (the paper's "multi-class" loss, ImageBERT §4.3 / Table 4 part 4).
- ``hardest_negative_triplet``: ``max(0, margin - s+ + max_j s-_j)``
  (the paper's printed ``max[0, s(t+), s(n_h)]`` is garbled; spec §2.6 [D]).

The binary loss is the per-pair ITM softmax cross-entropy
(``losses/classification.softmax_cross_entropy``). Each function returns
per-group values; ``losses/reduction.weighted_mean`` reduces them.

Reference: imagebert_interbert_commercemm.md §2.6, §2.11 rows 15-18.
"""

from __future__ import annotations

import tensorflow as tf


def match_scores(itm_logits: tf.Tensor) -> tf.Tensor:
    """``logit[1] - logit[0]``: float32 [N] from ITM logits float [N, 2]."""
    logits = tf.cast(itm_logits, tf.float32)
    return logits[:, 1] - logits[:, 0]


def _groups(scores: tf.Tensor, group_size: int) -> tf.Tensor:
    """[N] -> [N / P, P]; N must be a multiple of P."""
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2, got {group_size}")
    return tf.reshape(tf.cast(scores, tf.float32), [-1, group_size])


def group_cross_entropy(scores: tf.Tensor, group_size: int) -> tf.Tensor:
    """Softmax cross-entropy of each group with its first pair as the answer.

    Args:
        scores: float [G P]; pair scores, groups contiguous, positive first.
        group_size: P.

    Returns:
        float32 [G]: ``-log softmax(s_g)[0]``.
    """
    s = _groups(scores, group_size)
    return -tf.nn.log_softmax(s, axis=-1)[:, 0]


def hardest_negative_triplet(
    scores: tf.Tensor, group_size: int, margin: float = 0.2
) -> tf.Tensor:
    """Triplet hinge against the group's highest-scoring negative.

    Args:
        scores: float [G P]; pair scores, groups contiguous, positive first.
        group_size: P.
        margin: The hinge margin alpha (0.2, spec §2.11 row 16).

    Returns:
        float32 [G]: ``max(0, margin - s_g[0] + max_{j >= 1} s_g[j])``.
    """
    s = _groups(scores, group_size)
    hardest = tf.reduce_max(s[:, 1:], axis=-1)
    return tf.nn.relu(margin - s[:, 0] + hardest)
