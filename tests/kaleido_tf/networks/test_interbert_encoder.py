"""InterBertEncoder: image [CLS], attention patterns, streams, init, parameter count."""

import time

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf  # noqa: F401
from kaleido_tf.networks.interbert_encoder import (
    IMAGE_CLS_BOX,
    InterBertEncoder,
    count_parameters,
)
from tests.helpers import check_layer

B, T, R, D, H, V = 3, 7, 5, 8, 16, 31
NUM_IMAGE = R + 1


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    input_mask = np.ones((B, T), np.int32)
    input_mask[0, 5:] = 0
    input_mask[2, 4:] = 0
    patch_mask = np.ones((B, R), np.int32)
    patch_mask[1, 3:] = 0
    patch_mask[2, 1:] = 0
    x1 = rng.random((B, R)) * 0.5
    y1 = rng.random((B, R)) * 0.5
    x2, y2 = x1 + 0.4, y1 + 0.3
    boxes = np.stack([x1, y1, x2, y2, (x2 - x1) * (y2 - y1)], -1)
    return {
        "input_ids": tf.constant(rng.integers(1, V, (B, T)), tf.int32),
        "input_mask": tf.constant(input_mask),
        "segment_ids": tf.zeros((B, T), tf.int32),
        "patch_features": tf.constant(rng.normal(size=(B, R, D)), tf.float32),
        "patch_boxes": tf.constant(boxes, tf.float32),
        "patch_mask": tf.constant(patch_mask),
    }


def _encoder(**kwargs):
    args = dict(
        num_interaction_layers=1,
        num_image_extractor_layers=1,
        num_text_extractor_layers=1,
        max_sequence_length=T + 1,
    )
    args.update(kwargs)
    return InterBertEncoder(V, H, 2, 24, R, **args)


def test_check_layer():
    inputs = _inputs()
    shapes = {
        "sequence_output": (B, NUM_IMAGE + T, H),
        "image_sequence_output": (B, NUM_IMAGE, H),
        "text_sequence_output": (B, T, H),
        "image_cls_output": (B, H),
        "text_cls_output": (B, H),
        "embedding_table": (V, H),
    }
    # Every output ends in a LayerNorm, through which check_layer's loss
    # sum((y - 0.3)^2) has zero gradient at gamma = 1, beta = 0 (its gradient
    # lies in span{1, y}); a fixed per-feature scale of the outputs breaks that.
    scale = tf.constant(np.random.default_rng(1).uniform(0.5, 1.5, H), tf.float32)

    def call(encoder):
        out = encoder(inputs, training=False)
        return {k: v if k == "embedding_table" else v * scale for k, v in out.items()}

    # Embeddings 5 + 7 variables, three blocks of 16.
    check_layer(_encoder(), call, shapes, trainable_weights=60)


def _layer_norm(x, layer):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * layer.gamma.numpy() + layer.beta.numpy()


