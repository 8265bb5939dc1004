"""Google BERT checkpoints into InterBERT: text-only outputs against a numpy BERT."""

from __future__ import annotations

import numpy as np
import pytest

import kaleido_tf
from kaleido_tf.checkpoints.google_bert import load_google_bert
from kaleido_tf.errors import CheckpointError
from tests.fixtures.bert_checkpoint import write_bert_checkpoint
from tests.kaleido_tf.checkpoints.test_google_bert import (
    checkpoint_arrays,
    np_bert,
    np_mlm_logits,
)

VOCAB = 31


def config(layers, text_layers, init="normal"):
    return kaleido_tf.load_config(
        "inter_bert/demo",
        [
            "model.encoder.hidden_size=12",
            "model.encoder.num_attention_heads=2",
            "model.encoder.inner_dim=20",
            f"model.encoder.num_layers={layers}",
            f"model.encoder.vocab_size={VOCAB}",
            "model.encoder.max_sequence_length=16",
            "model.patch_feature_dim=8",
            "inter_bert.num_image_extractor_layers=1",
            f"inter_bert.num_text_extractor_layers={text_layers}",
            f"inter_bert.extractor_init={init}",
            "inter_bert.pooled_size=8",
            "inter_bert.num_classes=5",
        ],
    )


def text_inputs(batch_size=5, length=7, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, length + 1, batch_size)
    lengths[0] = length
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(1, VOCAB, (batch_size, length)).astype(np.int32) * mask
    return {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros_like(ids)}


def _text_pass(model, inputs):
    return model.encoder(inputs, training=False)


@pytest.fixture(scope="module")
def bert4(tmp_path_factory):
    return write_bert_checkpoint(tmp_path_factory.mktemp("bert4"), layers=4, seed=2)


def test_paper_setting_loads_the_interaction_stack_and_text_embedding(tmp_path):
    bert_dir = write_bert_checkpoint(tmp_path / "bert", layers=2, seed=1)
    model = kaleido_tf.build_model(config(2, 1))
    before = model.encoder.text_blocks[0].get_weights()
    report = load_google_bert(model, bert_dir)
    a = checkpoint_arrays(bert_dir)
    inputs = text_inputs()
    # The interaction module on text alone is BERT: its output equals numpy BERT's.
    out = _text_pass(model, inputs)
    mask = inputs["input_mask"]
    expected, _ = np_bert(
        a, inputs["input_ids"], mask.astype(np.float64), inputs["segment_ids"], 2
    )
    real = mask.astype(bool)
    np.testing.assert_allclose(
        out["sequence_output"].numpy()[real], expected[real], atol=2e-5
    )
    # The MSM head is BERT's LM head, on the text extractor's outputs.
    positions = np.array([[1, 2]] * len(mask), np.int32)
    seq = out["text_sequence_output"].numpy().astype(np.float64)
    logits = model.heads["msm"](
        out["text_sequence_output"], positions, out["embedding_table"]
    )
    np.testing.assert_allclose(
        logits.numpy(), np_mlm_logits(a, seq, positions), atol=2e-5
    )
    # Random extractors (paper, N(0, 0.02)) stay as they were; no pooler exists.
    for w0, w1 in zip(before, model.encoder.text_blocks[0].get_weights()):
        np.testing.assert_array_equal(w0, w1)
    assert any("text_layer_0" in name for name in report.random_init)
    assert any("image_layer_0" in name for name in report.random_init)
    assert not any("pooler" in k for k in report.loaded.values())
    assert "bert/pooler/dense/kernel" in report.unused


def test_released_setting_text_stream_is_the_whole_bert(bert4):
    # 2 interaction + 2 text-extractor layers from a 4-layer BERT: the text-only
    # pass runs BERT layers 1-2 then 3-4, i.e. exactly BERT (released 6 + 6 + 6).
    model = kaleido_tf.build_model(config(2, 2, "copy_interaction"))
    report = load_google_bert(model, bert4)
    a = checkpoint_arrays(bert4)
    inputs = text_inputs(seed=3)
    out = _text_pass(model, inputs)
    mask = inputs["input_mask"]
    expected, _ = np_bert(
        a, inputs["input_ids"], mask.astype(np.float64), inputs["segment_ids"], 2
    )
    real = mask.astype(bool)
    np.testing.assert_allclose(
        out["text_sequence_output"].numpy()[real], expected[real], atol=3e-5
    )
    sources = set(report.loaded.values())
    assert {f"bert/encoder/layer_{i}/output/dense/kernel" for i in range(4)} <= sources


def test_layer_count_mismatch_is_refused_without_copy(bert4):
    model = kaleido_tf.build_model(config(2, 1))
    before = [w.numpy() for w in model.weights]
    with pytest.raises(CheckpointError, match="num_hidden_layers=4"):
        load_google_bert(model, bert4)
    for b, w in zip(before, model.weights):
        np.testing.assert_array_equal(b, w.numpy())
