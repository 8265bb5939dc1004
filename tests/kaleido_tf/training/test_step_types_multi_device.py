"""CommerceMM's 2nd stage (``pretrain_stage2_randomization.yaml``: image-text steps
only, modality randomization on) through the step-type Trainer on 2 logical CPU
devices under MirroredStrategy, without an Omni folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

SCRIPT = r"""
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import kaleido_tf
from kaleido_tf.training.trainer import Trainer, read_history
from tests.fixtures import pixel_prepared as fx

folders = fx.pixel_prepared()
overrides = [
    "model.encoder.vocab_size=1000", "model.encoder.hidden_size=16",
    "model.encoder.num_layers=2", "model.encoder.num_attention_heads=2",
    "model.encoder.inner_dim=24", "model.encoder.max_sequence_length=32",
    "model.encoder.output_dropout=0.0", "model.encoder.attention_dropout=0.0",
    f"commerce_mm.image_size={fx.IMAGE_SIZE}", "commerce_mm.vit_patch_size=16",
    "commerce_mm.vit_hidden_size=16", "commerce_mm.vit_num_layers=1",
    "commerce_mm.vit_num_heads=2", "commerce_mm.vit_mlp_dim=16",
    "commerce_mm.num_text_layers=1", "commerce_mm.projection_dim=8",
    "commerce_mm.max_masked_tokens=4",
    f"commerce_mm.teacher_feature_dim={fx.FEATURE_DIM}",
    f"commerce_mm.num_clusters={fx.NUM_CLUSTERS}",
    # K drawn from {0}: every step is early fusion, so ITC must be skipped
    # (weight 0), which the fixed K = 1 would not do.
    "commerce_mm.modality_randomization.max_text_layers=0",
    "train.global_batch_size=4", "train.max_steps=2", "train.log_every_steps=1",
    "train.checkpoint_every_steps=2", "train.mixed_precision=false",
]
config = kaleido_tf.load_config(
    "commerce_mm/pretrain_stage2_randomization", overrides)
assert config.commerce_mm.modality_randomization.enabled
assert config.commerce_mm.omni_step_probability == 0.0
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
trainer = Trainer(config, folders["pixels"], sys.argv[1], strategy=strategy)
assert list(trainer.step_types) == ["image_text"]
trainer.fit(progress=False, log=lambda m: None)
print("HISTORY", json.dumps(read_history(sys.argv[1])))
"""


# 35 s on 2 cores: outside the default run. The default run covers its parts: the
# same K on every replica (test_modality_randomization), CommerceMM's image-text step
# on 2 replicas (models/test_commerce_mm_model_replicas) and both step types through
# the Trainer (test_step_types_commerce_mm). `pytest -m slow` runs it.
@pytest.mark.slow
@pytest.mark.multi_device
def test_stage2_randomization_on_two_devices(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "run")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("HISTORY"))
    rows = json.loads(line[len("HISTORY ") :])
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert row["image_text_steps"] == 1 and "omni_steps" not in row
        assert not any(k.startswith("omni_t") for k in row)
        # K = 0 reached the model: ITC skipped (no weight), the rest trained.
        assert row["itc_loss"] == 0.0
        for k in ("mlm", "mim_kl", "mim_fr", "itm"):
            assert row[f"{k}_loss"] > 0.0
