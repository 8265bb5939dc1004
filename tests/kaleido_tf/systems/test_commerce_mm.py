"""CommerceMM as a system: objectives and weights vs numpy, batch contract, configs."""

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.errors import ConfigError
from kaleido_tf.losses.reduction import weighted_mean
from kaleido_tf.models import commerce_mm_model
from kaleido_tf.systems import SYSTEMS, commerce_mm

B, M, V, E, KC, DT = 3, 2, 7, 4, 5, 6


def _np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _fake(rng, itc_weight=1.0):
    """A batch and model outputs with the keys the image-text objectives read."""
    clusters = rng.uniform(size=(B, KC))
    batch = {
        "masked_lm_ids": rng.integers(0, V, (B, M)).astype(np.int32),
        "masked_lm_weights": np.array([[1, 1], [1, 0], [0, 1]], np.float32),
        "teacher_features": rng.normal(size=(B, DT)).astype(np.float32),
        "teacher_clusters": (clusters / clusters.sum(-1, keepdims=True)).astype(
            np.float32
        ),
    }
    out = {
        "mlm_logits": rng.normal(size=(B, M, V)).astype(np.float32),
        "mim_kl_logits": rng.normal(size=(B, KC)).astype(np.float32),
        "mim_fr_predictions": rng.normal(size=(B, DT)).astype(np.float32),
        "text_embedding": _unit(rng.normal(size=(B, E))).astype(np.float32),
        "image_embedding": _unit(rng.normal(size=(B, E))).astype(np.float32),
        "contrastive_scale": np.float32(1 / 0.07),
        "itc_weight": np.full([B], itc_weight, np.float32),
        "itm_logits": rng.normal(size=(3 * B, 2)).astype(np.float32),
        "itm_labels": np.array([1] * B + [0] * 2 * B, np.int32),
        "itm_weights": np.array([1, 1, 1, 1, 0, 1, 1, 1, 1], np.float32),
    }
    to_tf = lambda d: {k: tf.constant(v) for k, v in d.items()}  # noqa: E731
    return batch, out, to_tf(batch), to_tf(out)


def _reference(batch, out):
    """numpy: each image-text loss as a global weighted mean."""
    lp = _np_log_softmax(out["mlm_logits"])
    ce = -np.take_along_axis(lp, batch["masked_lm_ids"][..., None], -1)[..., 0]
    w = batch["masked_lm_weights"]
    mlm = (ce * w).sum() / w.sum()
    p = batch["teacher_clusters"]
    mim_kl = (p * (np.log(p) - _np_log_softmax(out["mim_kl_logits"]))).sum(-1).mean()
    mim_fr = ((out["mim_fr_predictions"] - batch["teacher_features"]) ** 2).mean()
    s = out["text_embedding"] @ out["image_embedding"].T * out["contrastive_scale"]
    diag = np.arange(B)
    rows = -_np_log_softmax(s)[diag, diag] - _np_log_softmax(s.T)[diag, diag]
    itc = rows.mean() if out["itc_weight"].sum() else 0.0
    lp = _np_log_softmax(out["itm_logits"])
    ce = -lp[np.arange(3 * B), out["itm_labels"]]
    itm = (ce * out["itm_weights"]).sum() / out["itm_weights"].sum()
    return {"mlm": mlm, "mim_kl": mim_kl, "mim_fr": mim_fr, "itc": itc, "itm": itm}


def _config(*overrides):
    return kaleido_tf.load_config("commerce_mm/demo", list(overrides))


def test_registered_and_weights_follow_the_paper():
    assert SYSTEMS["commerce_mm"] is commerce_mm
    objectives = commerce_mm.objectives(_config())
    assert objectives.weights == {
        "mlm": 0.5,
        "mim_kl": 1.0,
        "mim_fr": 1.0,
        "itc": 1.0,
        "itm": 1.0,
    }
    assert sorted(objectives.accuracies) == ["itm", "mlm"]
    omni = commerce_mm.omni_objectives(_config())
    assert sorted(omni.losses) == sorted(f"omni_{u}2{v}" for u in "tim" for v in "tim")
    assert set(omni.weights.values()) == {1.0}


