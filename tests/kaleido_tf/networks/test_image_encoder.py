"""ImageEncoder: token counts at 224 px, numerics against numpy, weights round trip."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import kaleido_tf  # noqa: F401
from kaleido_tf.errors import CheckpointError
from kaleido_tf.networks.image_encoder import (
    ImageEncoder,
    load_image_encoder_weights,
    save_image_encoder_weights,
)

# ImageNet statistics, RGB in [0, 255] (the standard values, written out here).
MEAN = np.array([0.485, 0.456, 0.406]) * 255
STD = np.array([0.229, 0.224, 0.225]) * 255

TINY_RESNET = dict(
    backbone="resnet", image_size=64, resnet_model_id=18, resnet_depth_multiplier=0.125
)
TINY_VIT = dict(
    backbone="vit",
    image_size=32,
    vit_hidden_size=16,
    vit_num_layers=1,
    vit_num_heads=2,
    vit_mlp_dim=24,
    vit_patch_size=16,
)


def _pixels(b, s, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(0, 255, (b, s, s, 3)), tf.float32)


def _layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_resnet50_grid_at_224_is_49_tokens_plus_mean_pooled_cls():
    encoder = ImageEncoder(
        12,
        backbone="resnet",
        image_size=224,
        resnet_model_id=50,
        resnet_depth_multiplier=0.0625,
    )
    pixels = _pixels(1, 224)
    out = encoder(pixels, training=False).numpy()
    assert encoder.num_tokens == 50 and out.shape == (1, 50, 12)
    # Independent path: normalise in numpy, run the official backbone, pool, project.
    x = (pixels.numpy() - MEAN) / STD
    c5 = encoder.backbone_network(tf.constant(x, tf.float32), training=False)["5"]
    c5 = c5.numpy()
    assert c5.shape[1:3] == (7, 7)
    grid = c5.reshape(1, 49, -1)  # row-major
    tokens = np.concatenate([grid.mean(1, keepdims=True), grid], axis=1)
    kernel, bias = (w.numpy() for w in encoder.projection.weights)
    projected = tokens @ kernel + bias + encoder.position_table.numpy()[None]
    gamma, beta = (w.numpy() for w in encoder.layer_norm.weights)
    np.testing.assert_allclose(
        out, _layer_norm(projected, gamma, beta), rtol=1e-4, atol=1e-4
    )


def test_vit_b16_at_224_is_196_patches_plus_its_class_token():
    encoder = ImageEncoder(
        12,
        backbone="vit",
        image_size=224,
        vit_hidden_size=32,
        vit_num_layers=2,
        vit_num_heads=2,
        vit_mlp_dim=48,
        vit_patch_size=16,
    )
    pixels = _pixels(2, 224)
    out = encoder(pixels, training=False)
    assert encoder.num_tokens == 197 and tuple(out.shape) == (2, 197, 12)
    raw = encoder.backbone_tokens(pixels, training=False).numpy()
    x = tf.constant((pixels.numpy() - MEAN) / STD, tf.float32)
    endpoints = encoder.backbone_network(x, training=False)
    np.testing.assert_allclose(
        raw[:, 0], endpoints["pre_logits"].numpy().reshape(2, 32), atol=1e-5
    )
    np.testing.assert_allclose(
        raw[:, 1:], endpoints["4"].numpy().reshape(2, 196, 32), atol=1e-5
    )
    # ViT tokens get no extra position table: projection + LN only.
    kernel, bias = (w.numpy() for w in encoder.projection.weights)
    gamma, beta = (w.numpy() for w in encoder.layer_norm.weights)
    np.testing.assert_allclose(
        out.numpy(), _layer_norm(raw @ kernel + bias, gamma, beta), atol=1e-4
    )


@pytest.mark.parametrize(
    "kwargs, size, patch_count",
    [
        (TINY_RESNET, 64, (64 // 32) ** 2),
        (TINY_VIT, 32, (32 // 16) ** 2),
        (dict(TINY_VIT, image_size=48), 48, (48 // 16) ** 2),
    ],
)
def test_token_count_formula(kwargs, size, patch_count):
    encoder = ImageEncoder(8, **kwargs)
    out = encoder(_pixels(2, size), training=False)
    assert tuple(out.shape) == (2, 1 + patch_count, 8)
    assert encoder.num_tokens == 1 + patch_count


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(TINY_RESNET, image_size=48),
        dict(TINY_VIT, image_size=40),
        dict(TINY_RESNET, backbone="vgg"),
        dict(TINY_RESNET, resnet_model_id=19),
    ],
)
def test_bad_configuration_raises(kwargs):
    with pytest.raises(ValueError):
        ImageEncoder(8, **kwargs)


@pytest.mark.parametrize("kwargs", [TINY_RESNET, TINY_VIT])
def test_config_round_trip_and_every_variable_trains(kwargs):
    encoder = ImageEncoder(8, **kwargs)
    config = encoder.get_config()
    clone = ImageEncoder.from_config(config)
    assert json.dumps(clone.get_config(), sort_keys=True) == json.dumps(
        config, sort_keys=True
    )
    size = kwargs["image_size"]
    with tf.GradientTape() as tape:
        out = encoder(_pixels(3, size), training=True)
        loss = tf.reduce_sum(tf.square(out - 0.3) * tf.range(8, dtype=tf.float32))
    grads = tape.gradient(loss, encoder.trainable_variables)
    assert len(encoder.trainable_variables) > 10
    for var, grad in zip(encoder.trainable_variables, grads):
        if "self_attention/key/bias" in var.name:
            continue  # the softmax cancels a key bias: zero by mathematics
        assert grad is not None and np.any(grad.numpy() != 0), var.name


def _built(kwargs, seed):
    tf_keras.utils.set_random_seed(seed)
    encoder = ImageEncoder(8, **kwargs)
    encoder(_pixels(1, kwargs["image_size"]), training=False)
    return encoder


def _backbone_values(encoder):
    return [v.numpy() for v in encoder.backbone_network.variables]


@pytest.fixture(scope="module")
def source():
    """A tiny ResNet encoder whose batch-norm statistics moved off their init."""
    encoder = _built(TINY_RESNET, 1)
    encoder(_pixels(4, 64, seed=3), training=True)
    return encoder


def test_weights_round_trip_through_a_local_file(tmp_path, source):
    target = _built(TINY_RESNET, 2)
    assert not all(
        np.array_equal(x, y)
        for x, y in zip(_backbone_values(source), _backbone_values(target))
    )
    prefix = save_image_encoder_weights(source, tmp_path / "weights" / "backbone")
    load_image_encoder_weights(target, prefix)
    for x, y in zip(_backbone_values(source), _backbone_values(target)):
        np.testing.assert_array_equal(x, y)
    pixels = _pixels(2, 64, seed=4)
    np.testing.assert_allclose(
        source.backbone_tokens(pixels, training=False).numpy(),
        target.backbone_tokens(pixels, training=False).numpy(),
        atol=1e-6,
    )


def test_loads_a_model_garden_classification_checkpoint_folder(tmp_path, source):
    from official.vision.modeling.classification_model import ClassificationModel

    model = ClassificationModel(
        source.backbone_network,
        num_classes=3,
        input_specs=tf_keras.layers.InputSpec(shape=[None, 64, 64, 3]),
    )
    optimizer = tf_keras.optimizers.SGD(0.1)
    # The layout of tf-models-official's trainer checkpoints (base_trainer.py).
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, **model.checkpoint_items
    )
    checkpoint.save(str(tmp_path / "ckpt"))
    target = _built(TINY_RESNET, 2)
    load_image_encoder_weights(target, tmp_path)  # the folder: latest checkpoint
    for x, y in zip(_backbone_values(source), _backbone_values(target)):
        np.testing.assert_array_equal(x, y)


def test_missing_or_mismatched_weights_raise_and_change_nothing(tmp_path, source):
    before = _backbone_values(source)
    with pytest.raises(CheckpointError, match="not found"):
        load_image_encoder_weights(source, tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="no TensorFlow checkpoint"):
        load_image_encoder_weights(source, tmp_path)
    wider = _built(dict(TINY_RESNET, resnet_depth_multiplier=0.25), 0)
    wide_prefix = save_image_encoder_weights(wider, tmp_path / "wide" / "backbone")
    vit_prefix = save_image_encoder_weights(
        _built(TINY_VIT, 0), tmp_path / "vit" / "backbone"
    )
    other = tf.train.Checkpoint(model=wider.backbone_network).write(
        str(tmp_path / "other" / "ckpt")
    )
    for prefix in (wide_prefix, vit_prefix, other):
        with pytest.raises(CheckpointError, match="do not fit"):
            load_image_encoder_weights(source, prefix)
        for x, y in zip(before, _backbone_values(source)):
            np.testing.assert_array_equal(x, y)
