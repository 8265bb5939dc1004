"""ITM hard negatives drawn from ITC similarities: never the positive, ∝ softmax."""

import numpy as np
import tensorflow as tf

from kaleido_tf.inputs.itc_hard_negatives import sample_hard_negatives

SEED = tf.constant([3, 14], tf.int64)


def test_never_the_positive_nor_a_disallowed_key():
    rng = np.random.default_rng(0)
    sims = rng.uniform(-1, 1, size=(6, 6)).astype(np.float32)
    np.fill_diagonal(sims, 1.0)  # the positives are by far the most similar
    allowed = np.ones((6, 6), bool)
    allowed[0, 1] = allowed[2, 3] = False
    for s in range(40):
        negatives, valid = sample_hard_negatives(
            sims, tf.constant(30.0), tf.constant([s, 1]), allowed=allowed
        )
        negatives = negatives.numpy()
        assert np.all(negatives != np.arange(6))
        assert negatives[0] != 1 and negatives[2] != 3
        np.testing.assert_array_equal(valid.numpy(), np.ones(6))


def test_draws_follow_the_softmax_without_the_positive():
    n, window = 4000, np.array([-0.2, 0.0, 0.1, 0.3, 0.25])
    scale = 20.0
    # Row i: its positive (column i) is the most similar; the last 5 columns are a
    # fixed window; every other column is far less similar.
    sims = np.full((n, n + 5), -1.0, np.float32)
    sims[np.arange(n), np.arange(n)] = 1.0
    sims[:, n:] = window
    negatives, valid = sample_hard_negatives(sims, tf.constant(scale), SEED)
    negatives = negatives.numpy()
    assert np.all(negatives != np.arange(n))
    assert valid.numpy().min() == 1.0
    # Expected: p_j ∝ exp(scale * s_ij) over j != i (the same for every row).
    row = np.concatenate([np.full(n - 1, -1.0), window]) * scale
    p = np.exp(row - row.max())
    p /= p.sum()
    expected = np.concatenate([p[-5:], [p[:-5].sum()]])
    counts = np.array([(negatives == n + k).sum() for k in range(5)])
    observed = np.concatenate([counts, [n - counts.sum()]]) / n
    np.testing.assert_allclose(observed, expected, atol=0.03)
    assert observed[3] > observed[0]  # harder negatives are drawn more often


def test_a_row_draw_does_not_depend_on_the_replica_split():
    rng = np.random.default_rng(1)
    sims = rng.uniform(-1, 1, size=(8, 8)).astype(np.float32)
    whole, _ = sample_hard_negatives(sims, tf.constant(5.0), SEED)
    # Replica 1 of 2 holds global rows 4..7 against all 8 keys.
    part, _ = sample_hard_negatives(sims[4:], tf.constant(5.0), SEED, offset=4)
    np.testing.assert_array_equal(part.numpy(), whole.numpy()[4:])
    other, _ = sample_hard_negatives(sims, tf.constant(5.0), tf.constant([9, 9]))
    assert not np.array_equal(other.numpy(), whole.numpy())


def test_a_row_without_candidates_is_flagged():
    sims = np.zeros((3, 3), np.float32)
    allowed = np.ones((3, 3), bool)
    allowed[1] = False
    negatives, valid = sample_hard_negatives(
        sims, tf.constant(1.0), SEED, allowed=allowed
    )
    np.testing.assert_array_equal(valid.numpy(), [1, 0, 1])
    assert negatives.numpy()[1] == 1  # the positive's index, to be given weight 0
    # A single-row global batch has no negative at all.
    negatives, valid = sample_hard_negatives(np.zeros((1, 1)), tf.constant(1.0), SEED)
    assert valid.numpy()[0] == 0.0 and negatives.numpy()[0] == 0
