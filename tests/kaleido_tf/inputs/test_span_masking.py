"""SpanMasker (MSM) against a loop-by-loop numpy version of the rule."""

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf  # noqa: F401
from kaleido_tf.inputs.span_masking import SpanMasker, masked_slots

PAD, CLS, SEP, MASK = 0, 2, 3, 4
SPECIAL = (PAD, CLS, SEP)
RANDOM_IDS = np.arange(5, 31)
T = 36


def _texts(rng, g, t=T, min_words=1):
    """[CLS] w.. [SEP] [PAD].. with random lengths."""
    ids = np.zeros((g, t), np.int32)
    for row in ids:
        n = rng.integers(min_words, t - 1)
        row[0], row[n + 1] = CLS, SEP
        row[1 : n + 1] = rng.integers(5, 31, n)
    return ids


def _reference(ids, u, m, rate=0.1, max_span=3, force=True):
    """The MSM rule, one example at a time, with Python loops."""
    t = len(ids)
    maskable = ~np.isin(ids, SPECIAL)
    draw, length_draw = u[:t], u[t : 2 * t]
    anchors = maskable & (draw < rate)
    if force and not anchors.any() and maskable.any():
        anchors[np.argmin(np.where(maskable, draw, 2.0))] = True
    key = np.full(t, 2.0)
    for a in np.flatnonzero(anchors):
        span = min(1 + int(np.floor(length_draw[a] * max_span)), max_span)
        for j in range(a, min(a + span, t)):
            if not maskable[j]:
                break
            key[j] = min(key[j], draw[a])
    masked = key < 2.0
    kept = sorted(np.flatnonzero(masked), key=lambda j: (key[j], j))[:m]
    out = np.zeros(t, bool)
    out[kept] = True
    return out, anchors


def _masker(m=T, **kwargs):
    return SpanMasker(T, MASK, RANDOM_IDS, SPECIAL, max_masked_tokens=m, **kwargs)


@pytest.mark.parametrize("m,force", [(T, True), (6, True), (T, False)])
def test_select_matches_the_numpy_rule(m, force):
    rng = np.random.default_rng(1)
    ids = _texts(rng, 400)
    masker = _masker(m, force_anchor=force)
    u = rng.random((400, masker.num_uniforms)).astype(np.float32)
    got = masker.select(tf.constant(ids), tf.constant(u))
    for i in range(len(ids)):
        masked, anchors = _reference(ids[i], u[i], m, force=force)
        np.testing.assert_array_equal(got["token_masked"].numpy()[i], masked)
        np.testing.assert_array_equal(got["anchors"].numpy()[i], anchors)
    masked = got["token_masked"].numpy()
    assert masked.sum(1).max() <= m
    # [CLS], [SEP] and [PAD] are never masked.
    assert not masked[np.isin(ids, SPECIAL)].any()
    anchors = got["anchors"].numpy()
    if force:
        assert anchors.any(1).all()  # every text has >= 1 maskable token here
    else:
        assert not anchors.any(1).all()


def test_spans_are_one_to_three_tokens_uniformly():
    rng = np.random.default_rng(2)
    ids = _texts(rng, 500)
    masker = _masker()
    u = rng.random((500, masker.num_uniforms)).astype(np.float32)
    got = masker.select(tf.constant(ids), tf.constant(u))
    lengths = got["span_lengths"].numpy()[got["anchors"].numpy()]
    assert set(np.unique(lengths)) == {1, 2, 3}
    np.testing.assert_allclose(
        np.bincount(lengths)[1:] / len(lengths), 1 / 3, atol=0.04
    )
    # A span starts at its anchor: the token before a run's first token is no
    # masked token, and every run starts at an anchor.
    masked = got["token_masked"].numpy()
    starts = masked & ~np.pad(masked, [[0, 0], [1, 0]])[:, :-1]
    assert np.all(got["anchors"].numpy()[starts])


