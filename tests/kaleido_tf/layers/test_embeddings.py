"""Text and patch embeddings against numpy."""

import numpy as np
import tensorflow as tf

from kaleido_tf.layers.patch_embedding import PatchEmbedding
from kaleido_tf.layers.text_embedding import TextEmbedding
from tests.helpers import check_layer


def layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_text_embedding_matches_numpy():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 31, (3, 7)).astype(np.int32)
    seg = rng.integers(0, 2, (3, 7)).astype(np.int32)
    layer = TextEmbedding(31, 12, max_sequence_length=16, dropout=0.0)
    check_layer(layer, lambda layer: layer(ids, seg), (3, 7, 12), trainable_weights=5)
    out = layer(ids, seg).numpy()
    w = layer.embedding_table.numpy()
    x = w[ids] + layer.type_table.numpy()[seg] + layer.position_table.numpy()[:7]
    ln = layer.layer_norm
    expected = layer_norm(x, ln.gamma.numpy(), ln.beta.numpy())
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_patch_embedding_matches_numpy():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(3, 5, 8)).astype(np.float32)
    boxes = rng.random((3, 5, 5)).astype(np.float32)
    layer = PatchEmbedding(12, (1, 4), dropout=0.0)
    check_layer(
        layer, lambda layer: layer(feats, boxes), (3, 5, 12), trainable_weights=5
    )
    out = layer(feats, boxes).numpy()
    x = feats @ layer.image_projections[0].kernel.numpy()
    x += boxes @ layer.position_projection.kernel.numpy()
    x += layer.segment_table.numpy()[1]  # the image segment 'I'
    ln = layer.layer_norms[0]
    np.testing.assert_allclose(
        out, layer_norm(x, ln.gamma.numpy(), ln.beta.numpy()), rtol=1e-5, atol=1e-5
    )


def test_per_level_patch_embedding_keeps_levels_apart():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(2, 5, 8)).astype(np.float32)
    boxes = rng.random((2, 5, 5)).astype(np.float32)
    layer = PatchEmbedding(
        12, (1, 4), per_level_projection=True, per_level_segments=True, dropout=0.0
    )
    # 2 projections + 2 x (gamma, beta) + box projection + segment table.
    check_layer(
        layer, lambda layer: layer(feats, boxes), (2, 5, 12), trainable_weights=8
    )
    out = layer(feats, boxes).numpy()
    x = feats[:, 1:] @ layer.image_projections[1].kernel.numpy()
    x += boxes[:, 1:] @ layer.position_projection.kernel.numpy()
    x += layer.segment_table.numpy()[2]  # level 2 -> segment id 2
    ln = layer.layer_norms[1]
    np.testing.assert_allclose(
        out[:, 1:],
        layer_norm(x, ln.gamma.numpy(), ln.beta.numpy()),
        rtol=1e-5,
        atol=1e-5,
    )
    assert tf.reduce_all(tf.shape(out) == [2, 5, 12])
