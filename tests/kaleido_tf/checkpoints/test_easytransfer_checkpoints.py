"""Released FashionBERT / Kaleido-BERT TF1 checkpoints (tiny, exact names) into the
Keras models: every variable lands where it should; outputs equal numpy."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.checkpoints.easytransfer import (
    load_easytransfer_checkpoint,
    strip_scope,
)
from kaleido_tf.errors import CheckpointError
from tests.fixtures import easytransfer_checkpoint as fx

TINY = [
    "model.encoder.vocab_size=31",
    "model.encoder.hidden_size=12",
    "model.encoder.num_attention_heads=2",
    "model.encoder.inner_dim=20",
    "model.encoder.num_layers=2",
    "model.encoder.max_sequence_length=16",
    "model.patch_feature_dim=8",
]


# --- an independent forward pass of the released models (numpy, float64) ---------


def ln(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_text(a, ids, segments):
    t = ids.shape[1]
    e = "bert/embeddings/"
    x = a[e + "word_embeddings"][ids] + a[e + "token_type_embeddings"][segments]
    x = x + a[e + "position_embeddings"][:t]
    return ln(x, a[e + "LayerNorm/gamma"], a[e + "LayerNorm/beta"])


def np_encoder(a, x, key_mask, heads):
    """BERT blocks (post-LN) and pooler; key_mask [B, L] 1 = may be attended."""
    b, length, h = x.shape
    d = h // heads
    adder = (1.0 - key_mask[:, None, None, :]) * -10000.0
    i = 0
    while f"bert/encoder/layer_{i}/output/dense/kernel" in a:
        p = f"bert/encoder/layer_{i}/"

        def dense(v, name, p=p):
            return v @ a[f"{p}{name}/kernel"] + a[f"{p}{name}/bias"]

        def split(v):
            return v.reshape(b, length, heads, d).transpose(0, 2, 1, 3)

        q = split(dense(x, "attention/self/query"))
        k = split(dense(x, "attention/self/key"))
        v = split(dense(x, "attention/self/value"))
        probs = softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + adder)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, length, h)
        x = ln(
            dense(ctx, "attention/output/dense") + x,
            a[p + "attention/output/LayerNorm/gamma"],
            a[p + "attention/output/LayerNorm/beta"],
        )
        inner = gelu(dense(x, "intermediate/dense"))
        x = ln(
            dense(inner, "output/dense") + x,
            a[p + "output/LayerNorm/gamma"],
            a[p + "output/LayerNorm/beta"],
        )
        i += 1
    pooled = np.tanh(
        x[:, 0] @ a["bert/pooler/dense/kernel"] + a["bert/pooler/dense/bias"]
    )
    return x, pooled


def np_heads(a, seq, pooled, positions):
    itm = pooled @ a["cls/seq_relationship/output_weights"].T
    itm = itm + a["cls/seq_relationship/output_bias"]
    x = np.take_along_axis(seq, positions[:, :, None], 1)
    c = "cls/predictions/"
    x = gelu(x @ a[c + "transform/dense/kernel"] + a[c + "transform/dense/bias"])
    x = ln(x, a[c + "transform/LayerNorm/gamma"], a[c + "transform/LayerNorm/beta"])
    mlm = x @ a["bert/embeddings/word_embeddings"].T + a[c + "output_bias"]
    return itm, mlm


def batch(b, t, p, d, seed=0, box_scale=1.0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(7, 31, (b, t)).astype(np.int32)
    mask = np.ones((b, t), np.int32)
    mask[0, t - 3 :] = 0  # padding
    ids[0, t - 3 :] = 0
    return {
        "input_ids": ids,
        "input_mask": mask,
        "segment_ids": np.zeros((b, t), np.int32),
        "patch_features": np.abs(rng.normal(size=(b, p, d))).astype(np.float32),
        "patch_boxes": (rng.random((b, p, 5)) * box_scale).astype(np.float32),
        "patch_mask": np.ones((b, p), np.int32),
        "masked_lm_positions": np.array([[1, 2, 0], [3, 4, 5], [2, 6, 1]], np.int32)[
            :b
        ],
        "mpm_positions": np.tile(np.arange(3, 9, dtype=np.int32), (b, 1)),
        "g2cm_positions": np.tile(np.array([14, 20], np.int32), (b, 1)),
        "b2cm_positions": np.tile(np.array([30, 41, 54], np.int32), (b, 1)),
    }


def as_float64(arrays):
    return {k: v.astype(np.float64) for k, v in arrays.items()}


# --- FashionBERT -----------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    arrays = fx.fashion_bert_arrays()
    prefix = fx.write_release_checkpoint(
        tmp_path_factory.mktemp("fb") / "fashionbert_pretrain_model_fin",
        arrays,
        "model.ckpt-54198",
        fx.FASHION_SCOPE,
        config=fx.easytransfer_config("imagebert"),
    )
    model = kaleido_tf.build_model(
        kaleido_tf.load_config("fashion_bert/pretrain", TINY)
    )
    report = load_easytransfer_checkpoint(model, prefix)
    return arrays, prefix, model, report


def test_fashion_bert_every_variable_lands_where_it_should(fashion):
    arrays, _, model, report = fashion
    assert report.random_init == []  # every model variable came from the file
    assert report.unused == []  # and every model weight of the file was used
    assert len(report.loaded) == len(arrays) == len(model.variables)
    assert len(report.ignored) == 2 * len(arrays) + 3  # Adam, Adam_1, powers, step
    variables = {v.name[:-2]: v.numpy() for v in model.variables}
    s = fx.FASHION_SCOPE
    expected = {
        "fashion_bert/encoder/patch_embedding/patch_position_embeddings": s
        + "bert/image_embeddings/patch_position_embeddings",
        "fashion_bert/encoder/patch_embedding/image_projection/kernel": s
        + "bert/image_embeddings/image_projector",
        "fashion_bert/mpm_head/logits/kernel": s + "cls/img_predictions/output_weights",
        "fashion_bert/encoder/layer_1/output/kernel": s
        + "bert/encoder/layer_1/output/dense/kernel",
        "fashion_bert/itm_head/logits/kernel": s
        + "cls/seq_relationship/output_weights",
    }
    for ours, theirs in expected.items():
        assert report.loaded[ours] == theirs
        value = arrays[strip_scope(theirs)]
        if ours.endswith("itm_head/logits/kernel"):
            value = value.T  # [2, H] stored [out, in]; no class swap
        np.testing.assert_array_equal(variables[ours], value)
    np.testing.assert_array_equal(
        variables["fashion_bert/encoder/patch_embedding/segment_embeddings"],
        arrays["bert/image_embeddings/patch_type_embeddings"],
    )


def test_fashion_bert_outputs_equal_numpy(fashion):
    arrays, _, model, _ = fashion
    a = as_float64(arrays)
    b = batch(3, 7, 64, 8)
    out = {k: v.numpy() for k, v in model(b, training=False).items()}
    # Patch embedding: LN(f W + type[1] + pos[p]) (released ImageEmbeddings).
    e = "bert/image_embeddings/"
    img = b["patch_features"].astype(np.float64) @ a[e + "image_projector"]
    img = img + a[e + "patch_type_embeddings"][1] + a[e + "patch_position_embeddings"]
    img = ln(img, a[e + "ImageEmbLayerNorm/gamma"], a[e + "ImageEmbLayerNorm/beta"])
    x = np.concatenate([np_text(a, b["input_ids"], b["segment_ids"]), img], 1)
    mask = np.concatenate([b["input_mask"], b["patch_mask"]], 1).astype(np.float64)
    seq, pooled = np_encoder(a, x, mask, heads=2)
    itm, mlm = np_heads(a, seq, pooled, b["masked_lm_positions"])
    mpm = np.take_along_axis(seq, (7 + b["mpm_positions"])[:, :, None], 1)
    mpm = mpm @ a["cls/img_predictions/output_weights"]
    real = mask.astype(bool)
    np.testing.assert_allclose(out["sequence_output"][real], seq[real], atol=2e-4)
    for key, want in (("pooled_output", pooled), ("itm_logits", itm)):
        np.testing.assert_allclose(out[key], want, rtol=1e-4, atol=2e-4)
    np.testing.assert_allclose(out["mlm_logits"], mlm, rtol=1e-4, atol=5e-4)
    np.testing.assert_allclose(out["mpm_logits"], mpm, rtol=1e-4, atol=2e-4)


def test_bare_model_zoo_names_load_too(tmp_path):
    arrays = fx.fashion_bert_arrays(seed=3)
    prefix = fx.write_release_checkpoint(tmp_path, arrays, "model.ckpt", "")
    model = kaleido_tf.build_model(
        kaleido_tf.load_config("fashion_bert/pretrain", TINY)
    )
    report = load_easytransfer_checkpoint(model, prefix)
    assert report.random_init == [] and report.unused == []
    assert any("no config.json" in n for n in report.notes)


# --- Kaleido-BERT ----------------------------------------------------------------


@pytest.fixture(scope="module")
def kaleido(tmp_path_factory):
    arrays = fx.kaleido_bert_arrays()
    prefix = fx.write_release_checkpoint(
        tmp_path_factory.mktemp("kb"),
        arrays,
        "kaleidobert.ckpt-50683",
        fx.KALEIDO_SCOPE,
        config=fx.easytransfer_config("kaleidobert"),
    )
    config = kaleido_tf.load_config("kaleido_bert/pretrain_released", TINY)
    model = kaleido_tf.build_model(config)
    report = load_easytransfer_checkpoint(model, prefix)
    return arrays, prefix, model, report


def test_kaleido_bert_every_variable_lands_where_it_should(kaleido):
    arrays, _, model, report = kaleido
    assert report.random_init == [] and report.unused == []
    variables = {v.name[:-2]: v.numpy() for v in model.variables}
    emb = "kaleido_bert/encoder/patch_embedding/"
    np.testing.assert_array_equal(
        variables[emb + "box_projection/kernel"], arrays["bert/position_dense"]
    )
    for k, (scope, stem, _) in enumerate(fx.KALEIDO_LEVELS):
        np.testing.assert_array_equal(
            variables[f"{emb}image_projection_{k + 1}/kernel"],
            arrays[f"bert/{scope}/{stem}_projector"],
        )
        np.testing.assert_array_equal(  # level k+1 uses row k+1 of its own table
            variables[emb + "segment_embeddings"][k + 1],
            arrays[f"bert/{scope}/{stem}_type_embeddings"][k + 1],
        )
    np.testing.assert_array_equal(
        variables["kaleido_bert/jps_head/logits/kernel"],
        arrays["cls/img_jigsaw/jiasaw_output_weights"].T,
    )
    np.testing.assert_array_equal(
        variables["kaleido_bert/b2cm_head/logits/kernel"],
        arrays["cls/img_blankmask/blanmask_output_weights"],
    )


def test_kaleido_bert_outputs_equal_numpy(kaleido):
    arrays, _, model, _ = kaleido
    a = as_float64(arrays)
    b = batch(3, 7, 55, 8, box_scale=3.0)
    out = {k: v.numpy() for k, v in model(b, training=False).items()}
    parts, start = [], 0
    for k, (scope, stem, n) in enumerate(fx.KALEIDO_LEVELS, start=1):
        e = f"bert/{scope}/{stem}"
        f = b["patch_features"][:, start : start + n].astype(np.float64)
        loc = b["patch_boxes"][:, start : start + n].astype(np.float64)
        x = f @ a[e + "_projector"] + a[e + "_type_embeddings"][k]
        x = x + loc @ a["bert/position_dense"]
        parts.append(ln(x, a[e + "EmbLayerNorm/gamma"], a[e + "EmbLayerNorm/beta"]))
        start += n
    x = np.concatenate([np_text(a, b["input_ids"], b["segment_ids"]), *parts], 1)
    mask = np.concatenate([b["input_mask"], b["patch_mask"]], 1).astype(np.float64)
    seq, pooled = np_encoder(a, x, mask, heads=2)
    itm, mlm = np_heads(a, seq, pooled, b["masked_lm_positions"])
    np.testing.assert_allclose(out["itm_logits"], itm, rtol=1e-4, atol=2e-4)
    np.testing.assert_allclose(out["mlm_logits"], mlm, rtol=1e-4, atol=5e-4)
    # Jigsaw: the 4 level-2 hidden states flattened slot-major, times W^T.
    flat = seq[:, 7 + 1 : 7 + 5].reshape(3, -1)
    jps = flat @ a["cls/img_jigsaw/jiasaw_output_weights"].T
    jps = jps + a["cls/img_jigsaw/jigsaw_output_bias"]
    np.testing.assert_allclose(out["jps_logits"], jps, rtol=1e-4, atol=2e-4)
    grey = np.take_along_axis(seq, (7 + b["g2cm_positions"])[:, :, None], 1)
    grey = grey @ a["cls/img_greymask/greymask_output_weights"]
    np.testing.assert_allclose(out["g2cm_logits"], grey, rtol=1e-4, atol=2e-4)


def test_kaleido_type_table_of_two_rows_gives_zero_rows(tmp_path):
    # released_checkpoints.md §8 item 3: ids past the table contribute nothing.
    arrays = fx.kaleido_bert_arrays(ptv=2)
    prefix = fx.write_release_checkpoint(tmp_path, arrays, "k.ckpt", fx.KALEIDO_SCOPE)
    config = kaleido_tf.load_config("kaleido_bert/pretrain_released", TINY)
    model = kaleido_tf.build_model(config)
    load_easytransfer_checkpoint(model, prefix)
    table = model.encoder.patch_embedding.segment_table.numpy()
    np.testing.assert_array_equal(
        table[1], arrays["bert/rotation_embeddings/rotation_type_embeddings"][1]
    )
    np.testing.assert_array_equal(table[2:], 0.0)


# --- errors ---------------------------------------------------------------------


def test_wrong_model_or_sizes_are_refused_and_nothing_changes(fashion, kaleido):
    _, fb_prefix, _, _ = fashion
    _, kb_prefix, _, _ = kaleido
    paper = kaleido_tf.build_model(
        kaleido_tf.load_config("kaleido_bert/pretrain", TINY)
    )
    before = [v.numpy().copy() for v in paper.variables]
    with pytest.raises(CheckpointError, match="pretrain_released.yaml"):
        load_easytransfer_checkpoint(paper, kb_prefix)
    with pytest.raises(CheckpointError, match="fashion_bert"):
        load_easytransfer_checkpoint(paper, fb_prefix)
    for v, b in zip(paper.variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    three = kaleido_tf.build_model(
        kaleido_tf.load_config(
            "fashion_bert/pretrain", [*TINY, "model.encoder.num_layers=3"]
        )
    )
    with pytest.raises(CheckpointError, match="num_layers=2"):
        load_easytransfer_checkpoint(three, fb_prefix)
    with pytest.raises(CheckpointError, match="index not found"):
        load_easytransfer_checkpoint(three, fb_prefix.parent / "model.ckpt-1")


def test_incomplete_checkpoint_names_the_missing_variable(tmp_path):
    arrays = fx.fashion_bert_arrays()
    prefix = fx.write_release_checkpoint(
        tmp_path,
        arrays,
        "model.ckpt-1",
        fx.FASHION_SCOPE,
        exclude=("bert/image_embeddings/patch_position_embeddings",),
    )
    model = kaleido_tf.build_model(
        kaleido_tf.load_config("fashion_bert/pretrain", TINY)
    )
    with pytest.raises(CheckpointError, match="patch_position_embeddings"):
        load_easytransfer_checkpoint(model, prefix)
    assert strip_scope("x/y") == "x/y"
    assert tf.__version__  # TensorFlow loaded via kaleido_tf (legacy Keras)


def test_cli_writes_a_run_folder_that_restores_like_a_trained_run(fashion, tmp_path):
    from kaleido_tf.checkpoints.trained_model import load_trained_model
    from kaleido_tf.cli.main import main

    arrays, prefix, model, _ = fashion
    run = tmp_path / "run"
    argv = ["import-easytransfer", "--checkpoint", str(prefix), "--out", str(run)]
    argv += ["--config", "fashion_bert/pretrain"]
    for s in TINY:
        argv += ["--set", s]
    assert main(argv + ["--quiet"]) == 0
    restored = load_trained_model(run)
    assert restored.step == 0
    b = batch(2, 7, 64, 8)
    np.testing.assert_allclose(
        restored.model(b, training=False)["itm_logits"],
        model(b, training=False)["itm_logits"],
        atol=1e-6,
    )
    assert (run / "load_report.json").is_file()
    # A second import into the same folder is refused.
    assert main(argv + ["--quiet"]) == 1


def test_init_from_accepts_a_release_checkpoint_prefix(fashion):
    # kaleido_tf.load_bert_checkpoint (pretrain --init-from) dispatches on the path:
    # a directory is Google BERT's, a prefix with an .index a release checkpoint.
    arrays, prefix, _, _ = fashion
    model = kaleido_tf.build_model(
        kaleido_tf.load_config("fashion_bert/pretrain", TINY)
    )
    report = kaleido_tf.load_bert_checkpoint(model, prefix)
    assert report.random_init == [] and report.source == str(prefix)
