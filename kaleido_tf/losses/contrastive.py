"""Symmetric InfoNCE with a learned temperature and global negatives (CommerceMM ITC).

Reduction under ``tf.distribute`` (STYLE pitfall 6). Each replica all-gathers the
*keys* of the global batch and scores only its *local* queries against them, so the
rows of the global similarity matrix are partitioned over the replicas; a row's
positive sits at column ``offset + i``, ``offset`` being the number of rows held by
the replicas before this one. The loss functions return one value and one weight per
local row; ``losses/reduction.weighted_mean`` divides the local weighted sum by the
global weight sum and the trainer sums the replicas' shares, so every row is counted
exactly once and the total equals the single-device loss of the same global batch.
Gradients are not double counted either: ``ReplicaContext.all_gather``'s gradient
all-reduces (SUM) the upstream gradient of the gathered keys and returns each replica
its own slice, so replica r's tape receives the key-side gradient of *every* replica's
rows for its own embeddings, plus its own query-side gradient; the trainer's SUM
all-reduce of the variable gradients then gives exactly d(total)/d(theta).

Reference: CommerceMM §3.2 (ITC, "following ALBEF"), §3.3 (Omni-Retrieval);
spec imagebert_interbert_commercemm.md §4.4, §4.11 #7-8 (τ init 0.07, clamped to
[0.001, 0.5], shared by ITC and the 9 Omni terms; in-batch negatives over the global
batch, no queue).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf
import tf_keras

# Logit given to a masked-out key: exp() underflows to exactly 0 in float32.
MASKED_LOGIT = -1e9


@tf_keras.utils.register_keras_serializable(package="kaleido_tf")
class LearnedTemperature(tf_keras.layers.Layer):
    """A learned softmax temperature τ, stored as ``log(1/τ)`` and kept in range.

    The variable ``log_inverse_temperature`` starts at ``log(1/initial_temperature)``.
    Its constraint clips it after every optimizer update to
    ``[log(1/max_temperature), log(1/min_temperature)]`` (ALBEF's in-place
    ``temp.clamp_(0.001, 0.5)``; tf_keras optimizers apply variable constraints after
    ``apply_gradients``); the forward pass clips the same way, so the scale is in
    range even before the first update.

    Args:
        initial_temperature: τ at initialization (CLIP and ALBEF: 0.07).
        min_temperature: Smallest τ (ALBEF: 0.001, i.e. a logit scale of 1000).
        max_temperature: Largest τ (ALBEF: 0.5, i.e. a logit scale of 2).
        **kwargs: Standard layer arguments.

    Call arguments:
        similarities: float [...]; cosine similarities (any shape; a scalar 1.0
            returns the inverse temperature itself).

    Returns:
        float32 [...]; ``similarities / τ``, differentiable w.r.t. τ.

    Example:
        >>> temperature = LearnedTemperature()
        >>> outputs["contrastive_scale"] = temperature(tf.constant(1.0))  # 1/τ

    Reference: CommerceMM §3.2 ("τ is a learned temperature parameter"); spec §4.4,
    §4.11 #7 (init 0.07, clamp [0.001, 0.5]).

    Deviation: τ is stored as ``log(1/τ)`` (CLIP) instead of τ itself (ALBEF), so
    gradient steps are relative; the clamp range is ALBEF's.
    """

    def __init__(
        self,
        initial_temperature: float = 0.07,
        min_temperature: float = 0.001,
        max_temperature: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 < min_temperature <= max_temperature:
            raise ValueError(
                "need 0 < min_temperature <= max_temperature, got "
                f"min_temperature={min_temperature}, max_temperature={max_temperature}"
            )
        if not min_temperature <= initial_temperature <= max_temperature:
            raise ValueError(
                f"initial_temperature={initial_temperature} is outside "
                f"[{min_temperature}, {max_temperature}]"
            )
        self.initial_temperature = initial_temperature
        self.min_temperature = min_temperature
        self.max_temperature = max_temperature
        self._low = math.log(1.0 / max_temperature)
        self._high = math.log(1.0 / min_temperature)

    def build(self, input_shape) -> None:
        self.log_inverse_temperature = self.add_weight(
            name="log_inverse_temperature",
            shape=[],
            dtype=tf.float32,
            initializer=tf_keras.initializers.Constant(
                math.log(1.0 / self.initial_temperature)
            ),
            constraint=lambda v: tf.clip_by_value(v, self._low, self._high),
            trainable=True,
        )
        super().build(input_shape)

    def call(self, similarities: tf.Tensor) -> tf.Tensor:
        log_scale = tf.clip_by_value(
            tf.cast(self.log_inverse_temperature, tf.float32), self._low, self._high
        )
        return tf.cast(similarities, tf.float32) * tf.exp(log_scale)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "initial_temperature": self.initial_temperature,
                "min_temperature": self.min_temperature,
                "max_temperature": self.max_temperature,
            }
        )
        return config


def gather_across_replicas(values):
    """All replicas' rows of ``values``, and where this replica's rows start.

    Args:
        values: A tensor [B_local, ...] or a tuple/list of them with the same
            B_local; float, or integers below 2^24 (they travel as float32).

    Returns:
        (global values, same structure and dtypes, [B_global, ...] each in replica
        order; offset: int32 [] of this replica's first row). Outside a strategy,
        or with one replica, ``(values, 0)``. Differentiable: the gradient of a
        gathered tensor is all-reduced (SUM) across replicas and sliced back to
        this replica's rows.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return values, tf.constant(0, tf.int32)
    flat = tf.nest.flatten(values)
    rows = tf.shape(flat[0])[0]
    # One collective for everything: [B_local, sum of widths + 1], the last column
    # the replica id, so the offset holds for unequal row counts too. (TF's
    # all_gather gradient cannot take several tensors of different shapes.)
    columns = [tf.reshape(tf.cast(x, tf.float32), [rows, -1]) for x in flat]
    widths = [tf.shape(c)[1] for c in columns]
    replica = tf.cast(ctx.replica_id_in_sync_group, tf.float32)
    columns.append(tf.fill([rows, 1], replica))
    packed = ctx.all_gather(tf.concat(columns, axis=1), axis=0)
    *parts, owners = tf.split(packed, widths + [1], axis=1)
    offset = tf.reduce_sum(tf.cast(owners[:, 0] < replica, tf.int32))
    gathered = [
        tf.cast(tf.reshape(part, tf.concat([[-1], tf.shape(x)[1:]], 0)), x.dtype)
        for part, x in zip(parts, flat)
    ]
    for g, x in zip(gathered, flat):
        g.set_shape([None] + x.shape[1:].as_list())
    return tf.nest.pack_sequence_as(values, gathered), offset


def _normalise(x: tf.Tensor) -> tf.Tensor:
    return tf.math.l2_normalize(tf.cast(x, tf.float32), axis=-1)


def _cross_entropy(
    queries: tf.Tensor,
    keys_all: tf.Tensor,
    present_all: tf.Tensor | None,
    offset: tf.Tensor,
    inverse_temperature: tf.Tensor,
) -> tf.Tensor:
    # [B_local, B_global]
    logits = tf.matmul(queries, keys_all, transpose_b=True)
    logits *= tf.cast(inverse_temperature, tf.float32)
    if present_all is not None:
        logits = tf.where(present_all[tf.newaxis, :] > 0, logits, MASKED_LOGIT)
    labels = offset + tf.range(tf.shape(logits)[0], dtype=tf.int32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def global_similarities(
    queries: tf.Tensor, keys: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Cosine similarities of this replica's queries with the global batch's keys.

    Args:
        queries: float [B_local, E]; L2-normalised here (idempotent on the heads'
            already normalised outputs).
        keys: float [B_local, E]; this replica's keys; all-gathered here.

    Returns:
        (similarities: float32 [B_local, B_global], offset: int32 []): the positive
        of local row i is global column ``offset + i``.
    """
    k_all, offset = gather_across_replicas(_normalise(keys))
    # [B_local, B_global]
    return tf.matmul(_normalise(queries), k_all, transpose_b=True), offset


def info_nce(
    queries: tf.Tensor,
    keys: tf.Tensor,
    inverse_temperature: tf.Tensor,
    key_mask: tf.Tensor | None = None,
) -> tf.Tensor:
    """One direction of InfoNCE: each local query against the global batch's keys.

    Args:
        queries: float [B_local, E]; query embeddings (L2-normalised here).
        keys: float [B_local, E]; key embeddings of the same rows (all-gathered
            here); row i of ``keys`` is the positive of row i of ``queries``.
        inverse_temperature: float []; 1/τ (``LearnedTemperature`` output).
        key_mask: float or bool [B_local] or None; 1 = the key exists, 0 = it is
            removed from every denominator (all-gathered here). None: all exist.

    Returns:
        float32 [B_local]; ``-log softmax_j(s_ij / τ)[offset + i]`` over the global
        keys j. A row whose own key is masked gets a meaningless finite value: its
        caller must give it weight 0.
    """
    local = [_normalise(keys)]
    if key_mask is not None:
        local.append(tf.cast(key_mask, tf.float32))
    gathered, offset = gather_across_replicas(local)
    present = gathered[1] if key_mask is not None else None
    return _cross_entropy(
        _normalise(queries), gathered[0], present, offset, inverse_temperature
    )


def symmetric_info_nce(
    first: tf.Tensor,
    second: tf.Tensor,
    inverse_temperature: tf.Tensor,
    first_mask: tf.Tensor | None = None,
    second_mask: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Symmetric InfoNCE per row: first→second plus second→first, global negatives.

    With ``s_ij = cos(first_i, second_j)``, row i's value is
    ``-log softmax_j(s_ij/τ)[i] - log softmax_j(s_ji/τ)[i]``, j over the global
    batch; the weighted mean of the values over the global batch is CommerceMM's
    ``L_itc`` averaged over i (spec §4.4 [D]: the mean over i of both directions).
    Both embeddings (and masks) are all-gathered in one collective.

    Args:
        first: float [B_local, E]; e.g. the text embeddings ``f(w)``.
        second: float [B_local, E]; e.g. the image embeddings ``g(v)``; row i is
            paired with row i of ``first``.
        inverse_temperature: float []; 1/τ.
        first_mask: float or bool [B_local] or None; 1 = ``first_i`` exists. A
            missing one is neither a query nor a negative. None: all exist.
        second_mask: the same for ``second``.

    Returns:
        (values: float32 [B_local], weights: float32 [B_local]); a ``LossTerm``
        pair. The weight of row i is ``first_mask_i * second_mask_i``; values of
        weight-0 rows are 0.

    Reference: CommerceMM §3.2, the ITC equation; §3.3, the L_omni equation.
    """
    first, second = _normalise(first), _normalise(second)
    ones = tf.ones_like(first[:, 0])
    first_present = ones if first_mask is None else tf.cast(first_mask, tf.float32)
    second_present = ones if second_mask is None else tf.cast(second_mask, tf.float32)
    local = [first, second]
    if first_mask is not None or second_mask is not None:
        local += [first_present, second_present]
    gathered, offset = gather_across_replicas(local)
    first_all, second_all = gathered[0], gathered[1]
    first_p, second_p = (
        (gathered[2], gathered[3]) if len(gathered) > 2 else (None, None)
    )
    forward = _cross_entropy(first, second_all, second_p, offset, inverse_temperature)
    backward = _cross_entropy(second, first_all, first_p, offset, inverse_temperature)
    weights = first_present * second_present
    values = tf.where(weights > 0, forward + backward, 0.0)
    return values, weights


def itc_loss_term(
    text_key: str = "text_embedding",
    image_key: str = "image_embedding",
    scale_key: str = "contrastive_scale",
) -> Callable[[dict, dict], tuple[tf.Tensor, tf.Tensor]]:
    """The ITC ``LossTerm``: symmetric InfoNCE of the model's text and image heads.

    Args:
        text_key: Model output float [B, E]; ``f(w_cls)`` of the text encoder.
        image_key: Model output float [B, E]; ``g(v_cls)`` of the image encoder.
        scale_key: Model output float []; 1/τ (``LearnedTemperature(1.0)``).

    Returns:
        ``(batch, outputs) -> (values [B], weights [B])``; weights are 1.

    Reference: CommerceMM §3.2 (ITC); §4 (its weight, 1.0).
    """

    def term(batch: dict, outputs: dict) -> tuple[tf.Tensor, tf.Tensor]:
        del batch
        return symmetric_info_nce(
            outputs[text_key], outputs[image_key], outputs[scale_key]
        )

    return term
