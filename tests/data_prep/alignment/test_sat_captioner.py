"""The SAT captioner: loss terms against hand and numpy computations, the attention
layer against numpy, config round trips, and a training step that moves every
decoder weight and no encoder weight."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from data_prep.alignment.sat_captioner import (
    GridEncoder,
    SATCaptioner,
    SoftAttention,
    attention_penalty,
    caption_nll,
    captioner_loss,
)


def test_attention_penalty_by_hand():
    # Two captions, three steps, two locations; the second caption's last step
    # is padding and does not count.
    alpha = np.array(
        [
            [[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]],
            [[1.0, 0.0], [0.3, 0.7], [0.6, 0.4]],
        ],
        np.float32,
    )
    mask = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    # Caption 1: sums (1.6, 1.4) -> 0.36 + 0.16; caption 2: (1.3, 0.7) -> 0.09 + 0.09.
    np.testing.assert_allclose(
        attention_penalty(alpha, mask).numpy(), [0.52, 0.18], rtol=1e-6
    )


def test_captioner_loss_is_nll_plus_lambda_penalty():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 6)).astype(np.float32)
    alpha = rng.dirichlet(np.ones(5), size=(2, 4)).astype(np.float32)
    targets = np.array([[4, 5, 2, 0], [3, 2, 0, 0]], np.int32)  # <end> = 2, pad = 0
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    mask = targets != 0
    nll = -np.array(
        [
            sum(log_p[b, t, targets[b, t]] for t in range(4) if mask[b, t])
            for b in (0, 1)
        ]
    )
    sums = (alpha * mask[:, :, None]).sum(1)
    penalty = ((1 - sums) ** 2).sum(1)
    np.testing.assert_allclose(caption_nll(targets, logits).numpy(), nll, rtol=1e-5)
    out = captioner_loss(targets, {"logits": logits, "alpha": alpha}, 0.7)
    np.testing.assert_allclose(out["loss"].numpy(), nll + 0.7 * penalty, rtol=1e-5)
    np.testing.assert_allclose(out["penalty"].numpy(), penalty, rtol=1e-5)


def test_soft_attention_matches_numpy():
    layer = SoftAttention(5)
    layer.build_for(channels=3, units=4)
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(2, 7, 3)).astype(np.float32)
    hidden = rng.normal(size=(2, 4)).astype(np.float32)
    projected = layer.project_features(feats)
    context, alpha = layer(projected, feats, hidden)
    wa, ba = (v.numpy() for v in layer.feature_projection.weights)
    (wh,) = (v.numpy() for v in layer.hidden_projection.weights)
    ws, bs = (v.numpy() for v in layer.score.weights)
    energy = (np.tanh(feats @ wa + ba + (hidden @ wh)[:, None, :]) @ ws)[..., 0] + bs
    expected = np.exp(energy) / np.exp(energy).sum(-1, keepdims=True)
    np.testing.assert_allclose(alpha.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        context.numpy(), np.einsum("bg,bgc->bc", expected, feats), rtol=1e-5, atol=1e-6
    )


@pytest.fixture(scope="module")
def model():
    m = SATCaptioner(
        13,
        "mobilenet_v3_small",
        "expanded_conv_7/Add",
        64,
        embedding_dim=6,
        lstm_units=7,
        attention_dim=5,
        dropout=0.1,
        name="sat_captioner",
    )
    m.build_decoder()
    return m


def test_config_round_trips(model):
    for layer in (
        model,
        model.encoder,
        model.attention,
        GridEncoder("mobilenet_v3_small", "expanded_conv_2/Add", 64, grid_size=4),
    ):
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert json.dumps(clone.get_config(), sort_keys=True) == json.dumps(
            config, sort_keys=True
        )


def test_grid_shapes_and_pooling(model):
    images = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), np.uint8)
    assert model.grid_shape == (4, 4)
    assert model.encoder(images).shape == (3, 16, 48)
    pooled = GridEncoder("mobilenet_v3_small", "expanded_conv_2/Add", 64, grid_size=4)
    full = GridEncoder("mobilenet_v3_small", "expanded_conv_2/Add", 64)
    assert full.grid_shape == (8, 8) and pooled.grid_shape == (4, 4)
    a = full(images).numpy().reshape(3, 4, 2, 4, 2, -1).mean(axis=(2, 4))
    np.testing.assert_allclose(
        pooled(images).numpy(), a.reshape(3, 16, -1), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="grid_size"):
        GridEncoder("mobilenet_v3_small", "expanded_conv_2/Add", 64, grid_size=3)


def test_training_step_moves_decoder_not_encoder(model):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 255, (3, 64, 64, 3), np.uint8)
    ids = np.array([[1, 5, 6, 7, 2, 0], [1, 8, 2, 0, 0, 0], [1, 9, 10, 11, 12, 2]])
    grid = model.encoder(images)
    trainable = model.trainable_variables
    frozen = model.encoder.weights
    assert trainable and frozen and not model.encoder.trainable_weights
    names = {v.name for v in trainable}
    assert not names & {v.name for v in frozen}
    before = [v.numpy().copy() for v in trainable]
    frozen_before = [v.numpy().copy() for v in frozen]
    opt = tf_keras.optimizers.SGD(0.5)
    with tf.GradientTape() as tape:
        out = model({"grid_features": grid, "input_ids": ids[:, :-1]}, training=True)
        loss = tf.reduce_mean(captioner_loss(ids[:, 1:], out)["loss"])
    opt.apply_gradients(zip(tape.gradient(loss, trainable), trainable))
    for v, b in zip(trainable, before):
        assert not np.allclose(v.numpy(), b), v.name
    for v, b in zip(frozen, frozen_before):
        np.testing.assert_array_equal(v.numpy(), b)
    assert out["logits"].shape == (3, 5, 13) and out["alpha"].shape == (3, 5, 16)
    np.testing.assert_allclose(out["alpha"].numpy().sum(-1), 1.0, rtol=1e-5)


def test_invalid_arguments_name_the_argument():
    with pytest.raises(ValueError, match="attention_dim"):
        SoftAttention(0)
    with pytest.raises(ValueError, match="dropout"):
        SATCaptioner(5, "mobilenet_v3_small", "expanded_conv_7/Add", 64, dropout=1.0)
