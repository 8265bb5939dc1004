"""Fine-tuning on region folders (ImageBERT): clean pairs with caption- and image-swap
negatives, the region mask reaching the model, and a short retrieval run that
starts from an ImageBERT pretraining checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

import kaleido_tf
from kaleido_tf.finetuning.clean_pairs import clean_pairs_dataset
from kaleido_tf.inputs.parse import record_dataset
from kaleido_tf.manifest import read_manifest
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
    "model.layout=regions36",
    "image_bert.num_classes=5",
    "image_bert.max_masked_tokens=6",
    "image_bert.max_masked_regions=12",
]


@pytest.fixture(scope="module")
def region_dir(tmp_path_factory):
    return write_region_prepared(tmp_path_factory.mktemp("ft") / "train")["dir"]


def test_clean_pairs_of_a_region_folder_carry_the_region_mask(region_dir):
    config = kaleido_tf.load_config("image_bert/finetune_retrieval", TINY)
    batch = next(
        iter(
            clean_pairs_dataset(region_dir, config, 16, training=False, tasks=("itm",))
        )
    )
    records = {
        r["image_id"].numpy(): r
        for r in record_dataset(region_dir, read_manifest(region_dir))
    }
    labels = batch["itm_labels"].numpy()
    assert 0 < labels.sum() < len(labels)  # matched and mismatched pairs
    # No masking in fine-tuning: the positives' features are the records' own.
    features = batch["patch_features"].numpy()
    masks = batch["patch_mask"].numpy()
    found = 0
    for i in np.flatnonzero(labels == 1):
        for record in records.values():
            stored = record["region_features"].numpy()
            if np.array_equal(stored, features[i]):
                n = int(record["num_regions"].numpy())
                assert masks[i].tolist() == [1] * n + [0] * (36 - n)
                found += 1
                break
    assert found == labels.sum()


def test_retrieval_finetuning_on_regions_restores_pretraining_and_trains(
    region_dir, tmp_path
):
    steps = ["train.max_steps=3", "train.global_batch_size=8"]
    steps += ["train.checkpoint_every_steps=3", "train.log_every_steps=1"]
    pretrain = kaleido_tf.load_config("image_bert/demo", [*TINY, *steps])
    Trainer(pretrain, region_dir, tmp_path / "pre").fit(progress=False)
    config = kaleido_tf.load_config("image_bert/finetune_retrieval", [*TINY, *steps])
    trainer = Trainer(
        config, region_dir, tmp_path / "ft", init_checkpoint=tmp_path / "pre"
    )
    encoder = trainer.model.encoder
    pre = kaleido_tf.checkpoints.trained_model.load_trained_model(tmp_path / "pre")
    np.testing.assert_array_equal(  # the region embedding came from pretraining
        encoder.patch_embedding.sequence_position_vector.numpy(),
        pre.model.encoder.patch_embedding.sequence_position_vector.numpy(),
    )
    trainer.fit(progress=False)
    history = (tmp_path / "ft" / "history.jsonl").read_text().splitlines()
    assert len(history) == 3 and '"itm_loss"' in history[-1]


INTER_TINY = [
    "model.encoder.hidden_size=16",
    "model.encoder.num_attention_heads=2",
    "model.encoder.inner_dim=24",
    "model.encoder.num_layers=1",
    "model.encoder.max_sequence_length=16",
    f"model.encoder.vocab_size={VOCAB_SIZE}",
    "model.patch_feature_dim=8",
    "inter_bert.num_image_extractor_layers=1",
    "inter_bert.num_text_extractor_layers=1",
    "inter_bert.pooled_size=16",
    "inter_bert.num_classes=5",
    "inter_bert.max_masked_tokens=6",
    "inter_bert.hard_negative_fraction=0.0",
]


def test_inter_bert_retrieval_finetuning_is_4_way_multiple_choice(region_dir, tmp_path):
    # InterBERT §3.6: its own two-stream model, the pretrained ITM (match) head
    # restored, and CE over groups of 1 positive + 3 negative images.
    steps = ["train.max_steps=2", "train.global_batch_size=8"]
    steps += ["train.checkpoint_every_steps=2", "train.log_every_steps=1"]
    steps += ["train.optimizer.warmup_steps=0"]
    pretrain = kaleido_tf.load_config("inter_bert/demo", [*INTER_TINY, *steps])
    Trainer(pretrain, region_dir, tmp_path / "pre").fit(progress=False)
    config = kaleido_tf.load_config(
        "inter_bert/finetune_retrieval", [*INTER_TINY, *steps]
    )
    trainer = Trainer(
        config, region_dir, tmp_path / "ft", init_checkpoint=tmp_path / "pre"
    )
    assert type(trainer.model).__name__ == "InterBertModel"
    assert "itm" in trainer.init_report.heads_restored
    trainer.fit(progress=False)
    history = (tmp_path / "ft" / "history.jsonl").read_text().splitlines()
    assert len(history) == 2 and '"rank_ce_loss"' in history[-1]


def test_finetune_takes_the_system_section_of_the_pretraining_run(tmp_path):
    # The system sections shape the network (here InterBERT's extraction streams),
    # so `finetune --init-from RUN` must build the run's network, whatever the
    # fine-tuning file says.
    import argparse

    import yaml

    from kaleido_tf.cli.finetune import resolve_config
    from kaleido_tf.config.loader import config_to_dict

    run = kaleido_tf.load_config(
        "inter_bert/demo", [*INTER_TINY, "inter_bert.num_text_extractor_layers=2"]
    )
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(
        yaml.safe_dump(config_to_dict(run), sort_keys=False)
    )
    args = argparse.Namespace(
        config="kaleido_bert/finetune_retrieval",
        set=[],
        seed=None,
        init_from=tmp_path / "run",
        task="retrieval",
        data=tmp_path,
    )
    config, _ = resolve_config(args)
    assert config.system == "inter_bert"
    assert config.inter_bert == run.inter_bert
    assert config.inter_bert.num_text_extractor_layers == 2
    assert config.finetune.task == "retrieval"
