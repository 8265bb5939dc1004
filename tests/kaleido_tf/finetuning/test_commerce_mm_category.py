"""CommerceMM categorization: the classifier restores a pretraining run's encoder,
reads the fused w_cls, trains through the shared Trainer on a pixel folder and is
scored by `evaluate category`."""

import json

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.finetuning.pretrained_weights import load_pretrained_weights
from kaleido_tf.systems import commerce_mm
from tests.fixtures import pixel_prepared as fx

TINY = [
    f"commerce_mm.image_size={fx.IMAGE_SIZE}",
    f"commerce_mm.num_clusters={fx.NUM_CLUSTERS}",
    "commerce_mm.max_masked_tokens=4",
    "commerce_mm.image_backbone=vit",
    "commerce_mm.vit_patch_size=16",
    "commerce_mm.vit_hidden_size=16",
    "commerce_mm.vit_num_layers=1",
    "commerce_mm.vit_num_heads=2",
    "commerce_mm.vit_mlp_dim=16",
    "commerce_mm.num_text_layers=1",
    "commerce_mm.projection_dim=8",
    "commerce_mm.omni_step_probability=0.0",
    "model.encoder.num_layers=2",
    "model.encoder.hidden_size=16",
    "model.encoder.inner_dim=24",
]
CATEGORY = [
    "finetune.task=category",
    "finetune.num_classes=8",
    "finetune.classifier_dropout=0.0",
    "train.global_batch_size=4",
    "train.max_steps=2",
    "train.checkpoint_every_steps=2",
    "train.log_every_steps=1",
    "train.optimizer.warmup_fraction=0.0",
]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A saved CommerceMM pretraining model (random weights) and its prefix."""
    model = kaleido_tf.build_model(kaleido_tf.load_config("commerce_mm/demo", TINY))
    folder = tmp_path_factory.mktemp("pretrained")
    return model, tf.train.Checkpoint(model=model).save(str(folder / "ckpt"))


def test_classifier_restores_the_encoder_and_reads_fused_cls(pretrained):
    pixels = fx.pixel_prepared()["pixels"]
    pre, prefix = pretrained
    config = kaleido_tf.load_config("commerce_mm/demo", TINY + CATEGORY)
    model = kaleido_tf.build_model(config)
    report = load_pretrained_weights(model, prefix)
    assert report.heads_restored == [] and report.heads_initialised == ["category"]

    def local(w):  # the name below the model's own scope
        return w.name.split("/", 1)[1]

    pre_weights = {local(w): w.numpy() for w in pre.encoder.weights}
    assert len(model.encoder.weights) == len(pre_weights) > 0
    for w in model.encoder.weights:
        np.testing.assert_array_equal(w.numpy(), pre_weights[local(w)])

    clean = next(iter(commerce_mm.build_dataset(pixels, config, 3, training=False)))
    expected_cls = pre(clean, training=False)["fused_text_cls"].numpy()
    batch = next(
        iter(commerce_mm.build_category_dataset(pixels, config, 3, training=False))
    )
    np.testing.assert_array_equal(batch["input_ids"], clean["input_ids"])
    out = model(batch, training=False)
    np.testing.assert_allclose(
        out["fused_text_cls"].numpy(), expected_cls, rtol=1e-5, atol=1e-5
    )
    kernel, bias = [w.numpy() for w in model.heads["category"].weights]
    np.testing.assert_allclose(
        out["category_logits"].numpy(),
        expected_cls @ kernel + bias,
        rtol=1e-5,
        atol=1e-5,
    )


def test_finetune_then_evaluate_category(pretrained, tmp_path):
    from kaleido_tf.cli.main import main
    from kaleido_tf.training.trainer import Trainer

    pixels = fx.pixel_prepared()["pixels"]
    _, prefix = pretrained
    config = kaleido_tf.load_config("commerce_mm/demo", TINY + CATEGORY)
    run = tmp_path / "run"
    trainer = Trainer(config, pixels, run, init_checkpoint=prefix)
    assert trainer.init_report.heads_initialised == ["category"]
    trainer.fit(progress=False, log=lambda m: None)

    out = tmp_path / "eval"
    argv = ["evaluate", "category", "--model-dir", str(run), "--data", str(pixels)]
    assert main([*argv, "--out", str(out), "--batch-size", "5", "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    labels = [
        json.loads(line)["category_id"]
        for line in (pixels / "products.jsonl").read_text().splitlines()
    ]
    manifest = json.loads((pixels / "manifest.json").read_text())
    records = sum(int(s["records"]) for s in manifest["shards"])
    assert results["system"] == "commerce_mm" and results["examples"] == records
    assert 0.0 <= results["category"]["accuracy"] <= 1.0 and len(set(labels)) > 1
