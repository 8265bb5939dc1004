"""CommerceMMEncoder: the K/M split vs a hand-composed stack, attention, tracing."""

import json

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf  # noqa: F401
from kaleido_tf.networks.commerce_mm_encoder import CommerceMMEncoder

B, T, V, H = 3, 7, 31, 16
IMAGE = dict(
    backbone="resnet", image_size=64, resnet_model_id=18, resnet_depth_multiplier=0.125
)
P1 = 1 + (64 // 32) ** 2  # visual [CLS] + 2x2 grid


def _encoder(num_layers=6, num_text_layers=3):
    return CommerceMMEncoder(
        vocab_size=V,
        hidden_size=H,
        num_layers=num_layers,
        num_attention_heads=2,
        inner_dim=24,
        num_text_layers=num_text_layers,
        image_encoder=IMAGE,
        max_sequence_length=8,
    )


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    input_mask = np.ones((B, T), np.int32)
    input_mask[0, 4:] = 0  # padding in one example
    input_mask[2, 6:] = 0
    return {
        "input_ids": tf.constant(rng.integers(1, V, (B, T)), tf.int32),
        "input_mask": tf.constant(input_mask),
        "pixels": tf.constant(rng.uniform(0, 255, (B, 64, 64, 3)), tf.float32),
    }


@pytest.fixture(scope="module")
def encoder():
    enc = _encoder()
    enc(_batch(), training=False)
    return enc


def _mask(valid):
    """[B, L, L] from a numpy [B, L] padding mask: query q may see real key k."""
    return tf.constant(
        np.broadcast_to(valid[:, None, :], valid.shape[:1] + valid.shape[1:] * 2)
    )


def _reference(encoder, batch, k):
    """Text through blocks[:k] alone, then [text; image] through blocks[k:]."""
    text_valid = batch["input_mask"].numpy()
    joint_valid = np.concatenate([text_valid, np.ones((B, P1), np.int32)], axis=1)
    text = encoder.text_embedding(
        batch["input_ids"], tf.zeros_like(batch["input_ids"]), training=False
    )
    for block in encoder.blocks[:k]:
        text = block([text, _mask(text_valid)], training=False)
    image = encoder.image_encoder(batch["pixels"], training=False)
    x = tf.concat([text, image], axis=1)
    for block in encoder.blocks[k:]:
        x = block([x, _mask(joint_valid)], training=False)
    return text.numpy(), image.numpy(), x.numpy()


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [0, 3])
def test_split_matches_a_hand_composed_stack(encoder, k):
    batch = _batch()
    out = encoder(batch, num_text_layers=k, training=False)
    text, image, fused = _reference(encoder, batch, k)
    _close(out["text_encoder_output"], text)
    _close(out["text_cls"], text[:, 0])
    _close(out["image_encoder_output"], image)
    _close(out["image_cls"], image[:, 0])
    _close(out["sequence_output"], fused)
    _close(out["fused_text_cls"], fused[:, 0])
    _close(out["fused_image_cls"], fused[:, T])
    assert out["sequence_output"].shape == (B, T + P1, H)
    assert out["embedding_table"].shape == (V, H)
    if k == 0:  # no text encoder: the raw text embeddings enter fusion
        embeddings = encoder.embed_text(batch["input_ids"], training=False)
        _close(out["text_encoder_output"], embeddings)


def test_default_k_is_the_constructor_value(encoder):
    batch = _batch()
    a = encoder(batch, training=False)["sequence_output"]
    b = encoder(batch, num_text_layers=3, training=False)["sequence_output"]
    c = encoder(batch, num_text_layers=2, training=False)["sequence_output"]
    _close(a, b)
    assert not np.allclose(a.numpy(), c.numpy(), atol=1e-4)


@pytest.mark.parametrize("k", [3, tf.constant(3)], ids=["int", "tensor"])
def test_text_layers_attend_only_to_text(encoder, monkeypatch, k):
    """(K, M) = (3, 3): the attention of layers 1-3 has only the text's keys."""
    probabilities = {}
    for i, block in enumerate(encoder.blocks):
        attention = block._attention_layer
        original = attention._masked_softmax

        def record(scores, mask=None, i=i, original=original):
            probabilities.setdefault(i, []).append(original(scores, mask).numpy())
            return original(scores, mask)

        monkeypatch.setattr(attention, "_masked_softmax", record)
    encoder(_batch(), num_text_layers=k, training=False)
    assert sorted(probabilities) == list(range(6))
    valid = _batch()["input_mask"].numpy().astype(bool)
    for i in range(6):
        (p,) = probabilities[i]  # each block ran once: [B, N, queries, keys]
        if i < 3:
            assert p.shape == (B, 2, T, T)  # no image key exists in these layers
            mass = p.sum(axis=-1)
        else:
            assert p.shape == (B, 2, T + P1, T + P1)
            image_mass = p[:, :, :T, T:].sum(axis=-1)  # text queries -> image
            assert np.all(image_mass > 1e-3)
            mass = p[:, :, :, :T].sum(axis=-1) + p[:, :, :, T:].sum(axis=-1)
        _close(mass, np.ones_like(mass))
        # Padded text keys get exactly zero probability in every layer.
        padded = ~valid[:, None, None, :]
        assert np.all(np.where(padded, p[..., :T], 0.0) == 0.0)


