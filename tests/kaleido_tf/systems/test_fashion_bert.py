"""FashionBERT as a system: model layout, VSL, objectives vs numpy, training, and
fine-tuning through the shared tasks."""

import json

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.inputs.fashion_bert_pipeline import build_fashion_bert_dataset
from kaleido_tf.layers.patch_embedding import PatchEmbedding
from kaleido_tf.losses.reduction import weighted_mean
from kaleido_tf.systems import fashion_bert, get_recipe, get_system
from kaleido_tf.training.trainer import Trainer, read_history
from tests.helpers import check_layer

TINY = [
    "model.encoder.hidden_size=16",
    "model.encoder.num_attention_heads=2",
    "model.encoder.inner_dim=24",
    "model.encoder.num_layers=1",
    "model.encoder.max_sequence_length=24",
]
SHORT = [
    "train.global_batch_size=16",
    "train.checkpoint_every_steps=1000",
    "train.optimizer.warmup_steps=5",
]


def config(*extra):
    return kaleido_tf.load_config("fashion_bert/demo", [*TINY, *extra])


def np_layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.fixture(scope="module")
def batch(grid8_prepared):
    ds = build_fashion_bert_dataset(
        grid8_prepared, 12, max_masked_tokens=10, training=False, corrupt=True
    )
    return next(iter(ds))


def test_patch_embedding_with_an_index_table_matches_numpy():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(3, 5, 8)).astype(np.float32)
    boxes = rng.random((3, 5, 5)).astype(np.float32)
    layer = PatchEmbedding(12, (5,), dropout=0.0, position_type="index")
    check_layer(
        layer, lambda layer: layer(feats, boxes), (3, 5, 12), trainable_weights=5
    )
    assert layer.position_projection is None
    out = layer(feats, boxes).numpy()
    x = feats @ layer.image_projections[0].kernel.numpy()
    x = x + layer.position_table.numpy()[None] + layer.segment_table.numpy()[1]
    ln = layer.layer_norms[0]
    expected = np_layer_norm(x, ln.gamma.numpy(), ln.beta.numpy())
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # The boxes are not read.
    np.testing.assert_allclose(layer(feats, boxes * 0).numpy(), out, atol=1e-6)


def test_model_has_fashionbert_embeddings_and_three_heads():
    model = kaleido_tf.build_model(config())
    names = {v.name.split("/", 1)[1][:-2]: tuple(v.shape) for v in model.variables}
    emb = "encoder/patch_embedding/"
    assert names[emb + "patch_position_embeddings"] == (64, 16)  # F-Q3
    assert names[emb + "segment_embeddings"] == (2, 16)  # F-Q4: type id 1
    assert not any("box_projection" in n for n in names)
    assert names["mpm_head/logits/kernel"] == (16, 576)  # no bias
    assert "mpm_head/logits/bias" not in names
    assert names["itm_head/logits/kernel"] == (16, 2)
    assert model.encoder.num_layers == 1
    assert get_system("fashion_bert") is fashion_bert
    six = kaleido_tf.load_config("fashion_bert/pretrain_6layer")
    assert fashion_bert.encoder_kwargs(six)["num_layers"] == 6
    assert fashion_bert.build_model(six).trim_text_padding


