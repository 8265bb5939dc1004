"""CommerceMMModel: the three sub-passes, ITM negatives, K = 0, the Omni forward, K
as a tensor, against compositions of the encoder's public parts and numpy."""

import json

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.losses.reduction import weighted_mean
from kaleido_tf.models.commerce_mm_model import CommerceMMModel
from kaleido_tf.systems import commerce_mm

B, T, V, M, S = 3, 7, 31, 2, 64
KC, DT = 5, 6
TINY = [
    f"model.encoder.vocab_size={V}",
    "model.encoder.hidden_size=16",
    "model.encoder.num_layers=3",
    "model.encoder.num_attention_heads=2",
    "model.encoder.inner_dim=24",
    "model.encoder.max_sequence_length=8",
    "commerce_mm.num_text_layers=2",
    "commerce_mm.projection_dim=8",
    f"commerce_mm.max_masked_tokens={M}",
    f"commerce_mm.teacher_feature_dim={DT}",
    f"commerce_mm.num_clusters={KC}",
]
SEED = tf.constant([3, 11], tf.int32)


def _config(*extra):
    return kaleido_tf.load_config("commerce_mm/demo", [*TINY, *extra])


@pytest.fixture(scope="module")
def config():
    return _config()


@pytest.fixture(scope="module")
def model(config):
    return kaleido_tf.build_model(config)  # built on commerce_mm.dummy_batch


