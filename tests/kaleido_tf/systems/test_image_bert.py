"""ImageBERT as a system: conditional masked losses, objectives vs numpy, training."""

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.inputs.region_pipeline import build_region_dataset
from kaleido_tf.losses.reduction import weighted_mean
from kaleido_tf.systems import get_system, image_bert
from kaleido_tf.training.trainer import Trainer
from tests.fixtures.region_prepared import VOCAB_SIZE, write_region_prepared

TINY = [
    "model.encoder.hidden_size=16",
    "model.encoder.num_attention_heads=2",
    "model.encoder.inner_dim=24",
    "model.encoder.num_layers=1",
    "model.encoder.max_sequence_length=16",
    f"model.encoder.vocab_size={VOCAB_SIZE}",
    "model.patch_feature_dim=8",
    "image_bert.num_classes=5",
    "image_bert.max_masked_tokens=6",
    "image_bert.max_masked_regions=12",
]


def config(*extra):
    return kaleido_tf.load_config("image_bert/demo", [*TINY, *extra])


@pytest.fixture(scope="module")
def region_dir(tmp_path_factory):
    return write_region_prepared(tmp_path_factory.mktemp("ib") / "train")["dir"]


def _np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_system_is_registered_and_the_encoder_has_the_region_embedding():
    cfg = config()
    assert get_system("image_bert") is image_bert
    kwargs = image_bert.encoder_kwargs(cfg)
    assert kwargs["level_sizes"] == [36]
    assert kwargs["patch_sequence_position"] and kwargs["patch_projection_bias"]
    assert set(image_bert.head_specs(cfg)) == {"mlm", "itm", "moc", "mrfr"}


@pytest.mark.parametrize("moc_target", ["label", "distribution"])
def test_masked_losses_are_zero_on_negatives_and_match_numpy(region_dir, moc_target):
    # Both MRFR reductions: the paper's squared L2 norm and its mean over D.
    reduction = "sum" if moc_target == "label" else "mean"
    cfg = config(
        f"image_bert.moc_target={moc_target}", f"image_bert.mrfr_reduction={reduction}"
    )
    batch = next(
        iter(
            build_region_dataset(
                region_dir,
                16,
                training=False,
                corrupt=True,
                layout="regions36",
                max_masked_tokens=6,
                max_masked_regions=12,
                moc_target=moc_target,
            )
        )
    )
    model = kaleido_tf.build_model(cfg)
    out = model(batch, training=False)
    objectives = image_bert.objectives(cfg)
    labels = batch["itm_labels"].numpy()
    assert 0 < labels.sum() < len(labels)
    for task in ("mlm", "moc", "mrfr"):
        values, weights = objectives.losses[task](batch, out)
        values, weights = values.numpy(), weights.numpy()
        # The masking reached negatives too, but their weights are zero.
        slots = {
            "mlm": batch["masked_lm_weights"],
            "moc": batch["masked_region_weights"],
            "mrfr": batch["masked_region_weights"],
        }[task].numpy()
        assert slots[labels == 0].sum() > 0
        assert (weights[labels == 0] == 0).all()
        assert (weights[labels == 1] * values[labels == 1]).sum() > 0
        np.testing.assert_array_equal(weights[labels == 1], slots[labels == 1])
    # Numerics against numpy, on the positives' masked regions.
    w = batch["masked_region_weights"].numpy() * labels[:, None]
    logits = out["moc_logits"].numpy()
    if moc_target == "label":
        ce = -np.take_along_axis(
            _np_log_softmax(logits), batch["moc_labels"].numpy()[..., None], -1
        )[..., 0]
    else:
        p = batch["moc_target_probs"].numpy().astype(np.float64)
        p = p / np.maximum(p.sum(-1, keepdims=True), 1e-30)
        logp = np.log(np.where(p > 0, p, 1.0))
        ce = (p * (logp - _np_log_softmax(logits))).sum(-1)
    share, _ = weighted_mean(*objectives.losses["moc"](batch, out))
    np.testing.assert_allclose(share.numpy(), (ce * w).sum() / w.sum(), rtol=1e-4)
    l2 = (out["mrfr_logits"].numpy() - batch["mrfr_targets"].numpy()) ** 2
    l2 = l2.sum(-1) if reduction == "sum" else l2.mean(-1)
    share, _ = weighted_mean(*objectives.losses["mrfr"](batch, out))
    np.testing.assert_allclose(share.numpy(), (l2 * w).sum() / w.sum(), rtol=1e-4)
    # Changing a negative's targets changes nothing.
    changed = dict(batch)
    neg = tf.constant(labels == 0)[:, None, None]
    changed["mrfr_targets"] = tf.where(neg, 100.0, batch["mrfr_targets"])
    again, _ = weighted_mean(*objectives.losses["mrfr"](changed, out))
    np.testing.assert_allclose(again.numpy(), share.numpy(), rtol=1e-6)


def test_a_few_trainer_steps_reduce_the_loss(region_dir, tmp_path):
    cfg = config(
        "train.global_batch_size=16",
        "train.max_steps=20",
        "train.log_every_steps=10",
        "train.checkpoint_every_steps=1000",
        "train.optimizer.learning_rate=3e-3",
        "train.optimizer.warmup_fraction=0.1",
    )
    trainer = Trainer(cfg, region_dir, tmp_path / "run")
    history = trainer.fit(progress=False, log=lambda m: None)
    first, last = history[0], history[-1]
    assert last["step"] == 20
    assert last["total_loss"] < first["total_loss"]
    assert last["moc_loss"] < first["moc_loss"]
    assert last["mrfr_loss"] < first["mrfr_loss"]
