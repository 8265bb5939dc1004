"""Test set-up: Keras 2 before TensorFlow loads, seeds, markers, shared fixtures."""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.fixtures.fashiongen_h5 import default_products, write_fashiongen_h5  # noqa: E402


@pytest.fixture(autouse=True)
def _seeds():
    import tensorflow as tf

    tf.random.set_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def fashiongen_h5(tmp_path_factory):
    """A small file with the real Fashion-Gen layout (64x64 images)."""
    path = tmp_path_factory.mktemp("fashiongen") / "fashiongen_256_256_train.h5"
    write_fashiongen_h5(path, default_products())
    return path


@pytest.fixture(scope="session")
def tiny_prepare_config(tmp_path_factory):
    """A data config small enough for unit tests: 64 px crops, 32 px patches."""
    path = tmp_path_factory.mktemp("configs") / "tiny_kaleido.yaml"
    path.write_text(
        "layout: kaleido\n"
        "crop: {method: background_difference, output_size: 64}\n"
        "backbone: {name: mobilenet_v3_small, patch_size: 32, batch_size: 50}\n"
        "text: {max_seq_length: 16, demo_vocab_size: 300}\n"
        "output: {records_per_shard: 4, images_per_batch: 3}\n"
    )
    return path


@pytest.fixture(scope="session")
def synthetic_prepared(tmp_path_factory, tiny_prepare_config):
    """The synthetic fashion set (64 products), prepared with the tiny config.

    Returns a dict with the ``train`` and ``validation`` prepared folders and the
    ``raw`` folder of the .h5 files.
    """
    from data_prep.synthetic.fashiongen_writer import write_synthetic_fashiongen
    from kaleido_tf.cli.main import main

    root = tmp_path_factory.mktemp("synthetic")
    raw = root / "raw"
    write_synthetic_fashiongen(raw, num_products=64, seed=0, progress=False)
    out = {"raw": raw}
    for split in ("train", "validation"):
        extra = []
        if split == "validation":
            extra = [
                "--vocab",
                str(out["train"] / "vocab.txt"),
                "--categories",
                str(out["train"] / "categories.json"),
            ]
        out[split] = root / split
        rc = main(
            [
                "prepare",
                "--h5",
                str(raw / f"fashiongen_256_256_{split}.h5"),
                "--out",
                str(out[split]),
                "--config",
                str(tiny_prepare_config),
                "--set",
                "text.max_seq_length=24",
                "--backbone-weights",
                "none",
                "--quiet",
                *extra,
            ]
        )
        assert rc == 0
    return out


# A tiny Kaleido-BERT (hidden 16, 1 layer): tests of what consumes a trained model.
TINY_MODEL = [
    "model.encoder.hidden_size=16",
    "model.encoder.num_attention_heads=2",
    "model.encoder.inner_dim=24",
    "model.encoder.num_layers=1",
    "model.encoder.max_sequence_length=24",
    "model.encoder.output_dropout=0.0",
    "model.encoder.attention_dropout=0.0",
    "model.encoder.feature_dropout=0.0",
]


@pytest.fixture(scope="session")
def tiny_pretrain_run(tmp_path_factory, synthetic_prepared):
    """A run folder of ``kaleido-tf pretrain`` (tiny model, 4 steps, all tasks).

    Returns the folder; ``load_trained_model(folder)`` gives the model back.
    """
    from kaleido_tf.cli.main import main

    model_dir = tmp_path_factory.mktemp("runs") / "pretrain"
    settings = TINY_MODEL + [
        "train.global_batch_size=8",
        "train.max_steps=4",
        "train.checkpoint_every_steps=2",
        "train.log_every_steps=2",
        "train.optimizer.warmup_steps=2",
        "train.optimizer.learning_rate=1e-3",
    ]
    argv = ["pretrain", "--config", "kaleido_bert/demo"]
    for s in settings:
        argv += ["--set", s]
    argv += ["--data", str(synthetic_prepared["train"]), "--model-dir", str(model_dir)]
    assert main(argv + ["--quiet"]) == 0
    return model_dir


@pytest.fixture(scope="session")
def grid8_prepared(tmp_path_factory):
    """The synthetic fashion set (64 products) prepared on FashionBERT's 8x8 grid.

    Tiny settings: 64 px images without crop, 8x8 patches of 8 px embedded at
    32 px by a random MobileNetV3-Small (576-d), texts of 24 tokens. Returns the
    ``train`` prepared folder.
    """
    from data_prep.synthetic.fashiongen_writer import write_synthetic_fashiongen
    from kaleido_tf.cli.main import main

    root = tmp_path_factory.mktemp("grid8")
    write_synthetic_fashiongen(root / "raw", num_products=64, seed=0, progress=False)
    config = root / "tiny_grid8.yaml"
    config.write_text(
        "layout: grid8\n"
        "crop: {method: none, output_size: 64}\n"
        "backbone: {name: mobilenet_v3_small, patch_size: 32, batch_size: 64}\n"
        "text: {max_seq_length: 24, demo_vocab_size: 300}\n"
        "output: {records_per_shard: 16, images_per_batch: 4}\n"
    )
    out = root / "train"
    argv = ["prepare", "--h5", str(root / "raw" / "fashiongen_256_256_train.h5")]
    argv += ["--out", str(out), "--config", str(config)]
    assert main([*argv, "--backbone-weights", "none", "--quiet"]) == 0
    return out
