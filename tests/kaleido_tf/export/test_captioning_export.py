"""The captioning SavedModel: image in, the beam-search caption out, in a fresh
process, equal to decoding with the Keras model."""

import numpy as np
import pytest

import kaleido_tf
from kaleido_tf.checkpoints.trained_model import TrainedModel
from kaleido_tf.errors import ConfigError
from kaleido_tf.export.saved_model_export import export_saved_model
from tests.conftest import TINY_MODEL
from tests.kaleido_tf.export.conftest import run_in_fresh_process


@pytest.fixture(scope="module")
def captioner():
    config = kaleido_tf.load_config(
        "kaleido_bert/finetune_captioning",
        [
            *TINY_MODEL,
            "model.patch_feature_dim=576",
            "model.encoder.vocab_size=1000",
            "finetune.captioning.max_caption_tokens=6",
            "finetune.captioning.beam_size=3",
        ],
    )
    model = kaleido_tf.build_model(config)
    rng = np.random.default_rng(0)  # peaked, image-dependent outputs
    for w in model.weights:
        if "layer_norm" not in w.name:
            w.assign(w.numpy() + rng.normal(0, 0.3, w.shape).astype(np.float32))
    return TrainedModel(config, model, "in-memory", 0)


def test_fresh_process_captions_equal_keras_decoding(
    captioner, synthetic_prepared, validation_records, tmp_path
):
    from kaleido_tf.finetuning.caption_generation import (
        SpecialIds,
        generate_captions,
        ids_to_text,
    )
    from kaleido_tf.inputs.product_table import ProductTable
    from kaleido_tf.manifest import read_manifest

    train = synthetic_prepared["train"]
    out = tmp_path / "captioning"
    export_saved_model(
        captioner,
        "captioning",
        out,
        train / "vocab.txt",
        lower_case=True,
        max_seq_length=24,
    )
    features = validation_records.patch_features[:4]
    boxes = validation_records.patch_boxes[:4]
    reply = run_in_fresh_process(
        out,
        {"a": ("serving_default", {"patch_features": features, "patch_boxes": boxes})},
        tmp_path,
        text_ops=False,
    )["a"]
    table = ProductTable.load(train, read_manifest(train))
    cap = captioner.config.finetune.captioning
    ids, scores = generate_captions(
        captioner.model,
        features,
        boxes,
        SpecialIds.from_table(table, 1000),
        1000,
        beam_size=cap.beam_size,
        max_tokens=cap.max_caption_tokens,
    )
    np.testing.assert_array_equal(reply["caption_ids"], ids.numpy())
    np.testing.assert_allclose(reply["caption_score"], scores.numpy(), atol=1e-4)
    texts = [t.decode() for t in reply["caption"]]
    assert texts == [ids_to_text(row, table.vocab, table.sep_id) for row in ids.numpy()]
    assert len(set(texts)) > 1 and all(texts)  # image-dependent, non-empty


def test_captioning_export_needs_a_captioner(captioner, synthetic_prepared, tmp_path):
    retrieval = kaleido_tf.load_config(
        "kaleido_bert/finetune_retrieval",
        [*TINY_MODEL, "model.patch_feature_dim=576", "model.encoder.vocab_size=1000"],
    )
    other = TrainedModel(retrieval, kaleido_tf.build_model(retrieval), "x", 0)
    vocab = synthetic_prepared["train"] / "vocab.txt"
    with pytest.raises(ConfigError, match="not a captioner"):
        export_saved_model(
            other,
            "captioning",
            tmp_path / "a",
            vocab,
            lower_case=True,
            max_seq_length=24,
        )
    with pytest.raises(ConfigError, match="images only"):
        export_saved_model(
            captioner,
            "captioning",
            tmp_path / "b",
            vocab,
            lower_case=True,
            max_seq_length=24,
            with_text_signature=True,
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