def _image_text_batch(seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((B, T), np.int32)
    mask[1, 5:] = 0
    clusters = rng.uniform(size=(B, KC))
    return {
        "input_ids": tf.constant(rng.integers(1, V, (B, T)), tf.int32),
        "input_mask": tf.constant(mask),
        "pixels": tf.constant(rng.uniform(0, 255, (B, S, S, 3)), tf.float32),
        "masked_input_ids": tf.constant(rng.integers(1, V, (B, T)), tf.int32),
        "masked_lm_positions": tf.constant([[1, 3], [2, 4], [1, 6]], tf.int32),
        "masked_lm_ids": tf.constant(rng.integers(1, V, (B, M)), tf.int32),
        "masked_lm_weights": tf.constant([[1, 1], [1, 0], [1, 1]], tf.float32),
        "greyed_pixels": tf.constant(rng.uniform(0, 255, (B, S, S, 3)), tf.float32),
        "teacher_features": tf.constant(rng.normal(size=(B, DT)), tf.float32),
        "teacher_clusters": tf.constant(
            clusters / clusters.sum(-1, keepdims=True), tf.float32
        ),
    }


def _omni_batch(seed=0, n=4):
    rng = np.random.default_rng(seed)
    batch = {}
    for side in ("source", "target"):
        batch[f"{side}_input_ids"] = tf.constant(rng.integers(1, V, (n, T)), tf.int32)
        batch[f"{side}_input_mask"] = tf.ones((n, T), tf.int32)
        batch[f"{side}_pixels"] = tf.constant(
            rng.uniform(0, 255, (n, S, S, 3)), tf.float32
        )
        batch[f"{side}_text_present"] = tf.ones([n], tf.int32)
        batch[f"{side}_image_present"] = tf.ones([n], tf.int32)
    # Source 0 has no image, source 1 no text, target 2 no text.
    batch["source_image_present"] = tf.constant([0, 1, 1, 1], tf.int32)
    batch["source_text_present"] = tf.constant([1, 0, 1, 1], tf.int32)
    batch["target_text_present"] = tf.constant([1, 1, 0, 1], tf.int32)
    return batch


def _replace(batch, key, row, value):
    x = batch[key].numpy().copy()
    x[row] = value
    return {**batch, key: tf.constant(x)}


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def _losses(objectives, batch, out):
    return {
        task: float(weighted_mean(*term(batch, out))[0])
        for task, term in objectives.losses.items()
    }


def _parts(model, ids, mask, pixels, k=2):
    """Text states after the K text layers, visual tokens: the encoder's parts."""
    enc = model.encoder
    text = enc.encode_text(enc.embed_text(ids, training=False), mask, k, training=False)
    return text, enc.encode_image(pixels, training=False)


def test_config_round_trip(model):
    clone = CommerceMMModel.from_config(model.get_config())
    assert json.dumps(clone.get_config(), sort_keys=True) == json.dumps(
        model.get_config(), sort_keys=True
    )


def test_one_backward_gives_every_loss_and_every_gradient(model, config):
    objectives = commerce_mm.objectives(config)
    batch = _image_text_batch()
    with tf.GradientTape() as tape:
        out = model(batch, training=True, seed=SEED)
        shares = {
            task: weighted_mean(*term(batch, out))[0]
            for task, term in objectives.losses.items()
        }
        total, _ = objectives.total(shares)
    assert sorted(shares) == ["itc", "itm", "mim_fr", "mim_kl", "mlm"]
    for task, share in shares.items():
        assert np.isfinite(share.numpy()) and share.numpy() > 0, task
    grads = tape.gradient(total, model.trainable_variables)
    # h (multimodal_projection) is trained by the Omni step only.
    omni_only = {v.ref() for v in model.heads["multimodal_projection"].weights}
    missing = [
        v.name
        for v, g in zip(model.trainable_variables, grads)
        if v.ref() not in omni_only
        and (g is None or not np.any(tf.convert_to_tensor(g).numpy() != 0))
    ]
    assert not missing, missing
    assert len(model.trainable_variables) > 50  # backbone, stack, heads, τ


def test_mlm_reads_the_masked_text_and_mim_the_greyed_pixels(model):
    batch = _image_text_batch()
    out = model(batch, training=False, seed=SEED)
    ids, mask = batch["input_ids"], batch["input_mask"]
    enc = model.encoder
    # MIM = fusion of (clean text states, greyed image) at v_cls.
    text, _ = _parts(model, ids, mask, batch["pixels"])
    grey = enc.encode_image(batch["greyed_pixels"], training=False)
    fused = enc.fuse(text, grey, mask, 2, training=False)
    _close(out["mim_kl_logits"], model.heads["mim_kl"](fused[:, T]))
    _close(out["mim_fr_predictions"], model.heads["mim_fr"](fused[:, T]))
    # MLM = fusion of (masked text states, clean image) at the masked positions.
    masked, visual = _parts(model, batch["masked_input_ids"], mask, batch["pixels"])
    fused = enc.fuse(masked, visual, mask, 2, training=False)
    expected = model.heads["mlm"](
        fused, batch["masked_lm_positions"], enc.text_embedding.embedding_table
    )
    _close(out["mlm_logits"], expected)

    # Other greyed pixels: MIM changes, ITC embeddings, MLM and ITM do not.
    other = model(_replace(batch, "greyed_pixels", 0, 17.0), training=False, seed=SEED)
    assert not np.allclose(other["mim_kl_logits"][0], out["mim_kl_logits"][0])
    assert not np.allclose(other["mim_fr_predictions"][0], out["mim_fr_predictions"][0])
    for key in ("text_embedding", "image_embedding", "mlm_logits", "itm_logits"):
        _close(other[key], out[key])
    # Other clean pixels: MIM unchanged (it sees the greyed image only).
    other = model(_replace(batch, "pixels", 0, 17.0), training=False, seed=SEED)
    _close(other["mim_kl_logits"], out["mim_kl_logits"])
    assert not np.allclose(other["image_embedding"][0], out["image_embedding"][0])
    # Other clean text: MLM unchanged (it sees the masked text only).
    other = model(_replace(batch, "input_ids", 0, 5), training=False, seed=SEED)
    _close(other["mlm_logits"], out["mlm_logits"])
    assert not np.allclose(other["text_embedding"][0], out["text_embedding"][0])


def test_itm_scores_the_drawn_negatives_and_never_the_positive(model):
    batch = _image_text_batch(1)
    ids, mask = batch["input_ids"], batch["input_mask"]
    text, visual = _parts(model, ids, mask, batch["pixels"])
    enc = model.encoder
    for s in range(4):
        out = model(batch, training=False, seed=tf.constant([s, 1]))
        neg_image = out["itm_negative_image_index"].numpy()
        neg_text = out["itm_negative_text_index"].numpy()
        assert np.all(neg_image != np.arange(B)) and np.all(neg_text != np.arange(B))
        np.testing.assert_array_equal(out["itm_labels"], [1] * B + [0] * 2 * B)
        np.testing.assert_array_equal(out["itm_weights"], np.ones(3 * B))
    # Rows B..2B: (text_i, image of neg_image[i]); rows 2B..3B: (text of
    # neg_text[i], image_i).
    pair_text = tf.concat([text, text, tf.gather(text, neg_text)], 0)
    pair_mask = tf.concat([mask, mask, tf.gather(mask, neg_text)], 0)
    pair_image = tf.concat([visual, tf.gather(visual, neg_image), visual], 0)
    fused = enc.fuse(pair_text, pair_image, pair_mask, 2, training=False)
    _close(out["itm_logits"], model.heads["itm"](fused[:, 0]))
    # Hard negatives are drawn at ITC's temperature.
    _close(out["itm_sampling_scale"], out["contrastive_scale"])


def test_k0_skips_itc_and_draws_random_negatives(model, config):
    objectives = commerce_mm.objectives(config)
    batch = _image_text_batch()
    out = model(batch, training=False, num_text_layers=0, seed=SEED)
    np.testing.assert_array_equal(out["itc_weight"], np.zeros(B))
    assert float(out["itm_sampling_scale"]) == 0.0  # uniform draw
    losses = _losses(objectives, batch, out)
    assert losses["itc"] == 0.0 and losses["itm"] > 0 and losses["mlm"] > 0
    # K = 0: f reads the text embeddings (no text layer).
    emb = model.encoder.embed_text(batch["input_ids"], training=False)
    _close(out["text_embedding"], model._project("text_projection", emb[:, 0]))
    out = model(batch, training=False, num_text_layers=1, seed=SEED)
    np.testing.assert_array_equal(out["itc_weight"], np.ones(B))


def test_omni_gives_nine_terms_and_gated_inputs_do_not_matter(model, config):
    objectives = commerce_mm.omni_objectives(config)
    assert len(objectives.losses) == 9
    assert set(objectives.weights.values()) == {1.0}
    batch = _omni_batch()
    out = model(batch, training=False)
    base = _losses(objectives, batch, out)
    assert all(np.isfinite(v) and v > 0 for v in base.values()), base
    # Missing modalities: source 0's image, source 1's text, target 2's text.
    for key, row, value in [
        ("source_pixels", 0, 3.0),
        ("source_input_ids", 1, 9),
        ("target_input_ids", 2, 9),
    ]:
        changed = _replace(batch, key, row, value)
        losses = _losses(objectives, changed, model(changed, training=False))
        for task in base:
            assert losses[task] == pytest.approx(base[task], rel=1e-5, abs=1e-6), (
                key,
                task,
            )
    # A present modality does matter (source 1's image).
    changed = _replace(batch, "source_pixels", 1, 3.0)
    losses = _losses(objectives, changed, model(changed, training=False))
    assert losses["omni_i2i"] != pytest.approx(base["omni_i2i"], rel=1e-4)


def test_omni_is_siamese_with_normalised_embeddings(model):
    batch = _omni_batch(2)
    # A shorter target text: padded to the source's T inside the model.
    batch["target_input_ids"] = batch["target_input_ids"][:, : T - 2]
    batch["target_input_mask"] = batch["target_input_mask"][:, : T - 2]
    out = model(batch, training=False)
    for side in ("source", "target"):
        alone = model.embeddings(
            batch[f"{side}_input_ids"],
            batch[f"{side}_input_mask"],
            batch[f"{side}_pixels"],
            training=False,
        )
        for modality in ("text", "image", "multimodal"):
            got = out[f"{side}_{modality}_embedding"]
            _close(got, alone[modality])
            _close(np.linalg.norm(got, axis=-1), np.ones(4))
    # f and g are the ITC heads: the image-text pass gives the same g.
    _, visual = _parts(
        model,
        batch["source_input_ids"],
        batch["source_input_mask"],
        batch["source_pixels"],
    )
    _close(
        out["source_image_embedding"],
        model._project("image_projection", visual[:, 0]),
    )


def test_tensor_k_serves_every_split_with_one_trace(model):
    batch = _image_text_batch()
    traced = tf.function(
        lambda b, k: model(b, training=False, num_text_layers=k, seed=SEED)
    )
    for k in (2, 0, 1):
        got = traced(batch, tf.constant(k))
        want = model(batch, training=False, num_text_layers=k, seed=SEED)
        for key in ("text_embedding", "itm_logits", "mlm_logits", "mim_kl_logits"):
            _close(got[key], want[key], tol=1e-4)
        np.testing.assert_array_equal(got["itc_weight"], want["itc_weight"])
    assert traced.experimental_get_tracing_count() == 1


def test_missing_batch_key_is_a_data_error(model):
    from kaleido_tf.errors import DataError

    batch = _image_text_batch()
    del batch["greyed_pixels"]
    with pytest.raises(DataError, match="greyed_pixels"):
        model(batch, training=False)
