"""Masked Segment Modeling (MSM) span masking, InterBERT §3.2 "Masked Group Modeling".

Same contract as ``masking.AGMMasker``: each example carries a row of
``num_uniforms`` uniform draws (one stateless op per example in the pipeline);
``SpanMasker.select`` and ``SpanMasker.replace_tokens`` turn a group of rows into
masks with vectorised, static-shape TensorFlow ops, so an example's masks depend only
on its own row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from kaleido_tf.inputs.masking import TokenReplacement, masked_slots

__all__ = ["SpanMasker", "masked_slots"]  # masked_slots: for existing importers


class SpanMasker(TokenReplacement):
    """Chooses MSM spans of WordPieces and applies 80/10/10 replacement.

    Per example (imagebert_interbert_commercemm.md §3.4 and §3.11 #9):

    1. Each maskable token ([CLS], [SEP], [PAD] and the other
       ``special_token_ids`` never are) is an anchor with probability
       ``anchor_rate`` (10%). If none is drawn and ``force_anchor`` is set, the
       maskable token with the lowest anchor draw becomes the anchor (a uniform
       choice), so every example, in particular every positive pair, has one.
    2. Each anchor starts a span of 1..``max_span_length`` WordPieces (uniform;
       the paper's "0 to 2 following words"). A span stops before the first
       token that is not maskable, so it never reaches [SEP]; overlapping spans
       merge (a token is masked once).
    3. If more than M = ``max_masked_tokens`` tokens are masked, the spans are
       kept in the random order of their anchors' draws until M tokens are kept
       (the last kept span may be cut); the rest are left unmasked.
    4. ``replace_tokens``: each masked token becomes [MASK] with probability 0.8,
       a random token with 0.1, and stays itself with 0.1 (per token), and the
       masked positions are listed in M static slots.

    The expected rate is about 20% of the maskable tokens (10% anchors x mean span
    2, less where spans merge or stop at [SEP]).

    Labels: the masker runs on every example, positive or negative, so whether a
    text is masked says nothing of its ITM label; the MSM loss counts positive
    pairs only (spec §3.11 #12) by multiplying ``masked_lm_weights`` by
    ``itm_labels == constants.ITM_MATCH`` in the system's objective.

    Args:
        max_seq_length: T.
        mask_id: Id of [MASK].
        random_token_ids: int32 [V']. Ids a token may be replaced with.
        special_token_ids: Ids never masked ([CLS], [SEP], [PAD], ...).
        max_masked_tokens: M, slots of ``masked_lm_positions``.
        anchor_rate: Probability that a maskable token is an anchor (0.1).
        max_span_length: Longest span (3: the anchor plus 0-2 tokens).
        force_anchor: Draw one anchor when none was drawn.
        mask_token_prob: Probability that a masked token becomes [MASK].
        random_token_prob: Probability that it becomes a random token.

    Example:
        >>> masker = SpanMasker(36, mask_id=103, random_token_ids=ids,
        ...                     special_token_ids=(0, 101, 102), max_masked_tokens=12)
        >>> u = tf.random.stateless_uniform([g, masker.num_uniforms], seed)
        >>> masks = masker.select(input_ids, u)
        >>> text = masker.replace_tokens(input_ids, masks["token_masked"], u)

    Reference: InterBERT §3.2 "Masked Segment Modeling", Eq. 5;
    imagebert_interbert_commercemm.md §3.4 [D], §3.11 #9, #12.

    Deviation: the released code masks one random span of up to the whole text;
    the paper's multi-segment scheme is implemented (spec §3.4). A random
    replacement token is never a special token. The M-slot cap (step 3) is ours.
    """

    def __init__(
        self,
        max_seq_length: int,
        mask_id: int,
        random_token_ids: np.ndarray | Sequence[int],
        special_token_ids: Sequence[int],
        max_masked_tokens: int = 12,
        anchor_rate: float = 0.1,
        max_span_length: int = 3,
        force_anchor: bool = True,
        mask_token_prob: float = 0.8,
        random_token_prob: float = 0.1,
    ) -> None:
        if max_seq_length < 1:
            raise ValueError(f"max_seq_length must be >= 1, got {max_seq_length}")
        if max_masked_tokens < 1:
            raise ValueError(f"max_masked_tokens must be >= 1, got {max_masked_tokens}")
        if not 0.0 < anchor_rate < 1.0:
            raise ValueError(f"anchor_rate must be in (0, 1), got {anchor_rate}")
        if max_span_length < 1:
            raise ValueError(f"max_span_length must be >= 1, got {max_span_length}")
        if mask_token_prob < 0 or random_token_prob < 0:
            raise ValueError("mask_token_prob and random_token_prob must be >= 0")
        if mask_token_prob + random_token_prob > 1.0:
            raise ValueError(
                "mask_token_prob + random_token_prob must be <= 1, got "
                f"{mask_token_prob} + {random_token_prob}"
            )
        random_token_ids = np.asarray(random_token_ids, np.int32)
        if random_token_ids.ndim != 1 or not len(random_token_ids):
            raise ValueError("random_token_ids must be a non-empty id list")
        self.max_seq_length = max_seq_length
        self.mask_id = mask_id
        self.random_token_ids = random_token_ids
        self.special_token_ids = tuple(int(i) for i in special_token_ids)
        self.max_masked_tokens = max_masked_tokens
        self.anchor_rate = anchor_rate
        self.max_span_length = max_span_length
        self.force_anchor = force_anchor
        self.mask_token_prob = mask_token_prob
        self.random_token_prob = random_token_prob
        self._random_ids = tf.constant(random_token_ids)
        self._special_ids = tf.constant(self.special_token_ids, tf.int32)

    @property
    def num_uniforms(self) -> int:
        """Uniform draws one example consumes: an anchor draw, a span-length draw,
        a replacement draw and a random-token draw per text position."""
        return 4 * self.max_seq_length

    def _split(self, uniforms: tf.Tensor) -> dict[str, tf.Tensor]:
        """Named column blocks of the [G, num_uniforms] draws."""
        names = ("anchor", "length", "token_uniform", "random_token")
        t = self.max_seq_length
        blocks = tf.split(uniforms[:, : self.num_uniforms], [t] * len(names), 1)
        return {n: tf.cast(b, tf.float32) for n, b in zip(names, blocks)}

    def maskable(self, input_ids: tf.Tensor) -> tf.Tensor:
        """bool [G, T]: 1 = the token may be masked (not a special token)."""
        ids = tf.cast(input_ids, tf.int32)
        if not self.special_token_ids:
            return tf.ones_like(ids, tf.bool)
        special = tf.reduce_any(ids[..., tf.newaxis] == self._special_ids, axis=-1)
        return ~special

    def select(self, input_ids: tf.Tensor, uniforms: tf.Tensor) -> dict[str, tf.Tensor]:
        """Chooses the masked spans of a group of G examples.

        Args:
            input_ids: int32 [G, T]. Original token ids (``[CLS] .. [SEP]`` and
                padding).
            uniforms: float [G, >= num_uniforms]. Each example's draws in [0, 1).

        Returns:
            ``token_masked`` bool [G, T]: 1 = masked (at most M per example).
            ``anchors`` bool [G, T]: 1 = an anchor was drawn there (forced
            anchors included; before the M cap).
            ``span_lengths`` int32 [G, T]: the drawn span length at anchors, 0
            elsewhere (before clipping at special tokens).
        """
        u = self._split(uniforms)
        t, m, s = self.max_seq_length, self.max_masked_tokens, self.max_span_length
        maskable = self.maskable(input_ids)  # [G, T]
        anchors = maskable & (u["anchor"] < self.anchor_rate)
        if self.force_anchor:
            # The maskable token with the lowest draw; uniform among them.
            lowest = tf.argmin(
                tf.where(maskable, u["anchor"], 2.0), axis=1, output_type=tf.int32
            )
            none = ~tf.reduce_any(anchors, axis=1) & tf.reduce_any(maskable, axis=1)
            forced = tf.one_hot(lowest, t, on_value=True, off_value=False)
            anchors = anchors | (none[:, tf.newaxis] & forced)
        length = 1 + tf.cast(tf.floor(u["length"] * s), tf.int32)
        length = tf.where(anchors, tf.minimum(length, s), 0)  # [G, T]

        # Token j is covered by the anchor at j - k when that span is longer than
        # k and tokens j - k .. j are all maskable. key: the covering anchors'
        # lowest draw (its order for the M cap).
        masked = tf.zeros_like(maskable)
        key = tf.fill(tf.shape(u["anchor"]), 2.0)
        run = maskable  # tokens j - k .. j all maskable
        for k in range(min(s, t)):
            if k:
                run = run & _shift_right(maskable, k, False)
            covered = run & (_shift_right(length, k, 0) > k)
            masked = masked | covered
            key = tf.where(
                covered, tf.minimum(key, _shift_right(u["anchor"], k, 2.0)), key
            )
        # Keep at most M: by anchor draw, then (stable sort) by position.
        order = tf.argsort(tf.where(masked, key, 3.0), axis=1, stable=True)
        rank = tf.argsort(order, axis=1, stable=True)  # [G, T]
        token_masked = masked & (rank < m)
        return {
            "token_masked": token_masked,
            "anchors": anchors,
            "span_lengths": length,
        }


def _shift_right(x: tf.Tensor, k: int, fill) -> tf.Tensor:
    """``x[:, j - k]`` at column j (``fill`` for j < k)."""
    if k == 0:
        return x
    pad = tf.fill([tf.shape(x)[0], k], tf.constant(fill, x.dtype))
    return tf.concat([pad, x[:, :-k]], axis=1)
