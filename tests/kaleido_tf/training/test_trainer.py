"""The training loop: resume at the exact step and data position; run records."""

import json
import os

import numpy as np
import pytest

import kaleido_tf
from kaleido_tf.errors import ConfigError, DataError
from kaleido_tf.training.trainer import Trainer, read_history

TINY_TRAIN = [
    "model.encoder.hidden_size=16",
    "model.encoder.num_attention_heads=2",
    "model.encoder.inner_dim=24",
    "model.encoder.num_layers=1",
    "model.encoder.max_sequence_length=24",
    "model.encoder.output_dropout=0.0",
    "model.encoder.attention_dropout=0.0",
    "model.encoder.feature_dropout=0.0",
    "train.global_batch_size=8",
    "train.max_steps=6",
    "train.checkpoint_every_steps=2",
    "train.log_every_steps=2",
    "train.optimizer.warmup_steps=2",
    "train.optimizer.learning_rate=1e-3",
]


def config(*extra):
    return kaleido_tf.load_config("kaleido_bert/demo", TINY_TRAIN + list(extra))


def test_resumed_run_matches_an_uninterrupted_one(synthetic_prepared, tmp_path):
    data = synthetic_prepared["train"]
    full = Trainer(config(), data, tmp_path / "full")
    full.fit(progress=False, log=lambda m: None)
    assert full.step == 6

    first = Trainer(config(), data, tmp_path / "cut")
    first.fit(progress=False, log=lambda m: None, stop_at=4)
    assert first.step == 4
    again = Trainer(config(), data, tmp_path / "cut")  # same command, restarted
    assert again.step == 4 and again.resumed_from.endswith("ckpt-4")
    again.fit(progress=False, log=lambda m: None)
    assert again.step == 6
    # Same seeds, no dropout: the same weights (float32 CPU arithmetic).
    for a, b in zip(full.model.weights, again.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    steps = [row["step"] for row in read_history(tmp_path / "cut")]
    assert steps == [2, 4, 6]
    for name in ("config.yaml", "argv.txt", "versions.json", "model_config.json"):
        assert (tmp_path / "cut" / name).is_file()
    model_config = json.loads((tmp_path / "cut" / "model_config.json").read_text())
    assert set(model_config["heads"]) == {
        "mlm",
        "itm",
        "rr",
        "jps",
        "cp",
        "g2cm",
        "b2cm",
    }


def test_losses_fall_on_a_fixed_batch(synthetic_prepared, tmp_path):
    # Every objective is wired to its head: training on the data lowers the total.
    trainer = Trainer(
        config("train.max_steps=30", "train.log_every_steps=10"),
        synthetic_prepared["train"],
        tmp_path / "run",
    )
    history = trainer.fit(progress=False, log=lambda m: None)
    assert history[-1]["total_loss"] < history[0]["total_loss"]
    assert history[-1]["mlm_loss"] < history[0]["mlm_loss"]


def test_data_and_config_mismatches_are_refused(synthetic_prepared, tmp_path):
    data = synthetic_prepared["train"]
    with pytest.raises(DataError, match="feature_dim"):
        Trainer(config("model.patch_feature_dim=2048"), data, tmp_path / "a")
    with pytest.raises(DataError, match="max_sequence_length"):
        Trainer(config("model.encoder.max_sequence_length=16"), data, tmp_path / "b")
    with pytest.raises(ConfigError, match="exceeds"):
        Trainer(config("train.global_batch_size=4096"), data, tmp_path / "c")


def test_mixed_precision_trains_with_float32_variables(synthetic_prepared, tmp_path):
    import math

    import tf_keras

    try:
        trainer = Trainer(
            config("train.mixed_precision=true", "train.max_steps=4"),
            synthetic_prepared["train"],
            tmp_path / "mixed",
        )
        history = trainer.fit(progress=False, log=lambda m: None)
        assert trainer.step == 4
        assert all(math.isfinite(row["total_loss"]) for row in history)
        assert all(v.dtype == "float32" for v in trainer.model.trainable_variables)
        outputs = trainer.model(kaleido_tf.dummy_batch(trainer.config, 2, 8))
        assert trainer.model.encoder.blocks[0].compute_dtype == "float16"
        assert outputs["pooled_output"].dtype == "float16"  # computed in float16
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")


def test_unwritable_or_full_model_dir_fails_before_the_model_is_built(
    synthetic_prepared, tmp_path, monkeypatch, capsys
):
    from kaleido_tf.cli.main import main

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the start-up checks")

    monkeypatch.setattr(kaleido_tf, "build_model", no_model)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    base = ["pretrain", "--config", "kaleido_bert/demo", "--quiet"]
    base += ["--data", str(synthetic_prepared["train"])]
    cases = [
        (base + ["--model-dir", str(blocker / "run")], "cannot write the model"),
        (
            base
            + ["--model-dir", str(tmp_path / "full")]
            + ["--set", "train.min_free_disk_mb=1000000000"],  # a disk too small
            "MiB free, less than train.min_free_disk_mb=1000000000",
        ),
    ]
    if os.geteuid() != 0:  # root writes into read-only folders
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append((base + ["--model-dir", str(locked / "run")], "cannot write"))
    for argv, message in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_jit_compile_and_mixed_precision_match_float32(synthetic_prepared, tmp_path):
    import tf_keras

    settings = ("train.max_steps=3", "train.log_every_steps=1")
    data = synthetic_prepared["train"]
    runs = {}
    try:
        for name, extra in (
            ("float32", ()),
            ("jit", ("train.jit_compile=true",)),
            ("mixed", ("train.mixed_precision=true",)),
        ):
            trainer = Trainer(config(*settings, *extra), data, tmp_path / name)
            runs[name] = trainer.fit(progress=False, log=lambda m: None)
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")
    keys = [k for k in runs["float32"][0] if k.endswith("_loss")]
    for step in range(3):  # the same initial weights and batches
        ref = runs["float32"][step]
        for key in keys:
            # XLA fuses and reorders float32 ops: measured max relative
            # difference 1.8e-6 over the 7 losses and 3 steps.
            np.testing.assert_allclose(
                runs["jit"][step][key], ref[key], rtol=1e-4, atol=1e-5, err_msg=key
            )
            # float16 compute, float32 variables and loss sums: measured 3e-5.
            np.testing.assert_allclose(
                runs["mixed"][step][key], ref[key], rtol=1e-3, atol=1e-4, err_msg=key
            )
    # XLA really compiled the step: its arithmetic is not bit-identical.
    assert any(
        runs["jit"][s][k] != runs["float32"][s][k] for s in range(3) for k in keys
    )
