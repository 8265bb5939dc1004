"""The Kaleido-BERT VLModel: outputs, config round trip, padding, training."""

import json

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.models.vl_model import VLModel
from kaleido_tf.systems import kaleido_bert
from tests.helpers import check_layer

TINY = [
    "model.encoder.hidden_size=12",
    "model.encoder.num_attention_heads=2",
    "model.encoder.inner_dim=20",
    "model.encoder.num_layers=2",
    "model.encoder.vocab_size=31",
    "model.encoder.max_sequence_length=16",
    "model.encoder.output_dropout=0.0",
    "model.encoder.attention_dropout=0.0",
    "model.encoder.feature_dropout=0.0",
    "model.patch_feature_dim=8",
]


def tiny_config(*extra):
    return kaleido_tf.load_config("kaleido_bert/demo", TINY + list(extra))


def random_batch(config, b=3, t=7, seed=0):
    rng = np.random.default_rng(seed)
    batch = {k: v.numpy() for k, v in kaleido_tf.dummy_batch(config, b, t).items()}
    batch["input_ids"] = rng.integers(1, 31, (b, t)).astype(np.int32)
    batch["input_mask"] = np.ones((b, t), np.int32)
    batch["input_mask"][0, 5:] = 0
    batch["patch_features"] = rng.normal(size=batch["patch_features"].shape).astype(
        np.float32
    )
    batch["patch_boxes"] = rng.random(batch["patch_boxes"].shape).astype(np.float32)
    batch["masked_lm_positions"] = rng.integers(
        1, 5, batch["masked_lm_positions"].shape
    ).astype(np.int32)
    batch["g2cm_positions"] = np.tile(np.array([[14, 20]], np.int32), (b, 1))
    batch["b2cm_positions"] = np.tile(np.array([[30, 41, 54]], np.int32), (b, 1))
    return {k: tf.constant(v) for k, v in batch.items()}


def test_outputs_config_and_training():
    config = tiny_config()
    batch = random_batch(config)
    model = kaleido_bert.build_model(config)
    shapes = {
        "sequence_output": (3, 7 + 55, 12),
        "pooled_output": (3, 12),
        "mlm_logits": (3, 10, 31),
        "itm_logits": (3, 2),
        "rr_logits": (3, 4),
        "jps_logits": (3, 24),
        "cp_logits": (3, 9),
        "g2cm_logits": (3, 2, 8),
        "b2cm_logits": (3, 3, 8),
    }
    # Embeddings 5 + 5, 2 blocks x 16, pooler 2, heads: mlm 5, itm 2, rr/jps/cp 2 each,
    # g2cm/b2cm 1 each.
    check_layer(model, lambda m: m(batch, training=True), shapes, trainable_weights=59)
    assert json.loads(json.dumps(model.get_config()))["heads"]["cp"]["patch_start"] == 5


def test_padded_text_positions_do_not_change_the_outputs():
    config = tiny_config()
    model = kaleido_tf.build_model(config)
    batch = random_batch(config)
    other = dict(batch)
    ids = batch["input_ids"].numpy().copy()
    ids[0, 5:] = 7  # row 0 has input_mask 0 there
    other["input_ids"] = tf.constant(ids)
    a, b = model(batch), model(other)
    real = np.r_[0:5, 7:62]  # real text positions and all patches of row 0
    np.testing.assert_allclose(
        a["sequence_output"].numpy()[0, real],
        b["sequence_output"].numpy()[0, real],
        atol=1e-5,
    )
    np.testing.assert_allclose(
        a["itm_logits"].numpy(), b["itm_logits"].numpy(), atol=1e-5
    )


@pytest.mark.parametrize("disabled", [("rr", "jps", "cp", "g2cm", "b2cm"), ("b2cm",)])
def test_ablations_drop_heads(disabled):
    config = tiny_config(*[f"tasks.{t}=false" for t in disabled])
    model = kaleido_tf.build_model(config)
    out = model(random_batch(config))
    for task in disabled:
        assert f"{task}_logits" not in out
    assert "mlm_logits" in out and "itm_logits" in out
    objectives = kaleido_bert.objectives(config)
    assert set(objectives.losses) == set(config.tasks.active())


def test_per_level_variant_builds_from_the_released_config():
    config = kaleido_tf.load_config("kaleido_bert/pretrain_released", TINY)
    model = kaleido_tf.build_model(config)
    names = [w.name for w in model.weights]
    assert any("image_projection_5" in n for n in names)
    assert config.train.optimizer.learning_rate == 1e-4
    assert isinstance(model, VLModel)
