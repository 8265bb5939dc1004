"""The one place losses are reduced: by a global denominator (STYLE pitfall 6).

Under ``tf.distribute`` each replica sums its weighted per-example losses and divides
by the weight sum of the **global** batch (all-reduced), so the gradients summed over
replicas equal those of one device on the whole batch, whatever the replica count.
"""

import tensorflow as tf


def global_sum(value: tf.Tensor) -> tf.Tensor:
    """Sum of ``value`` over all replicas (itself outside a distribution strategy)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def weighted_mean(values: tf.Tensor, weights: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """This replica's share of the global weighted mean.

    Args:
        values: float32 [...]; per-example (or per-slot) losses.
        weights: float32, same shape; 0 excludes an entry.

    Returns:
        (share, global weight sum): share = sum(values * weights) / global sum of
        weights, 0 when no entry has weight anywhere (divide_no_nan).
    """
    weights = tf.cast(weights, tf.float32)
    local = tf.reduce_sum(tf.cast(values, tf.float32) * weights)
    total = global_sum(tf.reduce_sum(weights))
    return tf.math.divide_no_nan(local, total), total