def test_masking_rate_matches_a_simulation_of_the_rule():
    """About 20% of the maskable tokens (10% anchors x mean span 2, less merges)."""
    rng = np.random.default_rng(3)
    masker = _masker()
    ids = _texts(rng, 2000, min_words=10)
    rates = []
    for seed in range(4):  # stateless draws, as the pipeline makes them
        u = tf.random.stateless_uniform([len(ids), masker.num_uniforms], (seed, 7))
        masked = masker.select(tf.constant(ids), u)["token_masked"].numpy()
        rates.append(masked.sum() / (~np.isin(ids, SPECIAL)).sum())
    rate = float(np.mean(rates))
    # Independent simulation: numpy draws through the loop rule.
    sim = np.random.default_rng(4)
    sim_ids = _texts(sim, 6000, min_words=10)
    sim_masked = [_reference(x, sim.random(4 * T), T)[0] for x in sim_ids]
    expected = np.sum(sim_masked) / (~np.isin(sim_ids, SPECIAL)).sum()
    print(f"MSM rate {rate:.4f}, simulated {expected:.4f}")
    assert abs(rate - expected) < 0.01
    assert 0.15 < expected < 0.22


def test_replace_tokens_80_10_10_and_slots():
    rng = np.random.default_rng(5)
    ids = _texts(rng, 300)
    masker = _masker(m=8)
    u = rng.random((300, masker.num_uniforms)).astype(np.float32)
    masked = masker.select(tf.constant(ids), tf.constant(u))["token_masked"]
    out = masker.replace_tokens(tf.constant(ids), masked, tf.constant(u))
    masked = masked.numpy()
    new = out["input_ids"].numpy()
    np.testing.assert_array_equal(new[~masked], ids[~masked])
    draw = u[:, 2 * T : 3 * T][masked]
    is_mask = new[masked] == MASK
    np.testing.assert_array_equal(is_mask, draw < 0.8)
    random_part = (draw >= 0.8) & (draw < 0.9)
    assert np.isin(new[masked][random_part], RANDOM_IDS).all()
    np.testing.assert_array_equal(new[masked][draw >= 0.9], ids[masked][draw >= 0.9])
    for i in range(len(ids)):
        positions = np.flatnonzero(masked[i])
        n = len(positions)
        np.testing.assert_array_equal(
            out["masked_lm_positions"].numpy()[i, :n], positions
        )
        np.testing.assert_array_equal(
            out["masked_lm_ids"].numpy()[i, :n], ids[i, positions]
        )
        np.testing.assert_array_equal(
            out["masked_lm_weights"].numpy()[i], (np.arange(8) < n).astype(np.float32)
        )
        assert not out["masked_lm_positions"].numpy()[i, n:].any()


def test_masked_slots_with_more_slots_than_positions():
    masked = tf.constant([[False, True, True], [False, False, False]])
    positions, weights = masked_slots(masked, 5)
    np.testing.assert_array_equal(positions.numpy(), [[1, 2, 0, 0, 0], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(weights.numpy(), [[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]])


def test_bad_arguments():
    with pytest.raises(ValueError, match="anchor_rate"):
        _masker(anchor_rate=0.0)
    with pytest.raises(ValueError, match="mask_token_prob"):
        _masker(mask_token_prob=0.95, random_token_prob=0.1)


def test_runs_in_a_traced_function_with_unknown_batch():
    rng = np.random.default_rng(6)
    ids = _texts(rng, 5)
    masker = _masker(m=5)
    u = rng.random((5, masker.num_uniforms)).astype(np.float32)
    spec = [tf.TensorSpec([None, T], tf.int32), tf.TensorSpec([None, None], tf.float32)]

    def mask(ids, u):
        return masker.replace_tokens(ids, masker.select(ids, u)["token_masked"], u)

    graph = tf.function(mask, input_signature=spec)(ids, u)
    eager = mask(tf.constant(ids), tf.constant(u))
    for key, value in eager.items():
        np.testing.assert_array_equal(graph[key].numpy(), value.numpy())