def test_vsl_inference_drops_text_padding_without_changing_outputs(batch):
    cfg = config()
    full = kaleido_tf.build_model(cfg)
    vsl = kaleido_tf.build_model(config("fashion_bert.vsl_inference=true"))
    vsl.set_weights(full.get_weights())
    # Texts of at most 18 real tokens, padded to T = 24.
    keep = tf.range(24)[None, :] < 18
    inputs = dict(batch)
    inputs["input_mask"] = tf.where(keep, batch["input_mask"], 0)
    inputs["input_ids"] = tf.where(keep, batch["input_ids"], 0)
    inputs["masked_lm_positions"] = tf.minimum(batch["masked_lm_positions"], 17)
    longest = int(tf.reduce_max(tf.reduce_sum(inputs["input_mask"], 1)))
    assert longest < 24  # there is padding to drop
    a = full(inputs, training=False)
    b = vsl(inputs, training=False)
    assert b["sequence_output"].shape[1] == longest + 64
    assert a["sequence_output"].shape[1] == 24 + 64
    for key in ("pooled_output", "itm_logits", "mlm_logits", "mpm_logits"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(  # the patches' hidden states too
        b["sequence_output"][:, longest:], a["sequence_output"][:, 24:], atol=1e-5
    )
    assert json.loads(json.dumps(vsl.get_config()))["trim_text_padding"] is True


def test_objectives_equal_numpy(batch):
    cfg = config()
    model = kaleido_tf.build_model(cfg)
    out = {k: v.numpy() for k, v in model(batch, training=False).items()}
    b = {k: v.numpy() for k, v in batch.items()}
    objectives = fashion_bert.objectives(cfg)
    assert list(objectives.losses) == ["mlm", "itm", "mpm"]
    shares = {k: weighted_mean(*t(batch, out))[0] for k, t in objectives.losses.items()}

    logp = np_log_softmax(out["mlm_logits"].astype(np.float64))
    nll = -np.take_along_axis(logp, b["masked_lm_ids"][..., None], -1)[..., 0]
    w = b["masked_lm_weights"]
    mlm = (nll * w).sum() / w.sum()
    logp = np_log_softmax(out["itm_logits"].astype(np.float64))
    itm = -logp[np.arange(len(logp)), b["itm_labels"]].mean()
    # MPM: KL(softmax(target) || softmax(prediction)) over D, mean over patches.
    log_p = np_log_softmax(b["mpm_targets"].astype(np.float64))
    log_q = np_log_softmax(out["mpm_logits"].astype(np.float64))
    kl = (np.exp(log_p) * (log_p - log_q)).sum(-1)
    mpm = (kl * b["mpm_weights"]).sum() / b["mpm_weights"].sum()
    got = [float(shares[k]) for k in ("mlm", "itm", "mpm")]
    np.testing.assert_allclose(got, [mlm, itm, mpm], rtol=1e-5, atol=1e-6)

    total, weights = objectives.total(shares)
    n = (np.exp(got) / np.exp(got).sum()) ** 2
    expected = (1 / (3 - n)) / (1 / (3 - n)).sum()
    np.testing.assert_allclose([float(weights[k]) for k in weights], expected, 1e-5)
    np.testing.assert_allclose(float(total), expected @ np.array(got), rtol=1e-5)

    only_pos = fashion_bert.objectives(config("fashion_bert.losses_on_negatives=false"))
    _, weights = only_pos.losses["mpm"](batch, out)
    np.testing.assert_array_equal(weights.numpy()[b["itm_labels"] == 0], 0.0)


def test_short_run_lowers_the_losses_and_logs_the_adaptive_weights(
    grid8_prepared, tmp_path
):
    cfg = config(*SHORT, "train.max_steps=40", "train.log_every_steps=20")
    trainer = Trainer(cfg, grid8_prepared, tmp_path / "run")
    history = trainer.fit(progress=False, log=lambda m: None)
    assert [h["step"] for h in history] == [20, 40]
    assert history == read_history(tmp_path / "run")
    first, last = history
    assert last["total_loss"] < first["total_loss"]
    assert last["mlm_loss"] < first["mlm_loss"]
    for row in history:
        weights = [row[f"{k}_weight"] for k in ("mlm", "itm", "mpm")]
        assert sum(weights) == pytest.approx(1.0, abs=1e-5)
        assert 2 / 7 - 1e-4 <= min(weights) <= max(weights) <= 3 / 7 + 1e-4
        assert row["mlm_weight"] > row["itm_weight"]  # the largest loss
    events = list((tmp_path / "run" / "logs").glob("events.*"))
    tags = {
        v.tag
        for e in tf.compat.v1.train.summary_iterator(str(events[0]))
        for v in e.summary.value
    }
    assert {"mlm_weight", "itm_weight", "mpm_weight", "total_loss"} <= tags


def test_gradient_norm_mode_weights_from_encoder_gradient_norms(batch):
    from kaleido_tf.training.trainer import global_loss_and_gradients

    cfg = config("fashion_bert.adaptive_loss=gradient_norm")
    objectives = fashion_bert.objectives(cfg)
    assert objectives.combine_needs_gradients
    model = kaleido_tf.build_model(cfg)
    strategy = tf.distribute.get_strategy()
    total, grads = global_loss_and_gradients(strategy, model, objectives, batch)
    # Independently: each task's gradient norm over the encoder, softmax, Eq. 6.
    losses, norms = [], []
    for task, term in objectives.losses.items():
        with tf.GradientTape() as tape:
            share, _ = weighted_mean(*term(batch, model(batch, training=False)))
        g = tape.gradient(share, model.encoder.trainable_variables)
        dense = [
            tf.convert_to_tensor(x).numpy().astype(np.float64)
            for x in g
            if x is not None
        ]
        norms.append(np.sqrt(sum((x * x).sum() for x in dense)))
        losses.append(float(share))
    n = (np.exp(norms) / np.exp(norms).sum()) ** 2
    weights = (1 / (3 - n)) / (1 / (3 - n)).sum()
    np.testing.assert_allclose(float(total), weights @ np.array(losses), rtol=1e-4)
    assert all(g is not None for g in grads)


ITM_ONLY = [
    "model.encoder.hidden_size=32",
    "model.encoder.num_attention_heads=2",
    "model.encoder.inner_dim=64",
    "model.encoder.num_layers=2",
    "model.encoder.max_sequence_length=24",
    "fashion_bert.mlm=false",
    "fashion_bert.mpm=false",
    "train.global_batch_size=32",
    "train.max_steps=200",
    "train.log_every_steps=100",
    "train.checkpoint_every_steps=1000",
    "train.optimizer.warmup_steps=10",
    "train.optimizer.learning_rate=2e-3",
]


def held_out_itm_accuracy(model, data):
    # Negatives drawn with another seed than training's: unseen mismatched pairs.
    ds = build_fashion_bert_dataset(
        data, 64, tasks=("itm",), seed=1000, training=False, corrupt=False
    )
    correct = total = 0
    for b in ds:
        logits = model(b, training=False)["itm_logits"].numpy()
        correct += int((logits.argmax(-1) == b["itm_labels"].numpy()).sum())
        total += len(logits)
    return correct / total, total


def test_itm_accuracy_on_held_out_pairs_rises_well_above_chance(
    grid8_prepared, tmp_path
):
    cfg = kaleido_tf.load_config("fashion_bert/demo", ITM_ONLY)
    trainer = Trainer(cfg, grid8_prepared, tmp_path / "run")
    before, n = held_out_itm_accuracy(trainer.model, grid8_prepared)
    trainer.fit(progress=False, log=lambda m: None)
    after, _ = held_out_itm_accuracy(trainer.model, grid8_prepared)
    print("held-out ITM accuracy", before, "->", after)
    assert n >= 300
    assert 0.3 <= before <= 0.7
    assert after >= 0.65


@pytest.mark.parametrize("task", ["retrieval", "category", "captioning"])
def test_shared_fine_tuning_tasks_build_on_fashion_bert(grid8_prepared, task):
    extra = (
        ["finetune.captioning.max_caption_tokens=20"] if task == "captioning" else []
    )
    if task == "category":
        names = json.loads((grid8_prepared / "categories.json").read_text())
        extra = [f"finetune.num_classes={len(names['category'])}"]
    cfg = config(f"finetune.task={task}", *extra)
    recipe = get_recipe(cfg)
    assert recipe is not fashion_bert
    model = kaleido_tf.build_model(cfg)
    assert model.encoder.patch_position_type == "index"
    assert model.encoder.num_patches == 64
    batch = next(iter(recipe.build_dataset(grid8_prepared, cfg, 8)))
    outputs = model(batch, training=True)
    objectives = recipe.objectives(cfg)
    for term in objectives.losses.values():
        share, weight = weighted_mean(*term(batch, outputs))
        assert np.isfinite(float(share)) and float(weight) > 0
    assert recipe.examples_per_epoch(grid8_prepared, cfg) >= 197
