"""ITM hard negatives drawn from ITC similarities (ALBEF's sampler; CommerceMM §3.2).

For each image of the batch one negative text is drawn with probability
``∝ exp(s(w_j, v_i)/τ)`` over the texts j other than its own, and for each text one
negative image the same way (spec §4.4 [D], §4.11 #9). The fusion encoder then sees
B positives and 2B negatives.

Where: the draw runs inside the training step (it needs the model's ITC
similarities), not in tf.data; it is a pure function of its tensors and seed.

Which batch: the **global** batch. Each replica passes the similarities of its local
queries with the all-gathered keys (``losses.contrastive.global_similarities``) and
the offset of its first row. Global row r's draw uses the r-th of one vector of
B_global stateless uniforms made from ``seed``, which every replica computes
identically, so a row's negative depends only on (seed, the global batch), never on
how the batch is split over replicas; replicas agree without communicating.

Reference: CommerceMM §3.2 ("we could sample the hard negative pairs from ITC's
computed similarity matrix"); ALBEF §3 (ITM hard negatives); spec §4.4, §4.6 (a),
§4.11 #9.

Deviation: ALBEF samples from each GPU's local batch; we sample from the gathered
global batch (as BLIP does), which is also what makes the draw independent of the
replica count. The positive is excluded exactly (weight 0), instead of ALBEF's
``softmax + 1e-5`` with a zeroed diagonal.
"""

from __future__ import annotations

import tensorflow as tf


def sample_hard_negatives(
    similarities: tf.Tensor,
    inverse_temperature: tf.Tensor,
    seed: tf.Tensor,
    offset: tf.Tensor | int = 0,
    allowed: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """One negative key per query, drawn ∝ softmax(similarity / τ) without the positive.

    Args:
        similarities: float [B_local, B_global]; cosine similarities of this
            replica's queries (e.g. images) with the global batch's keys (e.g.
            texts). The positive of local row i is column ``offset + i``.
        inverse_temperature: float []; 1/τ of ITC (no gradient flows).
        seed: int32/int64 [2]; stateless seed, the same on every replica (e.g.
            ``tf.random.experimental.stateless_fold_in(base, step)``); use a
            different seed for the image→text and the text→image draw.
        offset: int []; global index of this replica's first query row.
        allowed: bool [B_local, B_global] or None; False = never draw this key
            (e.g. another caption of the same product). None: every key but the
            positive.

    Returns:
        (negatives: int32 [B_local], indices into the global keys; valid: float32
        [B_local], 1 = a negative was drawn, 0 = the row had no candidate, in which
        case its index is the positive's and the pair must get weight 0).
    """
    logits = tf.stop_gradient(
        tf.cast(similarities, tf.float32) * tf.cast(inverse_temperature, tf.float32)
    )
    rows = tf.shape(logits)[0]
    keys = tf.shape(logits)[1]
    positives = tf.cast(offset, tf.int32) + tf.range(rows, dtype=tf.int32)
    candidate = tf.logical_not(
        tf.one_hot(positives, keys, on_value=True, off_value=False)
    )
    if allowed is not None:
        candidate = tf.logical_and(candidate, tf.cast(allowed, tf.bool))
    # Unnormalised probabilities, stable: exp(logit - row max over candidates).
    masked = tf.where(candidate, logits, tf.float32.min)
    row_max = tf.reduce_max(masked, axis=1, keepdims=True)
    weights = tf.where(candidate, tf.exp(masked - row_max), 0.0)  # [B_local, B_global]
    cdf = tf.cumsum(weights, axis=1)
    total = cdf[:, -1:]
    # One uniform per *global* row, identical on every replica.
    uniforms = tf.random.stateless_uniform([keys], seed=seed, dtype=tf.float32)
    u = tf.gather(uniforms, positives)[:, tf.newaxis] * total  # [B_local, 1]
    # Inverse CDF: the first j with cdf_j > u; its probability is > 0 when total > 0.
    drawn = tf.reduce_sum(tf.cast(cdf <= u, tf.int32), axis=1)
    valid = tf.squeeze(total, 1) > 0
    negatives = tf.where(valid, tf.minimum(drawn, keys - 1), positives)
    return negatives, tf.cast(valid, tf.float32)
