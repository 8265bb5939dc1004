"""Google BERT checkpoints into VLModel: outputs against an independent numpy BERT."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.checkpoints.google_bert import (
    NSP_IS_NEXT,
    NSP_NOT_NEXT,
    bert_overrides,
    count_vocab,
    describe_checkpoint,
    load_google_bert,
    read_bert_config,
)
from kaleido_tf.checkpoints.report import LoadReport
from kaleido_tf.constants import ITM_MATCH, ITM_MISMATCH
from kaleido_tf.errors import CheckpointError
from tests.fixtures.bert_checkpoint import write_bert_checkpoint

TINY = [
    "model.encoder.hidden_size=12",
    "model.encoder.num_attention_heads=2",
    "model.encoder.inner_dim=20",
    "model.encoder.num_layers=2",
    "model.encoder.vocab_size=31",
    "model.encoder.max_sequence_length=16",
    "model.patch_feature_dim=8",
]
KALEIDO_HEADS = ("rr", "jps", "cp", "g2cm", "b2cm")


# --- an independent BERT forward pass (google-research/bert modeling.py) ----------


def np_layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def np_gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def np_bert(a, input_ids, input_mask, segment_ids, num_heads):
    """Returns sequence_output [B, T, H] and pooled_output [B, H] in float64."""
    b, t = input_ids.shape
    x = a["bert/embeddings/word_embeddings"][input_ids]
    x = x + a["bert/embeddings/token_type_embeddings"][segment_ids]
    x = x + a["bert/embeddings/position_embeddings"][:t]
    x = np_layer_norm(
        x, a["bert/embeddings/LayerNorm/gamma"], a["bert/embeddings/LayerNorm/beta"]
    )
    h = x.shape[-1]
    d = h // num_heads
    adder = (1.0 - input_mask[:, None, None, :]) * -10000.0  # [B, 1, 1, T]
    i = 0
    while f"bert/encoder/layer_{i}/output/dense/kernel" in a:
        p = f"bert/encoder/layer_{i}/"

        def dense(v, name, p=p):
            return v @ a[f"{p}{name}/kernel"] + a[f"{p}{name}/bias"]

        def heads(v):  # [B, T, H] -> [B, N, T, D]
            return v.reshape(b, t, num_heads, d).transpose(0, 2, 1, 3)

        q = heads(dense(x, "attention/self/query"))
        k = heads(dense(x, "attention/self/key"))
        v = heads(dense(x, "attention/self/value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + adder  # [B, N, T, T]
        scores = scores - scores.max(-1, keepdims=True)
        probs = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(b, t, h)
        attention = dense(context, "attention/output/dense")
        x = np_layer_norm(
            attention + x,
            a[f"{p}attention/output/LayerNorm/gamma"],
            a[f"{p}attention/output/LayerNorm/beta"],
        )
        inner = np_gelu(dense(x, "intermediate/dense"))
        x = np_layer_norm(
            dense(inner, "output/dense") + x,
            a[f"{p}output/LayerNorm/gamma"],
            a[f"{p}output/LayerNorm/beta"],
        )
        i += 1
    pooled = np.tanh(
        x[:, 0] @ a["bert/pooler/dense/kernel"] + a["bert/pooler/dense/bias"]
    )
    return x, pooled


def np_mlm_logits(a, sequence, positions):
    x = np.take_along_axis(sequence, positions[:, :, None], axis=1)  # [B, M, H]
    x = np_gelu(
        x @ a["cls/predictions/transform/dense/kernel"]
        + a["cls/predictions/transform/dense/bias"]
    )
    x = np_layer_norm(
        x,
        a["cls/predictions/transform/LayerNorm/gamma"],
        a["cls/predictions/transform/LayerNorm/beta"],
    )
    return x @ a["bert/embeddings/word_embeddings"].T + a["cls/predictions/output_bias"]


def np_nsp_logits(a, pooled):
    return (
        pooled @ a["cls/seq_relationship/output_weights"].T
        + a["cls/seq_relationship/output_bias"]
    )


def checkpoint_arrays(bert_dir):
    reader = tf.train.load_checkpoint(str(bert_dir / "bert_model.ckpt"))
    return {
        name: reader.get_tensor(name).astype(np.float64)
        for name in reader.get_variable_to_shape_map()
        if not name.endswith(("adam_m", "adam_v")) and name != "global_step"
    }


def text_batch(config, vocab_size, batch_size=8, text_length=7, seed=0):
    """Random text with padding, random patches all masked out (patch_mask 0)."""
    rng = np.random.default_rng(seed)
    batch = {
        k: v.numpy() for k, v in kaleido_tf.dummy_batch(config, batch_size).items()
    }
    lengths = rng.integers(2, text_length + 1, batch_size)
    lengths[0], lengths[1] = text_length, 3  # one full row, one with 4 padded slots
    mask = (np.arange(text_length)[None] < lengths[:, None]).astype(np.int32)
    batch["input_ids"] = rng.integers(1, vocab_size, (batch_size, text_length)) * mask
    batch["input_mask"] = mask
    batch["segment_ids"] = rng.integers(0, 2, (batch_size, text_length)) * mask
    batch["patch_features"] = rng.standard_normal(batch["patch_features"].shape)
    batch["patch_boxes"] = rng.random(batch["patch_boxes"].shape)
    batch["patch_mask"] = np.zeros_like(batch["patch_mask"])
    m = batch["masked_lm_positions"].shape[1]
    batch["masked_lm_positions"] = rng.integers(0, text_length, (batch_size, m))
    return {
        k: tf.constant(v, tf.float32 if v.dtype.kind == "f" else tf.int32)
        for k, v in batch.items()
    }


def variables_of(model):
    return {v.name[:-2]: v.numpy().copy() for v in model.variables}


# --- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_config():
    return kaleido_tf.load_config("kaleido_bert/demo", TINY)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return write_bert_checkpoint(tmp_path_factory.mktemp("bert") / "tiny")


@pytest.fixture(scope="module")
def loaded(tiny_config, bert_dir):
    """(model, variables before loading, report, outputs on text_batch)."""
    model = kaleido_tf.build_model(tiny_config)
    before = variables_of(model)
    report = kaleido_tf.load_bert_checkpoint(model, bert_dir)
    batch = text_batch(tiny_config, 31)
    outputs = {k: v.numpy() for k, v in model(batch, training=False).items()}
    return model, before, report, batch, outputs


@pytest.fixture(scope="module")
def spare_model(tiny_config):
    """A tiny model the error tests try to load into (errors change nothing)."""
    return kaleido_tf.build_model(tiny_config)


# --- (1)-(3) numbers --------------------------------------------------------------


def test_text_outputs_equal_numpy_bert(loaded, bert_dir):
    _, _, _, batch, outputs = loaded
    a = checkpoint_arrays(bert_dir)
    t = batch["input_ids"].shape[1]
    sequence, pooled = np_bert(
        a,
        batch["input_ids"].numpy(),
        batch["input_mask"].numpy().astype(np.float64),
        batch["segment_ids"].numpy(),
        num_heads=2,
    )
    assert batch["input_mask"].numpy().min() == 0  # some positions are padding
    np.testing.assert_allclose(outputs["sequence_output"][:, :t], sequence, atol=1e-4)
    np.testing.assert_allclose(outputs["pooled_output"], pooled, atol=1e-4)
    assert np.abs(outputs["sequence_output"][:, :t] - sequence).max() <= 1e-4


def test_mlm_logits_equal_numpy(loaded, bert_dir):
    _, _, _, batch, outputs = loaded
    a = checkpoint_arrays(bert_dir)
    sequence, _ = np_bert(
        a,
        batch["input_ids"].numpy(),
        batch["input_mask"].numpy().astype(np.float64),
        batch["segment_ids"].numpy(),
        num_heads=2,
    )
    expected = np_mlm_logits(a, sequence, batch["masked_lm_positions"].numpy())
    assert outputs["mlm_logits"].shape == expected.shape == (8, 10, 31)
    np.testing.assert_allclose(outputs["mlm_logits"], expected, atol=1e-4)


def test_itm_head_is_nsp_with_classes_swapped(loaded, bert_dir):
    model, _, _, _, outputs = loaded
    a = checkpoint_arrays(bert_dir)
    nsp = np_nsp_logits(a, outputs["pooled_output"].astype(np.float64))
    itm = outputs["itm_logits"]
    np.testing.assert_allclose(itm[:, ITM_MATCH], nsp[:, NSP_IS_NEXT], atol=1e-5)
    np.testing.assert_allclose(itm[:, ITM_MISMATCH], nsp[:, NSP_NOT_NEXT], atol=1e-5)
    # A pair scores "match" on logit[1] exactly when Google's NSP says IsNext.
    is_next = nsp[:, NSP_IS_NEXT] > nsp[:, NSP_NOT_NEXT]
    matched = itm[:, ITM_MATCH] > itm[:, ITM_MISMATCH]
    assert is_next.any() and not is_next.all()  # both cases occur in the batch
    np.testing.assert_array_equal(matched, is_next)
    kernel = model.heads["itm"].logits.kernel.numpy()
    w = a["cls/seq_relationship/output_weights"]
    np.testing.assert_array_equal(kernel[:, ITM_MATCH], w[NSP_IS_NEXT])
    np.testing.assert_array_equal(kernel[:, ITM_MISMATCH], w[NSP_NOT_NEXT])


# --- (4) the report ---------------------------------------------------------------


def test_report_lists_everything_and_loading_changes_text_variables(loaded):
    model, before, report, _, _ = loaded
    after = variables_of(model)
    names = set(after)
    assert set(report.loaded) | set(report.random_init) == names
    assert not set(report.loaded) & set(report.random_init)
    for name in report.loaded:
        assert not np.array_equal(before[name], after[name]), name
    for name in report.random_init:
        np.testing.assert_array_equal(before[name], after[name])
    random_parts = ("encoder/patch_embedding/",) + tuple(
        f"{task}_head/" for task in KALEIDO_HEADS
    )
    expected_random = {n for n in names if any(p in n for p in random_parts)}
    assert set(report.random_init) == expected_random
    assert {n.split("/")[1] for n in report.random_init} == {
        "encoder",
        *(f"{task}_head" for task in KALEIDO_HEADS),
    }
    assert len(report.loaded) == 5 + 2 * 16 + 2 + 5 + 2
    assert report.loaded["kaleido_bert/itm_head/logits/kernel"] == (
        "cls/seq_relationship/output_weights"
    )
    assert report.unused == []
    assert "global_step" in report.ignored
    assert "bert/encoder/layer_1/attention/self/query/kernel/adam_m" in report.ignored
    assert len(report.ignored) == 2 * len(report.loaded) + 1
    text = report.format()
    assert "left at random init 13 variables" in text
    assert "kaleido_bert/encoder/patch_embedding/image_projection/kernel" in text
    assert "layer_{0..1}/self_attention/query/kernel" in text
    assert "reshaped [12, 12] -> [12, 2, 6]" in text
    assert "ignored optimizer state: 93 variables (adam_m, adam_v, global_step)" in text
    assert "classes swapped" in text
    assert json.loads(report.to_json()) == report.to_dict()
    assert LoadReport(**json.loads(report.to_json())) == report


def test_describe_checkpoint_maps_without_loading(spare_model, bert_dir):
    before = variables_of(spare_model)
    text = describe_checkpoint(spare_model, bert_dir)
    after = variables_of(spare_model)
    assert all(np.array_equal(before[n], after[n]) for n in before)
    assert "bert/pooler/dense/kernel" in text
    assert "-> kaleido_bert/encoder/pooler/kernel" in text
    assert "93 of them optimizer state" in text
    assert "kaleido_bert/rr_head/logits/kernel" in text


# --- (5) errors -------------------------------------------------------------------


def copy_of(bert_dir, tmp_path):
    return shutil.copytree(bert_dir, tmp_path / "bert")


@pytest.mark.parametrize(
    "sizes, words",
    [
        (
            {"hidden": 16},
            [
                "bert/embeddings/word_embeddings",
                "[31, 16]",
                "[31, 12]",
                "hidden_size=16",
            ],
        ),
        (
            {"inner": 24},
            [
                "bert/encoder/layer_0/intermediate/dense/kernel",
                "[12, 24]",
                "inner_dim=24",
            ],
        ),
        ({"type_vocab": 3}, ["token_type_embeddings", "[3, 12]", "type_vocab_size=3"]),
        ({"max_pos": 8}, ["position_embeddings", "max_sequence_length to at most 8"]),
        (
            {"heads": 3},
            ["num_attention_heads=3", "model.encoder.num_attention_heads=3"],
        ),
        ({"layers": 3}, ["num_hidden_layers=3", "model.encoder.num_layers=3"]),
        ({"vocab_size": 40}, ["vocab.txt has 40 tokens, the model's vocab_size is 31"]),
    ],
)
def test_checkpoint_of_the_wrong_size(spare_model, tmp_path, sizes, words):
    bert_dir = write_bert_checkpoint(tmp_path / "bert", **sizes)
    before = variables_of(spare_model)
    with pytest.raises(CheckpointError) as error:
        load_google_bert(spare_model, bert_dir)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    after = variables_of(spare_model)
    assert all(np.array_equal(before[n], after[n]) for n in before)


def test_vocab_txt_must_match_bert_config(spare_model, bert_dir, tmp_path):
    bert_dir = copy_of(bert_dir, tmp_path)
    vocab = bert_dir / "vocab.txt"
    vocab.write_text("\n".join(vocab.read_text().splitlines()[:30]) + "\n")
    assert count_vocab(vocab) == 30
    with pytest.raises(CheckpointError, match="vocab.txt has 30 tokens, bert_config"):
        load_google_bert(spare_model, bert_dir)


@pytest.mark.parametrize(
    "missing",
    [
        "bert_config.json",
        "vocab.txt",
        "bert_model.ckpt.index",
        "bert_model.ckpt.data-00000-of-00001",
    ],
)
def test_missing_file(spare_model, bert_dir, tmp_path, missing):
    bert_dir = copy_of(bert_dir, tmp_path)
    (bert_dir / missing).unlink()
    with pytest.raises(CheckpointError, match=missing.replace(".", r"\.")):
        load_google_bert(spare_model, bert_dir)


@pytest.mark.parametrize(
    "exclude, name",
    [
        ("bert/encoder/layer_1/", "bert/encoder/layer_1/"),
        ("bert/embeddings/", "bert/embeddings/"),
        (
            "bert/encoder/layer_0/output/LayerNorm/beta",
            "bert/encoder/layer_0/output/LayerNorm/beta",
        ),
    ],
)
def test_missing_required_group(spare_model, tmp_path, exclude, name):
    bert_dir = write_bert_checkpoint(tmp_path / "bert", exclude=[exclude])
    with pytest.raises(CheckpointError, match=name):
        load_google_bert(spare_model, bert_dir)


def test_bert_config_is_validated(bert_dir, tmp_path):
    bert_dir = copy_of(bert_dir, tmp_path)
    path = bert_dir / "bert_config.json"
    good = json.loads(path.read_text())
    assert read_bert_config(bert_dir) == {
        "vocab_size": 31,
        "hidden_size": 12,
        "num_layers": 2,
        "num_attention_heads": 2,
        "inner_dim": 20,
        "max_sequence_length": 16,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
    }
    for change, word in [
        ({"hidden_act": "relu"}, "hidden_act"),
        ({"embedding_size": 128}, "embedding_size"),
        ({"num_hidden_layers": True}, "num_hidden_layers"),
        ({"intermediate_size": None}, "intermediate_size"),
    ]:
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(CheckpointError, match=word):
            read_bert_config(path)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "vocab_size"}))
    with pytest.raises(CheckpointError, match="lacks vocab_size"):
        read_bert_config(path)
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_bert_config(path)


def test_unbuilt_model_is_refused(tiny_config, bert_dir):
    from kaleido_tf.systems import get_system

    model = get_system(tiny_config.system).build_model(tiny_config)
    with pytest.raises(CheckpointError, match="build it first"):
        load_google_bert(model, bert_dir)


# --- optional groups, position table, overrides -----------------------------------


def test_missing_heads_stay_random_and_are_reported(tiny_config, tmp_path):
    bert_dir = write_bert_checkpoint(tmp_path / "bert", exclude=["cls/"])
    model = kaleido_tf.build_model(tiny_config)
    report = load_google_bert(model, bert_dir)
    assert "kaleido_bert/mlm_head/output_bias" in report.random_init
    assert "kaleido_bert/itm_head/logits/kernel" in report.random_init
    notes = " ".join(report.notes)
    assert "cls/predictions/" in notes and "cls/seq_relationship/" in notes


def test_longer_position_table_is_cut_and_noted(tiny_config, tmp_path):
    bert_dir = write_bert_checkpoint(tmp_path / "bert", max_pos=32)
    model = kaleido_tf.build_model(tiny_config)
    report = load_google_bert(model, bert_dir)
    table = checkpoint_arrays(bert_dir)["bert/embeddings/position_embeddings"]
    np.testing.assert_array_equal(
        model.encoder.text_embedding.position_table.numpy(), table[:16]
    )
    assert any("first 16 of 32 rows" in note for note in report.notes)


def test_bert_overrides_build_a_model_that_loads_cleanly(tmp_path):
    bert_dir = write_bert_checkpoint(
        tmp_path / "bert", vocab_size=37, hidden=16, layers=3, heads=4, inner=24,
        max_pos=20, seed=3,
    )  # fmt: skip
    overrides = bert_overrides(bert_dir)
    assert "model.encoder.num_layers=3" in overrides
    assert "model.encoder.inner_dim=24" in overrides
    config = kaleido_tf.load_config(
        "kaleido_bert/demo", [*overrides, "model.patch_feature_dim=8"]
    )
    model = kaleido_tf.build_model(config)
    report = kaleido_tf.load_bert_checkpoint(model, bert_dir)
    assert report.unused == []
    assert not any("position" in note for note in report.notes)
    batch = text_batch(config, 37, batch_size=4, text_length=9, seed=1)
    outputs = model(batch, training=False)
    sequence, pooled = np_bert(
        checkpoint_arrays(bert_dir),
        batch["input_ids"].numpy(),
        batch["input_mask"].numpy().astype(np.float64),
        batch["segment_ids"].numpy(),
        num_heads=4,
    )
    np.testing.assert_allclose(outputs["sequence_output"][:, :9], sequence, atol=1e-4)
    np.testing.assert_allclose(outputs["pooled_output"], pooled, atol=1e-4)


def test_image_bert_region_embedding_starts_from_bert_rows(tmp_path):
    # ImageBERT §3.2: the visual tokens' fixed dummy position is BERT's position
    # row 0 and their segment is BERT's token-type row 1 (spec §2.11 #3, #4).
    bert_dir = write_bert_checkpoint(
        tmp_path / "bert", vocab_size=37, hidden=16, layers=2, heads=4, inner=24,
        max_pos=20, seed=5,
    )  # fmt: skip
    config = kaleido_tf.load_config(
        "image_bert/demo", [*bert_overrides(bert_dir), "model.patch_feature_dim=8"]
    )
    model = kaleido_tf.build_model(config)
    report = kaleido_tf.load_bert_checkpoint(model, bert_dir)
    arrays = checkpoint_arrays(bert_dir)
    patches = model.encoder.patch_embedding
    np.testing.assert_array_equal(
        patches.sequence_position_vector.numpy(),
        arrays["bert/embeddings/position_embeddings"][0],
    )
    np.testing.assert_array_equal(
        patches.segment_table.numpy(), arrays["bert/embeddings/token_type_embeddings"]
    )
    random = " ".join(report.random_init)
    assert "sequence_position" not in random and "segment_embeddings" not in random
    assert any("row 0" in how for how in report.transforms.values())
