"""ImageBERT's region embedding (PatchEmbedding with a dummy sequence position)."""

import numpy as np
import tensorflow as tf

import kaleido_tf  # noqa: F401
from kaleido_tf.layers.patch_embedding import PatchEmbedding
from kaleido_tf.networks.cross_modal_encoder import CrossModalEncoder
from tests.helpers import check_layer

H, R, D = 16, 6, 8


def _region_layer(**kwargs):
    return PatchEmbedding(
        H, (R,), dropout=0.0, sequence_position=True, projection_bias=True, **kwargs
    )


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(2, R, D)).astype(np.float32)
    boxes = rng.random((2, R, 5)).astype(np.float32)
    return tf.constant(features), tf.constant(boxes)


def _numpy_layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_region_embedding_matches_numpy():
    layer = _region_layer()
    features, boxes = _inputs()
    layer(features, boxes)
    # Non-trivial LayerNorm and biases, so that each term is checked.
    rng = np.random.default_rng(1)
    for w in (layer.image_projections[0].bias, layer.position_projection.bias):
        w.assign(rng.normal(size=w.shape).astype(np.float32))
    ln = layer.layer_norms[0]
    ln.gamma.assign(rng.normal(size=ln.gamma.shape).astype(np.float32))
    ln.beta.assign(rng.normal(size=ln.beta.shape).astype(np.float32))
    got = layer(features, boxes).numpy()

    img = layer.image_projections[0]
    loc = layer.position_projection
    x = (
        features.numpy() @ img.kernel.numpy()
        + img.bias.numpy()
        + boxes.numpy() @ loc.kernel.numpy()
        + loc.bias.numpy()
        + layer.segment_table.numpy()[1]  # the image segment
        + layer.sequence_position_vector.numpy()  # the dummy sequence position
    )
    want = _numpy_layer_norm(x, ln.gamma.numpy(), ln.beta.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_every_visual_token_gets_the_same_sequence_position():
    """No order among regions: identical regions at any two slots embed alike, and
    permuting the regions permutes their embeddings (no per-slot position)."""
    layer = _region_layer()
    features, boxes = _inputs()
    same_f = tf.concat([features[:, :1]] * R, axis=1)  # every slot the same
    same_b = tf.concat([boxes[:, :1]] * R, axis=1)
    out = layer(same_f, same_b).numpy()
    for i in range(1, R):
        np.testing.assert_allclose(out[:, i], out[:, 0], atol=1e-6)
    perm = np.random.default_rng(2).permutation(R)
    out = layer(features, boxes).numpy()
    permuted = layer(tf.gather(features, perm, axis=1), tf.gather(boxes, perm, axis=1))
    np.testing.assert_allclose(permuted.numpy(), out[:, perm], atol=1e-6)
    # A kaleido-style index table would break this; the vector is one [H] row.
    assert tuple(layer.sequence_position_vector.shape) == (H,)


def test_region_embedding_layer_contract():
    features, boxes = _inputs()
    # image kernel+bias, box kernel+bias, LN gamma+beta, segment table, sequence pos
    check_layer(_region_layer(), lambda layer: layer(features, boxes), (2, R, H), 8)


def test_encoder_passes_the_region_options_and_round_trips():
    encoder = CrossModalEncoder(
        20, H, 1, 2, 24, (R,), patch_sequence_position=True, patch_projection_bias=True
    )
    config = encoder.get_config()
    assert config["patch_sequence_position"] and config["patch_projection_bias"]
    clone = CrossModalEncoder.from_config(config)
    assert clone.patch_embedding.sequence_position
    assert clone.patch_embedding.projection_bias
