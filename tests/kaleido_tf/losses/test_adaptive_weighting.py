"""FashionBERT's adaptive loss against an independent numpy computation of F-Q8."""

import numpy as np
import pytest
import tensorflow as tf

from kaleido_tf.losses.adaptive_weighting import adaptive_combine, adaptive_weights

TASKS = ("mlm", "itm", "mpm")


def np_released_weights(losses, alpha=1.0):
    """The released build_loss as written there: products of the other two tasks'
    (K - n_j), n = softmax(losses)**2, K = alpha * 3 (kaleido_fashionbert.md §3.4)."""
    g = np.asarray(losses, np.float64)
    e = np.exp(g - g.max())
    n = (e / e.sum()) ** 2
    k = 3.0 * alpha
    a, b, c = k - n[0], k - n[1], k - n[2]
    den = a * b + b * c + c * a
    return np.array([b * c, c * a, a * b]) / den


def run(losses, **kwargs):
    combine = adaptive_combine(TASKS, **kwargs)
    shares = {t: tf.constant(v, tf.float32) for t, v in zip(TASKS, losses)}
    total, weights = combine(shares, kwargs.get("norm"))
    return float(total), np.array([float(weights[t]) for t in TASKS])


@pytest.mark.parametrize(
    "losses", [(6.9, 0.69, 0.08), (0.1, 0.2, 0.3), (2.0, 2.0, 2.0), (40.0, 0.0, 1.0)]
)
def test_softmax_of_losses_weights_equal_the_released_formula(losses):
    total, weights = run(losses)
    expected = np_released_weights(losses)
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(total, expected @ np.array(losses), rtol=1e-5)
    assert weights.sum() == pytest.approx(1.0, abs=1e-6)


def test_weights_follow_the_losses_within_the_released_bounds():
    _, weights = run((6.9, 0.69, 0.08))
    assert weights[0] > weights[1] > weights[2]  # "in direct ratio to l_i"
    _, extreme = run((100.0, 0.0, 0.0))  # n = (1, 0, 0): 3/7, 2/7, 2/7
    np.testing.assert_allclose(extreme, [3 / 7, 2 / 7, 2 / 7], atol=1e-6)
    _, equal = run((1.0, 1.0, 1.0))
    np.testing.assert_allclose(equal, [1 / 3] * 3, atol=1e-6)


def test_alpha_changes_k():
    _, weights = run((3.0, 0.5, 0.1), alpha=2.0)
    np.testing.assert_allclose(
        weights, np_released_weights((3.0, 0.5, 0.1), alpha=2.0), rtol=1e-5
    )


def test_eq6_closed_form_equals_the_product_form():
    n = np.array([0.7, 0.05, 0.01])
    got = adaptive_weights(tf.constant(n, tf.float32), 3.0).numpy()
    inverse = 1.0 / (3.0 - n)
    np.testing.assert_allclose(got, inverse / inverse.sum(), rtol=1e-6)


def np_total(losses, alpha=1.0):
    return np_released_weights(losses, alpha) @ np.asarray(losses, np.float64)


@pytest.mark.parametrize("weight_grad", [False, True])
def test_gradients_with_and_without_the_weights_gradient(weight_grad):
    losses = np.array([2.5, 0.7, 0.2])
    x = tf.Variable(losses.astype(np.float32))
    combine = adaptive_combine(TASKS, weight_grad=weight_grad)
    with tf.GradientTape() as tape:
        total, _ = combine({t: x[i] for i, t in enumerate(TASKS)}, None)
    grad = tape.gradient(total, x).numpy()
    if weight_grad:  # d/dl sum_i w_i(l) l_i, by central differences in float64
        eps = 1e-6
        expected = np.array(
            [
                (np_total(losses + eps * e) - np_total(losses - eps * e)) / (2 * eps)
                for e in np.eye(3)
            ]
        )
    else:  # the weights are constants of the step (F-Q8 stop-gradient)
        expected = np_released_weights(losses)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
    # The two modes differ: the weights' own gradient is not negligible here.
    differs = not np.allclose(expected, np_released_weights(losses), atol=1e-3)
    assert differs == weight_grad


def test_gradient_norm_mode_uses_softmaxed_gradient_norms():
    losses = (1.0, 0.3, 0.2)
    norms = {"mlm": 4.0, "itm": 0.5, "mpm": 1.5}
    combine = adaptive_combine(TASKS, mode="gradient_norm")
    shares = {t: tf.constant(v) for t, v in zip(TASKS, losses)}
    by_value = {round(v, 6): norms[t] for t, v in zip(TASKS, losses)}

    def gradient_norm(share):
        return tf.constant(by_value[round(float(share), 6)])

    total, weights = combine(shares, gradient_norm)
    g = np.array([norms[t] for t in TASKS])
    n = (np.exp(g) / np.exp(g).sum()) ** 2
    expected = (1 / (3 - n)) / (1 / (3 - n)).sum()
    np.testing.assert_allclose([float(weights[t]) for t in TASKS], expected, rtol=1e-5)
    np.testing.assert_allclose(float(total), expected @ np.array(losses), rtol=1e-5)


def test_none_and_single_task():
    _, weights = run((5.0, 1.0, 0.1), mode="none")
    np.testing.assert_allclose(weights, [1 / 3] * 3)
    combine = adaptive_combine(("itm",))
    total, weights = combine({"itm": tf.constant(0.7)}, None)
    assert float(weights["itm"]) == 1.0 and float(total) == pytest.approx(0.7)


def test_bad_settings():
    with pytest.raises(ValueError, match="mode"):
        adaptive_combine(TASKS, mode="gradnorm")
    with pytest.raises(ValueError, match="weight_grad"):
        adaptive_combine(TASKS, mode="gradient_norm", weight_grad=True)
