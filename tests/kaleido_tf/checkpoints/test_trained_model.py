"""A run folder's model comes back with exactly the weights it was saved with."""

import numpy as np
import pytest
import tensorflow as tf

from kaleido_tf.checkpoints.trained_model import (
    latest_checkpoint,
    load_trained_model,
    restore_model_weights,
)
from kaleido_tf.errors import CheckpointError


def test_restores_every_weight_of_the_latest_checkpoint(tiny_pretrain_run):
    trained = load_trained_model(tiny_pretrain_run)
    assert trained.step == 4 and trained.checkpoint.endswith("ckpt-4")
    reader = tf.train.load_checkpoint(trained.checkpoint)
    saved = {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name.startswith("model/") and "OPTIMIZER_SLOT" not in name
    }
    assert len(saved) == len(trained.model.weights)
    # Every restored weight equals one saved tensor of its shape (independent read).
    by_shape = {}
    for value in saved.values():
        by_shape.setdefault(value.shape, []).append(value)
    for weight in trained.model.weights:
        candidates = by_shape[tuple(weight.shape)]
        assert any(np.array_equal(weight.numpy(), c) for c in candidates), weight.name


def test_earlier_checkpoint_differs(tiny_pretrain_run):
    early = load_trained_model(
        tiny_pretrain_run, latest_checkpoint(tiny_pretrain_run)[:-1] + "2"
    )
    late = load_trained_model(tiny_pretrain_run)
    assert early.step == 2
    assert any(
        not np.array_equal(a.numpy(), b.numpy())
        for a, b in zip(early.model.weights, late.model.weights)
    )


def test_missing_folder_and_mismatching_model(tiny_pretrain_run, tmp_path):
    with pytest.raises(CheckpointError, match="config.yaml"):
        load_trained_model(tmp_path)
    import kaleido_tf

    bigger = kaleido_tf.build_model(
        kaleido_tf.load_config("kaleido_bert/demo", ["model.encoder.num_layers=3"])
    )
    with pytest.raises(CheckpointError, match="does not hold"):
        restore_model_weights(bigger, latest_checkpoint(tiny_pretrain_run))
