"""Fine-tuning from a pretraining run: what is restored, the CLI, and learning."""

import json

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.checkpoints.trained_model import latest_checkpoint, load_trained_model
from kaleido_tf.cli.main import main
from kaleido_tf.errors import CheckpointError
from kaleido_tf.finetuning.pretrained_weights import load_pretrained_weights
from tests.conftest import TINY_MODEL

SHORT = [
    "train.global_batch_size=8",
    "train.max_steps=4",
    "train.checkpoint_every_steps=2",
    "train.log_every_steps=2",
]


def finetune_config(task, *extra):
    return kaleido_tf.load_config(
        f"kaleido_bert/finetune_{task}",
        [*TINY_MODEL, "model.patch_feature_dim=576", "model.encoder.vocab_size=1000"]
        + (["finetune.num_classes=5"] if task in ("category", "subcategory") else [])
        + (
            ["finetune.captioning.max_caption_tokens=20"]
            if task == "captioning"
            else []
        )
        + list(extra),
    )


def saved(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {
        n: reader.get_tensor(n)
        for n in reader.get_variable_to_shape_map()
        if n.startswith("model/") and "OPTIMIZER_SLOT" not in n
    }


@pytest.mark.parametrize(
    "task, restored_heads",
    [("retrieval", ["itm"]), ("category", []), ("captioning", ["mlm"])],
)
def test_encoder_and_shared_heads_come_from_the_checkpoint(
    tiny_pretrain_run, task, restored_heads
):
    model = kaleido_tf.build_model(finetune_config(task))
    fresh = {w.name: w.numpy() for w in model.weights}
    report = load_pretrained_weights(model, tiny_pretrain_run)
    assert report.heads_restored == restored_heads
    values = saved(latest_checkpoint(tiny_pretrain_run))
    by_shape = {}
    for v in values.values():
        by_shape.setdefault(v.shape, []).append(v)
    for w in model.weights:
        in_checkpoint = any(
            np.array_equal(w.numpy(), v) for v in by_shape.get(tuple(w.shape), [])
        )
        is_new_head = any(f"/{h}_head/" in w.name for h in report.heads_initialised)
        if is_new_head:
            np.testing.assert_array_equal(w.numpy(), fresh[w.name])
        else:
            assert in_checkpoint, w.name


def test_another_encoder_size_is_refused(tiny_pretrain_run):
    config = finetune_config("retrieval", "model.encoder.hidden_size=32")
    model = kaleido_tf.build_model(config)
    with pytest.raises(CheckpointError, match="cannot initialise"):
        load_pretrained_weights(model, tiny_pretrain_run)


def run_finetune(task, data, model_dir, init, *extra):
    argv = ["finetune", "--task", task, "--data", str(data)]
    argv += ["--model-dir", str(model_dir), "--init-from", str(init), "--quiet"]
    for s in [*SHORT, *extra]:
        argv += ["--set", s]
    return main(argv)


def test_cli_takes_the_run_model_and_the_data_classes(
    tiny_pretrain_run, synthetic_prepared, tmp_path
):
    data = synthetic_prepared["train"]
    assert run_finetune("subcategory", data, tmp_path / "sub", tiny_pretrain_run) == 0
    trained = load_trained_model(tmp_path / "sub")
    pretrained = load_trained_model(tiny_pretrain_run)
    assert trained.config.model == pretrained.config.model
    classes = json.loads((data / "categories.json").read_text())["subcategory"]
    assert trained.config.finetune.num_classes == len(classes)
    assert trained.model.heads["subcategory"].get_config()["num_classes"] == len(
        classes
    )
    assert trained.step == 4
    # The same command again resumes (nothing left to do) instead of starting over.
    assert run_finetune("subcategory", data, tmp_path / "sub", tiny_pretrain_run) == 0
    assert load_trained_model(tmp_path / "sub").step == 4


def test_cli_refuses_a_config_of_another_task(
    tiny_pretrain_run, synthetic_prepared, tmp_path, capsys
):
    argv = [
        "finetune",
        "--task",
        "category",
        "--config",
        "kaleido_bert/finetune_retrieval",
    ]
    argv += ["--data", str(synthetic_prepared["train"]), "--model-dir", str(tmp_path)]
    assert main(argv + ["--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "finetune.task" in err[0]


def test_category_fine_tuning_learns(tiny_pretrain_run, synthetic_prepared, tmp_path):
    """CR on held-out products: far above chance after a short fine-tuning."""
    from kaleido_tf.evaluation.category_recognition import predict_categories

    data = synthetic_prepared["train"]
    steps = [
        "train.max_steps=300",
        "train.global_batch_size=16",
        "train.log_every_steps=100",
        "train.checkpoint_every_steps=300",
        "train.optimizer.learning_rate=1e-2",  # hidden size 16 learns slowly
        "finetune.classifier_dropout=0.0",
    ]
    assert (
        run_finetune("category", data, tmp_path / "cr", tiny_pretrain_run, *steps) == 0
    )
    trained = load_trained_model(tmp_path / "cr")
    labels, predicted = predict_categories(
        trained.model, trained.config, synthetic_prepared["validation"], progress=False
    )
    majority = np.bincount(labels).max() / len(labels)
    accuracy = float((labels == predicted).mean())
    assert len(labels) > 20
    assert accuracy > majority + 0.15, (accuracy, majority)
