"""FashionBERT's adaptive task weights, Eq. 6 (kaleido_fashionbert.md §3.4, F-Q8)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from kaleido_tf.losses.reduction import global_sum

ADAPTIVE_MODES = ("softmax_losses", "gradient_norm", "none")


def adaptive_weights(squared_norms: tf.Tensor, k: float) -> tf.Tensor:
    """The closed form of Eq. 6: ``w_i = (K - n_i)^-1 / sum_j (K - n_j)^-1``.

    Args:
        squared_norms: float32 [L]. n_i, the squared "gradient" term of each task;
            in [0, 1) the weights are positive.
        k: K (the paper: L, the number of tasks; the released code: alpha * L).

    Returns:
        float32 [L] weights summing to 1.

    Reference: FashionBERT Eq. 6; the released ``build_loss`` writes the same
    value as ``w_0 = (K - n_1)(K - n_2) / den`` (products of the other tasks').
    """
    inverse = 1.0 / (k - tf.cast(squared_norms, tf.float32))
    return inverse / tf.reduce_sum(inverse)


def adaptive_combine(
    tasks: Sequence[str],
    mode: str = "softmax_losses",
    alpha: float = 1.0,
    weight_grad: bool = False,
) -> Callable:
    """The ``Objectives.combine`` of FashionBERT's adaptive loss (Algorithm 1).

    Each step, from the global loss values l_i (all replicas): ``softmax_losses``
    sets n_i = softmax(l)_i^2 (the released code, F-Q8); ``gradient_norm`` sets
    n_i = softmax(g)_i^2 with g_i the norm of the gradient of l_i w.r.t. the
    shared encoder (the paper's ``||grad l_i||``, pushed into [0, 1) by the
    softmax); ``none`` gives w_i = 1/L. The total is ``sum_i w_i l_i`` (Eq. 4).

    Args:
        tasks: The task ids, in loss order.
        mode: One of ``ADAPTIVE_MODES``.
        alpha: K = alpha * L (released code: alpha = 1).
        weight_grad: Gradients also flow through the weights (the released code
            has no stop-gradient); only with ``softmax_losses``. Default: the
            weights are constants of the step (Algorithm 1 computes w, then
            optimises Eq. 4).

    Returns:
        ``combine(shares, gradient_norm) -> (total, {task: weight})``; the total
        of one replica, whose sum over replicas is the global weighted loss (and
        whose gradients sum to its gradient).

    Raises:
        ValueError: An unknown mode, or ``weight_grad`` with ``gradient_norm``.
    """
    if mode not in ADAPTIVE_MODES:
        raise ValueError(f"mode must be one of {ADAPTIVE_MODES}, got {mode!r}")
    if weight_grad and mode != "softmax_losses":
        raise ValueError("weight_grad needs mode 'softmax_losses'")
    tasks = tuple(tasks)
    k = alpha * len(tasks)

    def combine(shares: dict, gradient_norm=None):
        local = tf.stack([tf.cast(shares[t], tf.float32) for t in tasks])  # [L]
        total_loss = tf.stop_gradient(global_sum(local))  # [L], global values
        if mode == "none" or len(tasks) == 1:  # one task: softmax 1, K - n = 0
            weights = tf.fill([len(tasks)], 1.0 / len(tasks))
        elif mode == "softmax_losses":
            # The value of the global losses, the gradient of this replica's
            # shares: summed over replicas, the gradients are the global ones.
            losses = total_loss + local - tf.stop_gradient(local)
            weights = adaptive_weights(tf.nn.softmax(losses) ** 2, k)
        else:
            if gradient_norm is None:
                raise ValueError("mode 'gradient_norm' needs the trainer's gradients")
            norms = tf.stack([gradient_norm(shares[t]) for t in tasks])
            weights = adaptive_weights(tf.nn.softmax(tf.stop_gradient(norms)) ** 2, k)
        fixed = tf.stop_gradient(weights)
        total = tf.reduce_sum(fixed * local)
        if weight_grad:
            # Value 0; gradient sum_i l_i d w_i (the released code's extra term).
            total += tf.reduce_sum(total_loss * (weights - fixed))
        return total, {t: fixed[i] for i, t in enumerate(tasks)}

    return combine
