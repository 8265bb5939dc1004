"""Per-token and per-region Bernoulli masking (ImageBERT §3.3, UNITER-style).

Unlike Kaleido-BERT's ``AGMMasker`` (a fixed budget of whole words), every text
token and every real region is chosen independently with a probability. As in
``masking.py``, each example brings its own row of uniform draws (one stateless op
per example in the pipeline's per-record map), so an example's masks are a pure
function of (seed, epoch, example) and do not depend on grouping or batching.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from kaleido_tf.inputs.masking import masked_slots, replace_masked_tokens


def _first_slots(chosen: tf.Tensor, keys: tf.Tensor, slots: int) -> tf.Tensor:
    """``chosen`` [G, N] limited to the ``slots`` entries of smallest key per row."""
    big = tf.cast(2.0, keys.dtype)
    order = tf.argsort(tf.where(chosen, keys, big), axis=1, stable=True)
    rank = tf.argsort(order, axis=1, stable=True)
    return chosen & (rank < slots)


class TokenMasker:
    """BERT's token masking: each text token chosen with ``rate``, then 80/10/10.

    A token is eligible when it belongs to a word (``word_index >= 0``: never
    [CLS], [SEP] or padding). A chosen token becomes [MASK] with
    ``mask_token_prob``, a random non-special token with ``random_token_prob``,
    else stays. At most ``max_masked_tokens`` (M) tokens per example: when more
    are chosen, the M with the smallest selection draws are kept (a uniformly
    random subset), so the static slot count never biases the rate by position.

    Args:
        max_seq_length: T.
        mask_id: Id of [MASK].
        random_token_ids: int32 [V']. Ids a token may be replaced with.
        max_masked_tokens: M.
        rate: Probability that a token is chosen.
        mask_token_prob: Probability that a chosen token becomes [MASK].
        random_token_prob: Probability that it becomes a random token.

    Reference: ImageBERT §3.3 Task 1 ("15% ... 80% [MASK], 10% random, 10%
    unchanged"); BERT §3.1.

    Deviation: a random replacement is never a special token (BERT may draw any
    id).
    """

    def __init__(
        self,
        max_seq_length: int,
        mask_id: int,
        random_token_ids: np.ndarray | Sequence[int],
        max_masked_tokens: int = 16,
        rate: float = 0.15,
        mask_token_prob: float = 0.8,
        random_token_prob: float = 0.1,
    ) -> None:
        if not 0.0 < rate < 1.0:
            raise ValueError(f"rate must be in (0, 1), got {rate}")
        if max_masked_tokens < 1:
            raise ValueError(f"max_masked_tokens must be >= 1, got {max_masked_tokens}")
        if mask_token_prob < 0 or random_token_prob < 0:
            raise ValueError("mask_token_prob and random_token_prob must be >= 0")
        if mask_token_prob + random_token_prob > 1.0:
            raise ValueError("mask_token_prob + random_token_prob must be <= 1")
        ids = np.asarray(random_token_ids, np.int32)
        if ids.ndim != 1 or not len(ids):
            raise ValueError("random_token_ids must be a non-empty id list")
        self.max_seq_length = max_seq_length
        self.mask_id = mask_id
        self.max_masked_tokens = max_masked_tokens
        self.rate = rate
        self.mask_token_prob = mask_token_prob
        self.random_token_prob = random_token_prob
        self._random_ids = tf.constant(ids)

    @property
    def num_uniforms(self) -> int:
        """Draws per example: a selection, a replacement and a random-id draw per
        text position."""
        return 3 * self.max_seq_length

    def apply(
        self, input_ids: tf.Tensor, word_index: tf.Tensor, uniforms: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """Masks a group of G texts.

        Args:
            input_ids: int32 [G, T]. Original ids.
            word_index: int32 [G, T]. Word of each token; -1 special or padding.
            uniforms: float [G, >= num_uniforms]. The examples' draws in [0, 1).

        Returns:
            ``input_ids`` int32 [G, T] after replacement; ``masked_lm_positions``
            int32 [G, M] (ascending, 0 on padding slots); ``masked_lm_ids`` int32
            [G, M] original ids (0 on padding); ``masked_lm_weights`` float32
            [G, M] (1 = a masked token).
        """
        t, m = self.max_seq_length, self.max_masked_tokens
        select, replace, pick = tf.split(uniforms[:, : 3 * t], 3, axis=1)
        input_ids = tf.cast(input_ids, tf.int32)
        chosen = (tf.cast(word_index, tf.int32) >= 0) & (select < self.rate)
        masked = _first_slots(chosen, select, m)
        return replace_masked_tokens(
            input_ids,
            masked,
            replace,
            pick,
            mask_id=self.mask_id,
            random_token_ids=self._random_ids,
            max_masked_tokens=m,
            mask_token_prob=self.mask_token_prob,
            random_token_prob=self.random_token_prob,
        )


class RegionMasker:
    """ImageBERT's region masking: each real region chosen with ``rate``; a chosen
    region's feature is zeroed with ``zero_prob``, else kept; its location is kept.

    At most ``max_masked_regions`` (K) per example, a uniformly random subset of
    the chosen ones when more are chosen. The same regions serve MOC and MRFR.

    Args:
        num_regions: R, the region slots.
        max_masked_regions: K.
        rate: Probability that a real region is chosen.
        zero_prob: Probability that a chosen region's feature is set to zero.

    Reference: ImageBERT §3.3 Tasks 2-3 ("15% ... zero out 90%, keep 10%");
    imagebert_interbert_commercemm.md §2.4 [D] (locations kept, one shared set).
    """

    def __init__(
        self,
        num_regions: int,
        max_masked_regions: int = 32,
        rate: float = 0.15,
        zero_prob: float = 0.9,
    ) -> None:
        if not 0.0 < rate < 1.0:
            raise ValueError(f"rate must be in (0, 1), got {rate}")
        if not 0.0 <= zero_prob <= 1.0:
            raise ValueError(f"zero_prob must be in [0, 1], got {zero_prob}")
        if max_masked_regions < 1:
            raise ValueError(
                f"max_masked_regions must be >= 1, got {max_masked_regions}"
            )
        self.num_regions = num_regions
        self.max_masked_regions = max_masked_regions
        self.rate = rate
        self.zero_prob = zero_prob

    @property
    def num_uniforms(self) -> int:
        """Draws per example: a selection and a zero/keep draw per region slot."""
        return 2 * self.num_regions

    def apply(
        self, features: tf.Tensor, region_mask: tf.Tensor, uniforms: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """Masks the regions of a group of G examples.

        Args:
            features: float32 [G, R, D]. Original region features.
            region_mask: int [G, R]. 1 = a real region.
            uniforms: float [G, >= num_uniforms]. The examples' draws in [0, 1).

        Returns:
            ``features`` float32 [G, R, D] with the zeroed regions;
            ``positions`` int32 [G, K] (ascending region indices, 0 on padding);
            ``weights`` float32 [G, K] (1 = a masked region);
            ``targets`` float32 [G, K, D] the original features at ``positions``;
            ``zeroed`` bool [G, R] (1 = feature set to zero).
        """
        r, k = self.num_regions, self.max_masked_regions
        select, zero = tf.split(uniforms[:, : 2 * r], 2, axis=1)
        chosen = (tf.cast(region_mask, tf.int32) > 0) & (select < self.rate)
        masked = _first_slots(chosen, select, k)
        zeroed = masked & (zero < self.zero_prob)
        positions, weights = masked_slots(masked, k)
        return {
            "features": features * (1.0 - tf.cast(zeroed, features.dtype))[..., None],
            "positions": positions,
            "weights": weights,
            "targets": tf.gather(features, positions, batch_dims=1),
            "zeroed": zeroed,
        }
