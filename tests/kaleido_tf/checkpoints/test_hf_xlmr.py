"""Hugging Face XLM-R into CommerceMMEncoder: numpy RoBERTa parity, formats, report."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from scipy.special import erf

import kaleido_tf  # noqa: F401
from data_prep.text.sentencepiece import SentencePieceEncoder
from kaleido_tf.checkpoints.hf_xlmr import (
    encoder_kwargs,
    load_hf_xlmr,
    read_xlmr_config,
)
from kaleido_tf.errors import CheckpointError
from kaleido_tf.networks.commerce_mm_encoder import CommerceMMEncoder
from tests.fixtures.hf_xlmr_checkpoint import write_hf_xlmr, write_safetensors
from tests.fixtures.sentencepiece_model import MULTILINGUAL, sentencepiece_model

V, H, HEADS, INNER, MAX_POS, LAYERS = 202, 16, 2, 24, 12, 3
T = MAX_POS - 2  # RoBERTa's rows 0 and 1 serve no token
IMAGE = dict(  # the cheapest image encoder: the loader never touches it
    backbone="vit",
    image_size=32,
    vit_hidden_size=8,
    vit_num_layers=1,
    vit_num_heads=2,
    vit_mlp_dim=8,
)
EPS = 1e-5  # XLM-R's layer_norm_eps, embeddings and blocks
TEXTS = ["Red wool dress.", MULTILINGUAL[0], MULTILINGUAL[2], ""]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("xlmr")
    arrays = write_hf_xlmr(
        path,
        V,
        H,
        LAYERS,
        HEADS,
        INNER,
        MAX_POS,
        sentencepiece_model=sentencepiece_model(),
    )
    return path, arrays


def _batch():
    input_ids, input_mask, _ = SentencePieceEncoder(sentencepiece_model(), T).encode(
        TEXTS
    )
    assert input_mask.sum(1).min() < T  # some padding
    return input_ids, input_mask


def _encoder(num_layers=LAYERS, num_text_layers=1, build=True, **kw):
    args = dict(
        vocab_size=V,
        hidden_size=H,
        num_layers=num_layers,
        num_attention_heads=HEADS,
        inner_dim=INNER,
        num_text_layers=num_text_layers,
        image_encoder=IMAGE,
        max_sequence_length=T,
    )
    args.update(kw)
    encoder = CommerceMMEncoder(**args)
    # XLM-R's LayerNorm epsilon (1e-5) reaches the embedding LayerNorm too.
    assert encoder.text_embedding.layer_norm.epsilon == encoder.norm_epsilon
    if not build:
        return encoder
    ids, mask = _batch()  # builds the text side (the loader needs its variables)
    t = min(T, args["max_sequence_length"])
    ids = np.minimum(ids[:, :t], args["vocab_size"] - 1)
    encoder.encode_text(
        encoder.embed_text(tf.constant(ids)), tf.constant(mask[:, :t]), num_layers
    )
    return encoder


def _text_states(encoder, ids, mask, k):
    x = encoder.embed_text(tf.constant(ids), training=False)
    return encoder.encode_text(x, tf.constant(mask), k, training=False).numpy()


def _layer_norm(x, w, b):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * w + b


def _roberta(arrays, ids, k, first_position=2):
    """Hugging Face RobertaModel's forward pass in float64 numpy, first k layers.

    Positions from fairseq's make_positions (padding_idx = 1): real tokens take
    2, 3, ...; padding keeps row 1. PyTorch Linear: y = x W^T + b. Post-LN, exact
    (erf) gelu, eps 1e-5, additive mask on padded keys.
    """
    a = {n: v.astype(np.float64) for n, v in arrays.items() if v.dtype.kind == "f"}
    e = "roberta.embeddings."
    real = ids != 1
    positions = np.cumsum(real, 1) * real + 1  # 2, 3, ... for real tokens
    positions += (first_position - 2) * real
    x = a[e + "word_embeddings.weight"][ids]
    x = x + a[e + "position_embeddings.weight"][positions]
    x = x + a[e + "token_type_embeddings.weight"][np.zeros_like(ids)]
    x = _layer_norm(x, a[e + "LayerNorm.weight"], a[e + "LayerNorm.bias"])
    b, t = ids.shape
    d = H // HEADS
    bias = np.where(real, 0.0, -1e9)[:, None, None, :]  # [B, 1, 1, T]

    def linear(name, inp):
        return inp @ a[name + ".weight"].T + a[name + ".bias"]

    for i in range(k):
        s = f"roberta.encoder.layer.{i}."

        def heads(y):
            return y.reshape(b, t, HEADS, d).transpose(0, 2, 1, 3)  # [B, N, T, d]

        q = heads(linear(s + "attention.self.query", x))
        kk = heads(linear(s + "attention.self.key", x))
        v = heads(linear(s + "attention.self.value", x))
        scores = q @ kk.transpose(0, 1, 3, 2) / np.sqrt(d) + bias  # [B, N, T, T]
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        context = (p @ v).transpose(0, 2, 1, 3).reshape(b, t, H)
        attn = linear(s + "attention.output.dense", context)
        x = _layer_norm(
            attn + x,
            a[s + "attention.output.LayerNorm.weight"],
            a[s + "attention.output.LayerNorm.bias"],
        )
        inner = linear(s + "intermediate.dense", x)
        inner = 0.5 * inner * (1.0 + erf(inner / np.sqrt(2.0)))
        out = linear(s + "output.dense", inner)
        x = _layer_norm(
            out + x, a[s + "output.LayerNorm.weight"], a[s + "output.LayerNorm.bias"]
        )
    return x


def _close_at_real_tokens(ours, ref, mask):
    real = mask.astype(bool)
    np.testing.assert_allclose(ours[real], ref[real], rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def encoder():
    """One 3-layer encoder that the tests below load again and again."""
    return _encoder()


def test_text_encoder_matches_numpy_roberta(folder, encoder):
    path, arrays = folder
    ids, mask = _batch()
    for weights in ("model.safetensors", "tf_model.h5"):
        load_hf_xlmr(encoder, path, weights)
        for k in (1, LAYERS):
            ours = _text_states(encoder, ids, mask, k)
            _close_at_real_tokens(ours, _roberta(arrays, ids, k), mask)
    # The comparison can fail: without RoBERTa's position offset it does.
    wrong = _roberta(arrays, ids, LAYERS, first_position=0)
    assert np.abs(ours - wrong)[mask.astype(bool)].max() > 0.1


def _text_values(encoder):
    weights = encoder.text_embedding.weights
    weights += [w for block in encoder.blocks for w in block.weights]
    return [w.numpy() for w in weights]


def test_both_formats_give_identical_weights(folder, encoder):
    path, _ = folder
    report_a = load_hf_xlmr(encoder, path, "model.safetensors")
    values_a = _text_values(encoder)
    for variable in encoder.variables:  # scramble, so the second load must set all
        variable.assign(tf.zeros_like(variable))
    report_b = load_hf_xlmr(encoder, path, "tf_model.h5")
    assert list(report_a.loaded) == list(report_b.loaded)
    values_b = _text_values(encoder)
    assert len(values_a) == 5 + 16 * LAYERS
    for va, vb in zip(values_a, values_b):
        np.testing.assert_array_equal(va, vb)
    # The default is model.safetensors.
    assert load_hf_xlmr(encoder, path).source.endswith("model.safetensors")


def test_report_lists_everything(folder, encoder):
    path, arrays = folder
    report = load_hf_xlmr(encoder, path, "model.safetensors")
    assert len(report.loaded) == 5 + 16 * LAYERS
    loaded = set(report.loaded)
    names = {v.name[:-2] for v in encoder.variables}
    assert loaded | set(report.random_init) == names
    assert not loaded & set(report.random_init)
    image = {v.name[:-2] for v in encoder.image_encoder.variables}
    assert set(report.random_init) == image and image
    # Every checkpoint tensor is accounted for.
    accounted = set(report.loaded.values()) | set(report.unused) | set(report.ignored)
    assert accounted == set(arrays)
    assert report.ignored == ["roberta.embeddings.position_ids"]
    assert {n.split(".")[0] for n in report.unused} == {"lm_head", "roberta"}
    assert all("pooler" in n or n.startswith("lm_head") for n in report.unused)
    query = next(
        n for n in report.loaded if n.endswith("layer_1/self_attention/query/kernel")
    )
    assert report.loaded[query] == "roberta.encoder.layer.1.attention.self.query.weight"
    assert report.transforms[query] == (
        f"transposed [{H}, {H}] -> [{H}, {H}]; reshaped [{H}, {H}] -> "
        f"[{H}, {HEADS}, {H // HEADS}]"
    )
    table = encoder.text_embedding.position_table.name[:-2]
    assert report.transforms[table].startswith(f"rows 2..{T + 1} of {MAX_POS}")
    notes = " ".join(report.notes)
    assert "pooler unused" in notes and "lm_head unused" in notes
    assert "sentencepiece.bpe.model" in notes and "<mask> = 201" in notes
    assert "truncated" not in notes
    h5 = load_hf_xlmr(encoder, path, "tf_model.h5")
    assert h5.transforms[query].startswith("reshaped")  # h5 kernels are [in, out]
    assert h5.loaded[query].endswith(
        "roberta/encoder/layer_._1/attention/self/query/kernel:0"
    )
    text = report.format()
    assert "<- roberta.encoder.layer.2.output.LayerNorm.bias" in text
    assert "unused checkpoint variables 7:" in text


def test_truncated_checkpoint_loads_bottom_layers(folder):
    path, arrays = folder
    encoder = _encoder(num_layers=2)
    report = load_hf_xlmr(encoder, path, "tf_model.h5")
    ids, mask = _batch()
    _close_at_real_tokens(
        _text_states(encoder, ids, mask, 2), _roberta(arrays, ids, 2), mask
    )
    assert any("loaded the bottom 2" in n and "§4.11 #16" in n for n in report.notes)
    assert sum("layer_._2/" in n for n in report.unused) == 16


def test_epsilon_mismatch_is_noted(folder):
    path, _ = folder
    encoder = _encoder(norm_epsilon=1e-12)
    notes = load_hf_xlmr(encoder, path).notes
    assert any("norm_epsilon=1e-05" in n for n in notes)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hidden_size=8), "hidden_size=16, the model's hidden_size is 8"),
        (dict(vocab_size=150), "vocab_size=202, the model's vocab_size is 150"),
        (dict(num_attention_heads=4), "num_attention_heads=2"),
        (dict(inner_dim=32), "intermediate_size=24"),
        (dict(type_vocab_size=2), "type_vocab_size=1"),
        (dict(num_layers=4, num_text_layers=1), "fewer than the model's 4 layers"),
        (dict(max_sequence_length=11), "max_sequence_length 11 exceeds the 10"),
        (dict(inner_activation="relu"), "inner_activation is 'relu'"),
    ],
)
def test_wrong_sizes_are_refused(folder, kwargs, match):
    path, _ = folder
    # Sizes are checked before the variables are needed: unbuilt models suffice.
    encoder = _encoder(build=False, **{"num_layers": 1, **kwargs})
    with pytest.raises(CheckpointError, match=match):
        load_hf_xlmr(encoder, path)


def test_unbuilt_model_and_atomic_failure(folder, encoder, tmp_path):
    path, _ = folder
    with pytest.raises(CheckpointError, match="no text variables yet: build it"):
        load_hf_xlmr(_encoder(build=False), path)
    # A tensor missing from the last layer fails after the others were read:
    # nothing may have been assigned.
    partial = tmp_path / "partial"
    arrays = write_hf_xlmr(partial, V, H, LAYERS, HEADS, INNER, MAX_POS, formats=())
    del arrays["roberta.encoder.layer.2.output.LayerNorm.bias"]
    write_safetensors(partial / "model.safetensors", arrays)
    for variable in encoder.variables:
        variable.assign(tf.zeros_like(variable))
    with pytest.raises(
        CheckpointError, match="lacks encoder.layer.2.output.LayerNorm.bias"
    ):
        load_hf_xlmr(encoder, partial)
    assert all(not np.any(v.numpy()) for v in encoder.variables)


def test_bad_folders_are_refused(folder, encoder, tmp_path):
    path, _ = folder
    with pytest.raises(CheckpointError, match="not a directory"):
        load_hf_xlmr(encoder, tmp_path / "missing")
    with pytest.raises(CheckpointError, match="config.json not found"):
        load_hf_xlmr(encoder, tmp_path)
    # config.json alone
    shutil.copy(path / "config.json", tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="neither model.safetensors nor"):
        load_hf_xlmr(encoder, tmp_path)
    # a truncated safetensors file
    data = (path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_hf_xlmr(encoder, tmp_path)
    # a config from another model
    other = tmp_path / "other"
    write_hf_xlmr(
        other,
        V,
        H,
        LAYERS,
        HEADS,
        INNER,
        MAX_POS,
        formats=("h5",),
        config_overrides={"hidden_act": "gelu_new"},
    )
    with pytest.raises(CheckpointError, match="hidden_act='gelu_new'"):
        load_hf_xlmr(encoder, other)
    # weights whose shapes disagree with config.json
    wrong = tmp_path / "wrong"
    write_hf_xlmr(wrong, V, H, LAYERS, HEADS, 20, MAX_POS, formats=("safetensors",))
    cfg = json.loads((wrong / "config.json").read_text())
    cfg["intermediate_size"] = INNER
    (wrong / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError, match=r"has shape \[20, 16\].*implies \[24, 16\]"
    ):
        load_hf_xlmr(encoder, wrong)
    # a SentencePiece model of another vocabulary
    spm_wrong = tmp_path / "spm"
    write_hf_xlmr(
        spm_wrong,
        150,
        H,
        1,
        HEADS,
        INNER,
        MAX_POS,
        formats=("h5",),
        sentencepiece_model=sentencepiece_model(),
    )
    with pytest.raises(CheckpointError, match="200 pieces, i.e. 202 XLM-R ids"):
        load_hf_xlmr(_encoder(num_layers=1, vocab_size=150), spm_wrong)


def test_read_xlmr_config_and_encoder_kwargs(folder):
    path, _ = folder
    config = read_xlmr_config(path)
    assert config["max_sequence_length"] == MAX_POS - 2
    assert config["norm_epsilon"] == EPS
    kwargs = encoder_kwargs(config, num_layers=2)
    assert kwargs["num_layers"] == 2 and kwargs["inner_dim"] == INNER
    encoder = CommerceMMEncoder(**kwargs, num_text_layers=1, image_encoder=IMAGE)
    assert encoder.max_sequence_length == T and encoder.norm_epsilon == EPS
