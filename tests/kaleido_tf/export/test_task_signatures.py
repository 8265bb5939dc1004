"""Category export of a VLModel with a fine-tuning head; tasks and heads checked."""

from __future__ import annotations

import json

import numpy as np
import pytest

import kaleido_tf
from kaleido_tf.checkpoints.trained_model import TrainedModel
from kaleido_tf.errors import ConfigError
from kaleido_tf.export.saved_model_export import export_saved_model
from kaleido_tf.export.task_signatures import TASK_SIGNATURES, get_task_signature
from kaleido_tf.models.vl_model import VLModel
from tests.kaleido_tf.export.conftest import run_in_fresh_process

V, H, D, C, P = 31, 12, 8, 7, 55
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def subcategory_model():
    """A tiny VLModel with the "subcategory" classification head (dropout on)."""
    model = VLModel(
        encoder={
            "vocab_size": V,
            "hidden_size": H,
            "num_layers": 1,
            "num_attention_heads": 2,
            "inner_dim": 20,
            "level_sizes": [1, 4, 9, 16, 25],
            "max_sequence_length": 16,
            # Large weights: outputs that clearly depend on every input.
            "initializer_range": 0.5,
            "output_dropout": 0.1,
            "attention_dropout": 0.1,
        },
        heads={
            "subcategory": {
                "type": "classification",
                "num_classes": C,
                "dropout": 0.1,
                "initializer_range": 0.5,
            }
        },
        name="finetuned",
    )
    model(random_inputs(2, 5, seed=9) | extra_inputs(2, 5))
    config = kaleido_tf.load_config(
        "kaleido_bert/demo", [f"model.patch_feature_dim={D}"]
    )
    return TrainedModel(config, model, "in-memory", 0)


def random_inputs(b, t, seed):
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(5, V, (b, t)).astype(np.int32)
    input_mask = np.ones((b, t), np.int32)
    input_mask[0, t // 2 :] = 0  # padding in the first row
    input_ids[input_mask == 0] = 0
    input_ids[:, 0] = 2
    return {
        "input_ids": input_ids,
        "input_mask": input_mask,
        "patch_features": rng.normal(size=(b, P, D)).astype(np.float32),
        "patch_boxes": rng.random((b, P, 5)).astype(np.float32),
    }


def extra_inputs(b, t):
    return {
        "segment_ids": np.zeros((b, t), np.int32),
        "patch_mask": np.ones((b, P), np.int32),
    }


def test_category_export_matches_keras_in_a_fresh_process(tmp_path):
    trained = subcategory_model()
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + [f"w{i}" for i in range(V - 5)]) + "\n")
    out = tmp_path / "exports" / "subcategory"
    out.mkdir(parents=True)
    (out / "old_export.txt").write_text("replaced by --overwrite")
    result = export_saved_model(trained, "subcategory", out, vocab, overwrite=True)
    assert not (out / "old_export.txt").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["subcategory"]
    assert result.signatures == ["serving_default", "subcategory"]
    info = json.loads((out / "export_info.json").read_text())
    outputs = info["signatures"]["subcategory"]["outputs"]
    assert outputs["category_probabilities"]["shape"] == [-1, C]

    calls = {
        "a": ("serving_default", random_inputs(3, 7, seed=1)),
        "b": ("subcategory", random_inputs(2, 16, seed=2)),
    }
    served = run_in_fresh_process(out, calls, tmp_path, text_ops=False)
    assert not served["modules"]["tensorflow_text"]
    assert not served["modules"]["kaleido_tf"]
    for call, (_, inputs) in calls.items():
        b, t = inputs["input_ids"].shape
        batch = inputs | extra_inputs(b, t)
        logits = trained.model(batch, training=False)["subcategory_logits"].numpy()
        probabilities = np.exp(logits - logits.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        got = served[call]
        np.testing.assert_allclose(got["category_logits"], logits, atol=1e-5)
        np.testing.assert_allclose(
            got["category_probabilities"], probabilities, atol=1e-5
        )
        np.testing.assert_array_equal(got["category_id"], logits.argmax(-1))
        assert got["category_id"].dtype == np.int32
        assert np.ptp(logits, axis=0).max() > 0.1, "outputs do not vary"


def test_unknown_tasks_and_missing_heads(tmp_path):
    assert sorted(TASK_SIGNATURES) == [
        "captioning",
        "category",
        "retrieval",
        "subcategory",
    ]
    with pytest.raises(ConfigError, match="translation.*exportable tasks"):
        get_task_signature("translation")
    trained = subcategory_model()
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS) + "\n")
    for task, message in (
        ("category", "no head 'category'.*finetune --task category"),
        ("retrieval", "no head 'itm'"),
    ):
        with pytest.raises(ConfigError, match=message):
            export_saved_model(trained, task, tmp_path / task, vocab)
        assert not (tmp_path / task).exists()
    with pytest.raises(ConfigError, match="max_sequence_length 16"):
        export_saved_model(
            trained, "subcategory", tmp_path / "long", vocab, max_seq_length=17
        )
