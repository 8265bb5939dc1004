"""A tiny CommerceMM through the step-type Trainer with p = 0.5 on folders built by
the real ``prepare-pixels`` / ``prepare-omni``: both step types run, in the drawn
order, each logging its own losses (history and TensorBoard); the CLI asks for the
Omni folder."""

import numpy as np
import pytest

import kaleido_tf
from kaleido_tf.errors import ConfigError
from kaleido_tf.training.step_types import draw_step_types
from kaleido_tf.training.trainer import Trainer, read_history
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
    "model.encoder.num_layers=2",
    "commerce_mm.projection_dim=8",
    "model.encoder.hidden_size=16",
    "model.encoder.inner_dim=24",
    "train.global_batch_size=4",
    "train.max_steps=4",
    "train.log_every_steps=1",
    "train.checkpoint_every_steps=2",
    "train.optimizer.warmup_fraction=0.0",
]


def tiny(*extra):
    return kaleido_tf.load_config("commerce_mm/demo", TINY + list(extra))


def seed_with_both_types(p: float) -> int:
    mix = {"image_text": 1.0 - p, "omni": p}
    for seed in range(100):
        if len(set(draw_step_types(seed, 0, 4, mix))) == 2:
            return seed
    raise AssertionError("no seed")


def test_commerce_mm_takes_both_step_types(tmp_path):
    folders = fx.pixel_prepared()
    seed = seed_with_both_types(0.5)
    cfg = tiny(f"train.seed={seed}", "commerce_mm.omni_step_probability=0.5")
    expected = draw_step_types(seed, 0, 4, {"image_text": 0.5, "omni": 0.5})

    with pytest.raises(ConfigError, match="--omni-data"):
        Trainer(cfg, folders["pixels"], tmp_path / "no_omni")

    trainer = Trainer(
        cfg, folders["pixels"], tmp_path / "run", step_data={"omni": folders["omni"]}
    )
    assert trainer.step_type_sequence(0, 4) == expected
    trainer.fit(progress=False, log=lambda m: None)
    rows = read_history(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    image_text = ("mlm", "mim_kl", "mim_fr", "itc", "itm")
    omni = [f"omni_{u}2{v}" for u in "tim" for v in "tim"]
    for row, kind in zip(rows, expected):
        other = "omni" if kind == "image_text" else "image_text"
        assert row[f"{kind}_steps"] == 1 and row[f"{other}_steps"] == 0
        mine = image_text if kind == "image_text" else omni
        theirs = omni if kind == "image_text" else image_text
        assert all(np.isfinite(row[f"{k}_loss"]) for k in mine)
        assert not any(f"{k}_loss" in row for k in theirs)
        weights = {"mlm": 0.5}
        total = sum(weights.get(k, 1.0) * row[f"{k}_loss"] for k in mine)
        assert row[f"{kind}_total_loss"] == pytest.approx(total, rel=1e-6)
        assert row["total_loss"] == pytest.approx(total, rel=1e-6)
    # TensorBoard has both loss sets.
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    events = EventAccumulator(str(tmp_path / "run" / "logs")).Reload()
    tags = set(events.Tags()["tensors"]) | set(events.Tags()["scalars"])
    assert {"mlm_loss", "omni_t2m_loss", "image_text_steps", "omni_steps"} <= tags


def test_cli_requires_the_omni_folder(tmp_path, capsys):
    from kaleido_tf.cli.main import main

    folders = fx.pixel_prepared()
    base = [
        "pretrain",
        "--config",
        "commerce_mm/demo",
        "--data",
        str(folders["pixels"]),
    ]
    sets = [x for o in TINY for x in ("--set", o)]
    code = main([*base, *sets, "--model-dir", str(tmp_path / "a")])
    assert code != 0 and "--omni-data DIR" in capsys.readouterr().err
    # A key no step type reads, and the Omni data of a single-step-type system.
    code = main(
        [*base, *sets, "--model-dir", str(tmp_path / "b"), "--step-data", "x=/y"]
    )
    assert code != 0 and "names no data key" in capsys.readouterr().err
    code = main(
        [
            "pretrain",
            "--config",
            "kaleido_bert/demo",
            "--data",
            str(folders["pixels"]),
            "--model-dir",
            str(tmp_path / "c"),
            "--omni-data",
            str(folders["omni"]),
        ]
    )
    assert code != 0 and "single step type" in capsys.readouterr().err
