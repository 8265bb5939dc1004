"""Modality randomization: K, the text/fusion split, drawn per step (CommerceMM §3.4).

Every replica and every worker must use the same K in a step, or the all-reduced
gradients would mix different architectures. K is therefore a stateless function
of ``(seed, step)``: no random state, nothing to synchronise, and a restarted run
draws the same K for the same step.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from kaleido_tf.errors import ConfigError

if TYPE_CHECKING:  # TensorFlow loads lazily: the config schema imports this module
    import tensorflow as tf

# Distinguishes this stream from other stateless draws keyed by (seed, step).
_STREAM = 0x4D52  # "MR"


@dataclasses.dataclass(frozen=True)
class ModalityRandomizationConfig:
    """Which K a randomized step may draw.

    K ~ Uniform{min_text_layers, ..., max_text_layers}; the spec's default is
    Uniform{0, ..., L - 1}, so the fusion encoder keeps at least one layer
    (M = L - K >= 1).

    Attributes:
        enabled: Re-sample K every step (the 100K-step 2nd stage); off = the
            model's fixed K.
        min_text_layers: Smallest K (0 = early fusion, no text encoder; ITC is
            skipped in such steps, spec §4.7).
        max_text_layers: Largest K; None = L - 1.

    Reference: CommerceMM §3.4; spec imagebert_interbert_commercemm.md §4.7,
    §4.11 #17 (the distribution is [D]: the paper does not give it).
    """

    enabled: bool = False
    min_text_layers: int = 0
    max_text_layers: int | None = None

    def text_layer_range(self, num_layers: int) -> tuple[int, int]:
        """The inclusive range ``(lo, hi)`` of K for an L-layer stack.

        Args:
            num_layers: L.

        Returns:
            ``(lo, hi)`` with 0 <= lo <= hi <= L - 1.

        Raises:
            ConfigError: The range is empty or leaves no fusion layer.
        """
        hi = num_layers - 1 if self.max_text_layers is None else self.max_text_layers
        lo = self.min_text_layers
        if not 0 <= lo <= hi <= num_layers - 1:
            raise ConfigError(
                f"modality randomization draws K from [{lo}, {hi}], which must lie "
                f"in [0, {num_layers - 1}] for a {num_layers}-layer stack (at least "
                "one fusion layer): fix min_text_layers / max_text_layers"
            )
        return lo, hi

    def choices(self, num_layers: int) -> tuple[int, ...]:
        """Every K a step may draw, each with probability 1 / len(choices)."""
        lo, hi = self.text_layer_range(num_layers)
        return tuple(range(lo, hi + 1))

    def sample(self, seed, step, num_layers: int) -> tf.Tensor:
        """K for ``step``; see ``sample_num_text_layers``."""
        lo, hi = self.text_layer_range(num_layers)
        return sample_num_text_layers(seed, step, lo, hi)


def sample_num_text_layers(seed, step, min_text_layers: int, max_text_layers: int):
    """K ~ Uniform{min_text_layers, ..., max_text_layers}, a function of (seed, step).

    Stateless (Philox keyed by the seed and the step), so every replica of a
    ``strategy.run`` and every worker that passes the same ``seed`` and ``step``
    gets the same K; call it inside the replica function with the optimizer's
    ``iterations`` (a mirrored variable, equal on all replicas), or once outside
    and pass K in. The tensor K feeds ``CommerceMMEncoder(num_text_layers=K)``
    without retracing.

    Args:
        seed: int or int scalar tensor; the run's seed.
        step: int or int scalar tensor; the global step (``optimizer.iterations``).
        min_text_layers: Smallest K, inclusive.
        max_text_layers: Largest K, inclusive.

    Returns:
        int32 scalar tensor.
    """
    if not 0 <= min_text_layers <= max_text_layers:
        raise ValueError(f"empty range of K: [{min_text_layers}, {max_text_layers}]")
    import tensorflow as tf

    key = tf.stack([tf.cast(seed, tf.int64), tf.constant(_STREAM, tf.int64)])  # [2]
    key = tf.random.experimental.stateless_fold_in(
        key, tf.cast(step, tf.int64), alg="philox"
    )
    return tf.random.stateless_uniform(
        [],
        seed=key,
        minval=min_text_layers,
        maxval=max_text_layers + 1,
        dtype=tf.int32,
        alg="philox",
    )
