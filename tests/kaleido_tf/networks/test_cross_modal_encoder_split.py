"""CrossModalEncoder's split API: transform(embed_text, embed_visual) == call."""

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf  # noqa: F401
from kaleido_tf.networks.cross_modal_encoder import CrossModalEncoder


def _inputs(b=3, t=6, p=5, d=8, seed=0):
    rng = np.random.default_rng(seed)
    input_mask = np.ones((b, t), np.int32)
    input_mask[0, 4:] = 0
    patch_mask = np.ones((b, p), np.int32)
    patch_mask[1, 3:] = 0
    return {
        "input_ids": tf.constant(rng.integers(1, 20, (b, t)), tf.int32),
        "input_mask": tf.constant(input_mask),
        "segment_ids": tf.zeros((b, t), tf.int32),
        "patch_features": tf.constant(rng.normal(size=(b, p, d)), tf.float32),
        "patch_boxes": tf.constant(rng.random((b, p, 5)), tf.float32),
        "patch_mask": tf.constant(patch_mask),
    }


@pytest.mark.parametrize("attention", ["bidirectional", "seq2seq"])
def test_split_methods_compose_to_call(attention):
    encoder = CrossModalEncoder(
        vocab_size=20,
        hidden_size=16,
        num_layers=2,
        num_attention_heads=2,
        inner_dim=24,
        level_sizes=(5,),
        max_sequence_length=8,
        attention=attention,
    )
    inputs = _inputs()
    whole = encoder(inputs, training=False)
    text = encoder.embed_text(inputs["input_ids"], inputs["segment_ids"])
    visual = encoder.embed_visual(inputs["patch_features"], inputs["patch_boxes"])
    assert text.shape == (3, 6, 16) and visual.shape == (3, 5, 16)
    split = encoder.transform(
        text, visual, inputs["input_mask"], inputs["patch_mask"], training=False
    )
    for key in ("sequence_output", "pooled_output", "embedding_table"):
        np.testing.assert_allclose(
            split[key].numpy(), whole[key].numpy(), rtol=1e-5, atol=1e-6
        )


def test_cached_visual_embeddings_serve_other_captions():
    """One image's cached visual embeddings, paired with two captions, match call."""
    encoder = CrossModalEncoder(20, 16, 1, 2, 24, (5,), max_sequence_length=8)
    a, b = _inputs(seed=1), _inputs(seed=2)
    visual = encoder.embed_visual(a["patch_features"], a["patch_boxes"])
    for captions in (a, b):
        text = encoder.embed_text(captions["input_ids"], captions["segment_ids"])
        got = encoder.transform(text, visual, captions["input_mask"], training=False)
        pair = dict(captions, patch_features=a["patch_features"])
        pair["patch_boxes"] = a["patch_boxes"]
        pair.pop("patch_mask")
        want = encoder(pair, training=False)
        np.testing.assert_allclose(
            got["pooled_output"].numpy(), want["pooled_output"].numpy(), atol=1e-5
        )