@pytest.mark.parametrize("itc_weight", [1.0, 0.0])
def test_image_text_losses_match_numpy(itc_weight):
    objectives = commerce_mm.objectives(_config())
    batch, out, tf_batch, tf_out = _fake(np.random.default_rng(0), itc_weight)
    want = _reference(batch, out)
    shares = {
        task: weighted_mean(*term(tf_batch, tf_out))[0]
        for task, term in objectives.losses.items()
    }
    for task, value in want.items():
        np.testing.assert_allclose(shares[task], value, rtol=1e-5, atol=1e-6)
    total, _ = objectives.total(shares)
    expected = 0.5 * want["mlm"] + sum(v for k, v in want.items() if k != "mlm")
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_task_switches_and_mlm_weight():
    objectives = commerce_mm.objectives(
        _config("commerce_mm.itc=false", "commerce_mm.mlm_weight=0.25")
    )
    assert sorted(objectives.losses) == ["itm", "mim_fr", "mim_kl", "mlm"]
    assert objectives.weights["mlm"] == 0.25
    with pytest.raises(ConfigError, match="omni_step_probability"):
        commerce_mm.omni_objectives(_config("commerce_mm.omni_step_probability=0"))


def test_batch_contract_covers_what_the_model_reads():
    cfg = _config()
    batch = kaleido_tf.dummy_batch(cfg)
    assert tuple(batch) == commerce_mm.IMAGE_TEXT_BATCH_KEYS
    s = cfg.commerce_mm.image_size
    assert batch["pixels"].shape == (2, s, s, 3)
    assert batch["teacher_clusters"].shape == (2, cfg.commerce_mm.num_clusters)
    model_reads = set(commerce_mm_model._IMAGE_TEXT_INPUTS)
    for keys in commerce_mm_model._TASK_INPUTS.values():
        model_reads |= set(keys)
    assert model_reads <= set(commerce_mm.IMAGE_TEXT_BATCH_KEYS)
    omni = commerce_mm.dummy_omni_batch(cfg)
    assert tuple(omni) == commerce_mm.OMNI_BATCH_KEYS
    assert set(commerce_mm_model.OMNI_INPUTS) <= set(commerce_mm.OMNI_BATCH_KEYS)
    # The Omni loss terms read the presence flags from the batch.
    terms = commerce_mm.omni_objectives(cfg).losses
    out = {
        f"{side}_{m}_embedding": tf.eye(2, E)
        for side in ("source", "target")
        for m in ("text", "image", "multimodal")
    }
    out["contrastive_scale"] = tf.constant(1.0)
    for term in terms.values():
        values, weights = term(omni, out)
        assert values.shape == (2,) and np.all(weights.numpy() == 1.0)


def test_config_files_load_with_the_paper_values():
    cfg = kaleido_tf.load_config("commerce_mm/pretrain")
    cmm, enc = cfg.commerce_mm, cfg.model.encoder
    assert (cfg.system, cmm.image_backbone, enc.num_layers, cmm.num_text_layers) == (
        "commerce_mm",
        "vit",
        12,
        6,
    )
    assert (enc.hidden_size, enc.vocab_size, cmm.projection_dim) == (768, 250002, 256)
    assert (cmm.mlm_weight, cmm.mim_grey_ratio, cmm.omni_step_probability) == (
        0.5,
        0.5,
        0.5,
    )
    assert cmm.mim_patch_size == 16
    opt = cfg.train.optimizer
    assert (opt.learning_rate, opt.weight_decay_rate, opt.warmup_fraction) == (
        5e-5,
        0.01,
        0.1,
    )
    assert (cfg.train.global_batch_size, cfg.train.max_steps) == (2048, 300000)
    small = kaleido_tf.load_config("commerce_mm/pretrain_resnet50_6layer")
    assert (small.model.encoder.num_layers, small.commerce_mm.num_text_layers) == (6, 3)
    assert small.commerce_mm.mim_patch_size == 32
    stage2 = kaleido_tf.load_config("commerce_mm/pretrain_stage2_randomization")
    mr = stage2.commerce_mm.modality_randomization
    assert mr.enabled and mr.choices(12) == tuple(range(12))
    assert stage2.commerce_mm.omni_step_probability == 0.0
    assert stage2.train.max_steps == 100000
    demo = _config()
    assert demo.model.encoder.hidden_size == 32 and demo.commerce_mm.image_size == 64


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["system=kaleido_bert"], "needs system: commerce_mm"),
        (["commerce_mm.num_text_layers=4"], "exceeds model.encoder.num_layers"),
        (["commerce_mm.num_text_layers=0"], "needs a text encoder"),
        (["commerce_mm.modality_randomization.enabled=true"], "K = 0"),
        (["commerce_mm.omni_step_probability=1.5"], r"\[0, 1\]"),
        (["commerce_mm.image_size=70"], "multiple"),
        (["commerce_mm.omni=true"], "unknown key"),
        (
            [
                "commerce_mm.omni_step_probability=0",
                "commerce_mm.modality_randomization.enabled=true",
                "commerce_mm.modality_randomization.max_text_layers=3",
            ],
            "modality_randomization",
        ),
    ],
)
def test_bad_configs_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        _config(*overrides)