def test_text_encoder_output_does_not_depend_on_the_image(encoder):
    a, b = _batch(seed=0), dict(_batch(seed=0))
    b["pixels"] = _batch(seed=9)["pixels"]
    out_a = encoder(a, num_text_layers=3, training=False)
    out_b = encoder(b, num_text_layers=3, training=False)
    np.testing.assert_array_equal(
        out_a["text_encoder_output"].numpy(), out_b["text_encoder_output"].numpy()
    )
    assert not np.allclose(
        out_a["fused_text_cls"].numpy(), out_b["fused_text_cls"].numpy(), atol=1e-4
    )
    pixels = tf.Variable(a["pixels"])
    with tf.GradientTape(persistent=True) as tape:
        out = encoder(dict(a, pixels=pixels), num_text_layers=3, training=False)
        text_cls = tf.reduce_sum(out["text_cls"])
        fused_cls = tf.reduce_sum(out["fused_text_cls"])
    assert tape.gradient(text_cls, pixels) is None
    assert np.any(tape.gradient(fused_cls, pixels).numpy() != 0)


def test_one_trace_serves_every_k():
    enc = _encoder(num_layers=2, num_text_layers=1)
    batch = _batch()
    expected = {
        k: enc(batch, num_text_layers=k, training=False)["sequence_output"].numpy()
        for k in range(3)
    }

    @tf.function
    def forward(inputs, k):
        return enc(inputs, num_text_layers=k, training=False)["sequence_output"]

    for k in (1, 0, 2):
        _close(forward(batch, tf.constant(k)), expected[k])
    assert forward.experimental_get_tracing_count() == 1
    for a in range(3):  # every K gives a different network
        for b in range(a):
            assert not np.allclose(expected[a], expected[b], atol=1e-4), (a, b)


def test_config_round_trip_and_every_variable_trains(encoder):
    config = encoder.get_config()
    clone = CommerceMMEncoder.from_config(config)
    assert json.dumps(clone.get_config(), sort_keys=True) == json.dumps(
        config, sort_keys=True
    )
    batch = _batch()
    clone(batch, training=False)
    clone.set_weights(encoder.get_weights())
    _close(
        clone(batch, training=False)["sequence_output"],
        encoder(batch, training=False)["sequence_output"],
    )
    with tf.GradientTape() as tape:
        out = clone(batch, training=True)
        loss = sum(
            tf.reduce_sum(tf.square(out[key] - 0.3))
            for key in ("text_cls", "sequence_output")
        )
    grads = tape.gradient(loss, clone.trainable_variables)
    for var, grad in zip(clone.trainable_variables, grads):
        if "self_attention/key/bias" in var.name:
            continue  # the softmax cancels a key bias: zero by mathematics
        assert grad is not None, var.name
        assert np.any(tf.convert_to_tensor(grad).numpy() != 0), var.name


@pytest.mark.parametrize("k", [-1, 7])
def test_out_of_range_k_raises(encoder, k):
    with pytest.raises(ValueError, match="num_text_layers"):
        encoder(_batch(), num_text_layers=k, training=False)
    with pytest.raises(ValueError, match="num_text_layers"):
        _encoder(num_layers=6, num_text_layers=k)


def test_mixed_precision_fuses_float16_and_float32_states():
    # Under mixed_float16 the text states (after LayerNorm) and the image tokens
    # may differ in dtype; fusion must still run and agree with float32 weights.
    import tf_keras

    reference = _encoder(num_layers=2, num_text_layers=1)
    batch = _batch()
    expected = reference(batch, training=False)["sequence_output"].numpy()
    tf_keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = _encoder(num_layers=2, num_text_layers=1)
        mixed(batch, training=False)
        mixed.set_weights(reference.get_weights())
        out = mixed(batch, training=False)["sequence_output"]
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")
    np.testing.assert_allclose(out.numpy().astype(np.float32), expected, atol=0.05)