def test_image_cls_is_the_embedded_mean_of_the_unpadded_features():
    encoder = _encoder()
    inputs = _inputs()
    embeddings, image_mask = encoder.embed_image(
        inputs["patch_features"], inputs["patch_boxes"], inputs["patch_mask"]
    )
    features = inputs["patch_features"].numpy()
    mask = inputs["patch_mask"].numpy()
    mean = np.stack([features[b][mask[b] == 1].mean(0) for b in range(B)])
    emb = encoder.patch_embedding
    image, box = emb.image_projections[0], emb.position_projection
    x = mean @ image.kernel.numpy() + image.bias.numpy()
    x += np.asarray(IMAGE_CLS_BOX, np.float32) @ box.kernel.numpy() + box.bias.numpy()
    x += emb.segment_table.numpy()[1]
    expected = _layer_norm(x, emb.layer_norms[0])
    np.testing.assert_allclose(embeddings[:, 0].numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(
        image_mask.numpy(), np.pad(mask, [[0, 0], [1, 0]], constant_values=1)
    )
    # Values in padded region slots do not reach the image [CLS].
    noisy = features + (1 - mask)[..., None] * 100.0
    again, _ = encoder.embed_image(noisy, inputs["patch_boxes"], inputs["patch_mask"])
    np.testing.assert_allclose(again[:, 0].numpy(), embeddings[:, 0].numpy(), atol=1e-5)


def _modality_masks():
    inputs = _inputs()
    image_mask = np.pad(
        inputs["patch_mask"].numpy(), [[0, 0], [1, 0]], constant_values=1
    )
    full = np.concatenate([image_mask, inputs["input_mask"].numpy()], 1)  # [B, L]
    is_image = np.zeros(NUM_IMAGE + T, bool)
    is_image[:NUM_IMAGE] = True
    return inputs, full, is_image


def test_extraction_streams_attend_to_their_own_modality_only():
    inputs, full, is_image = _modality_masks()
    encoder = _encoder(
        extraction_attention="block_mask",
        return_attention_scores=True,
        num_image_extractor_layers=2,
        num_text_extractor_layers=2,
    )
    out = encoder(inputs, training=False)
    image_scores = out["image_attention_scores"].numpy()  # [2, B, N, L, L]
    text_scores = out["text_attention_scores"].numpy()
    assert image_scores.shape == (2, B, 2, NUM_IMAGE + T, NUM_IMAGE + T)
    real_key = full[None, :, None, None, :].astype(bool)
    # Image queries: no probability on any text key; text queries: none on images.
    image_rows = image_scores[..., is_image, :]
    text_rows = text_scores[..., ~is_image, :]
    assert np.all(image_rows[..., ~is_image] == 0)
    assert np.all(text_rows[..., is_image] == 0)
    # ... nor on padding; and rows are distributions over the real own keys.
    assert np.all(image_rows[np.broadcast_to(~real_key, image_rows.shape)] == 0)
    assert np.all(text_rows[np.broadcast_to(~real_key, text_rows.shape)] == 0)
    np.testing.assert_allclose(image_rows.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(text_rows.sum(-1), 1.0, rtol=1e-5)
    # The interaction module, by contrast, attends from every position to every
    # real position of both modalities, and to no padding.
    inter = out["interaction_attention_scores"].numpy()[0]  # [B, N, L, L]
    real = np.broadcast_to(real_key[0], inter.shape)
    assert np.all(inter[real] > 0)
    assert np.all(inter[~real] == 0)


def test_slice_and_block_mask_give_the_same_streams():
    inputs = _inputs()
    sliced = _encoder(return_attention_scores=True)
    blocked = _encoder(extraction_attention="block_mask", return_attention_scores=True)
    a = sliced(inputs, training=False)
    blocked(inputs, training=False)
    blocked.set_weights(sliced.get_weights())
    b = blocked(inputs, training=False)
    for key in ("sequence_output", "image_sequence_output", "text_sequence_output"):
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-5, atol=1e-5)
    # Slice scores are the own-modality blocks of the block-mask scores.
    np.testing.assert_allclose(
        a["image_attention_scores"].numpy(),
        b["image_attention_scores"].numpy()[..., :NUM_IMAGE, :NUM_IMAGE],
        atol=1e-6,
    )
    np.testing.assert_allclose(
        a["text_attention_scores"].numpy(),
        b["text_attention_scores"].numpy()[..., NUM_IMAGE:, NUM_IMAGE:],
        atol=1e-6,
    )


def test_text_only_path_runs_interaction_then_text_extractor():
    inputs = _inputs()
    text_inputs = {k: inputs[k] for k in ("input_ids", "input_mask", "segment_ids")}
    encoder = _encoder(image_num_attention_heads=4)
    encoder(inputs, training=False)
    out = encoder(text_inputs, training=False)
    assert "image_cls_output" not in out
    mask = inputs["input_mask"].numpy()
    attention = tf.constant(mask[:, None, :] * np.ones((1, T, 1), np.int32))
    x = encoder.text_embedding(inputs["input_ids"], inputs["segment_ids"])
    x = encoder.blocks[0]([x, attention])
    np.testing.assert_allclose(out["sequence_output"].numpy(), x.numpy(), atol=1e-5)
    y = encoder.text_blocks[0]([x, attention])
    np.testing.assert_allclose(
        out["text_sequence_output"].numpy(), y.numpy(), atol=1e-5
    )
    np.testing.assert_allclose(
        out["text_cls_output"].numpy(), y.numpy()[:, 0], atol=1e-5
    )


def test_extractors_are_gaussian_and_copy_init_takes_the_top_layers():
    encoder = _encoder(num_interaction_layers=3, extractor_init="copy_interaction")
    encoder(_inputs(), training=False)

    def kernels(blocks):
        return np.concatenate(
            [w.numpy().ravel() for b in blocks for w in b.weights if "kernel" in w.name]
        )

    extractor = kernels(encoder.image_blocks + encoder.text_blocks)
    assert abs(extractor.std() - 0.02) < 0.002
    # N(0, 0.02), not the interaction's truncated normal (which stops at 2 sigma).
    assert np.abs(extractor).max() > 0.045
    assert np.abs(kernels(encoder.blocks)).max() <= 0.04 + 1e-6
    encoder.initialize_text_extractor()
    for got, want in zip(encoder.text_blocks[0].weights, encoder.blocks[2].weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    encoder.initialize_text_extractor([encoder.blocks[0]])  # explicit sources
    for got, want in zip(encoder.text_blocks[0].weights, encoder.blocks[0].weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    with pytest.raises(ValueError, match="copy_interaction"):
        plain = _encoder()
        plain(_inputs())
        plain.initialize_text_extractor()


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_num_attention_heads"):
        _encoder(image_num_attention_heads=3)
    with pytest.raises(ValueError, match="extraction_attention"):
        _encoder(extraction_attention="cross")


def _block_parameters(h, inner):
    attention = 4 * h * h + 4 * h
    return attention + 2 * h + h * inner + inner + inner * h + h + 2 * h


def _expected_counts(v, h, inner, d, positions, layers):
    block = _block_parameters(h, inner)
    counts = {
        "text_embedding": v * h + positions * h + 2 * h + 2 * h,
        "image_embedding": d * h + h + 5 * h + h + 2 * h + 2 * h,
        "interaction": layers[0] * block,
        "image_extractor": layers[1] * block,
        "text_extractor": layers[2] * block,
    }
    counts["total"] = sum(counts.values())
    return counts


def test_parameter_count_of_a_small_configuration():
    counts = count_parameters(
        V,
        H,
        2,
        24,
        R,
        D,
        num_interaction_layers=2,
        num_image_extractor_layers=1,
        num_text_extractor_layers=3,
        max_sequence_length=T,
    )
    assert counts == _expected_counts(V, H, 24, D, T, (2, 1, 3))


@pytest.mark.slow  # ~200M initial values: 5-30 s on 2 cores
def test_paper_configuration_parameter_count():
    start = time.perf_counter()
    counts = count_parameters()
    seconds = time.perf_counter() - start
    assert counts == _expected_counts(30522, 768, 3072, 2048, 512, (12, 6, 6))
    print(
        f"InterBERT paper configuration (12 + 6 + 6, H 768): {counts['total']:,} "
        f"encoder parameters {counts} (built in {seconds:.1f} s; paper: 173M)"
    )
