"""ImageBERT's retrieval fine-tuning losses (binary / ce / triplet / sum) against
numpy, and the groups of P pairs they train on."""

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from kaleido_tf.errors import ConfigError
from kaleido_tf.finetuning import retrieval_task
from kaleido_tf.finetuning.retrieval_task import GROUP_WEIGHTS, group_pairs
from kaleido_tf.losses.retrieval_ranking import (
    group_cross_entropy,
    hardest_negative_triplet,
    match_scores,
)
from tests.conftest import TINY_MODEL


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def config(*extra):
    return kaleido_tf.load_config(
        "kaleido_bert/finetune_retrieval",
        [*TINY_MODEL, "model.patch_feature_dim=576", "model.encoder.vocab_size=1000"]
        + list(extra),
    )


def test_losses_equal_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=[12, 2]).astype(np.float32) * 3
    s = logits[:, 1] - logits[:, 0]
    np.testing.assert_allclose(match_scores(tf.constant(logits)), s, rtol=1e-6)
    groups = s.reshape(3, 4)
    ce = -np_log_softmax(groups.astype(np.float64))[:, 0]
    np.testing.assert_allclose(group_cross_entropy(s, 4), ce, rtol=1e-5, atol=1e-6)
    for margin in (0.2, 5.0):
        expected = np.maximum(0.0, margin - groups[:, 0] + groups[:, 1:].max(1))
        got = hardest_negative_triplet(tf.constant(s), 4, margin)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # A group whose positive beats every negative by more than the margin: 0.
    assert hardest_negative_triplet(tf.constant([3.0, 1.0, 0.5]), 3, 0.2)[0] == 0.0


def fake_positives(products):
    g = len(products)
    return {
        "input_ids": tf.constant(np.arange(g)[:, None] * 10 + np.arange(3)),
        "input_mask": tf.ones([g, 3], tf.int32),
        "patch_features": tf.constant(
            np.arange(g, dtype=np.float32)[:, None, None] * np.ones([1, 2, 4])
        ),
        "patch_mask": tf.ones([g, 2], tf.int32),
        "itm_labels": tf.ones([g], tf.int32),
        "product_id": tf.constant(products, tf.int64),
    }


def pair_rows(out):
    """The (text row, image row) of each output pair, read from the values."""
    text = out["input_ids"].numpy()[:, 0] // 10
    image = out["patch_features"].numpy()[:, 0, 0].astype(int)
    return text, image


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_groups_are_a_positive_then_distinct_negatives_of_one_kind(seed):
    products = [11, 12, 13, 14, 15, 16]
    p = 4
    out = group_pairs(fake_positives(products), p, tf.constant([seed, 7], tf.int64))
    text, image = pair_rows(out)
    assert text.shape == (len(products) * p,)
    labels = out["itm_labels"].numpy()
    for g in range(len(products)):
        t, i = text[g * p : (g + 1) * p], image[g * p : (g + 1) * p]
        assert (t[0], i[0]) == (g, g) and labels[g * p] == 1
        assert (labels[g * p + 1 : (g + 1) * p] == 0).all()
        # Either the image stays and the captions change, or the reverse.
        fixed, moved = (i, t) if (i == g).all() else (t, i)
        assert (fixed == g).all()
        negatives = moved[1:]
        assert len(set(negatives)) == p - 1 and g not in negatives
    assert (out[GROUP_WEIGHTS].numpy() == 1).all()
    # Both kinds occur over the draws of a few batches.
    kinds = set()
    for s in range(6):
        o = group_pairs(fake_positives(products), p, tf.constant([s, 7], tf.int64))
        t, i = pair_rows(o)
        kinds |= {bool((i[g * p : (g + 1) * p] == g).all()) for g in range(6)}
    assert kinds == {True, False}


def test_a_negative_of_the_own_product_is_a_match_and_its_group_is_dropped():
    products = [21, 21, 22]  # two images of product 21; P - 1 = 3 > 2 others
    out = group_pairs(fake_positives(products), 4, tf.constant([0, 1], tf.int64))
    text, image = pair_rows(out)
    expected = (np.array(products)[text] == np.array(products)[image]).astype(int)
    np.testing.assert_array_equal(out["itm_labels"].numpy(), expected)
    weights = out[GROUP_WEIGHTS].numpy().reshape(3, 4)
    bad = expected.reshape(3, 4)[:, 1:].any(1)
    np.testing.assert_array_equal(weights[:, 0], 1.0 - bad)
    assert bad[0] and bad[1]  # rows 0 and 1 share a product


def test_objectives_of_each_mode_equal_numpy():
    rng = np.random.default_rng(1)
    p, g = 3, 2
    logits = rng.normal(size=[g * p, 2]).astype(np.float32)
    labels = np.tile([1, 0, 0], g)
    weights = np.array([1, 1, 1, 0, 0, 0], np.float32)
    batch = {"itm_labels": tf.constant(labels), GROUP_WEIGHTS: tf.constant(weights)}
    out = {"itm_logits": tf.constant(logits)}
    s = (logits[:, 1] - logits[:, 0]).reshape(g, p)
    bce = -np_log_softmax(logits.astype(np.float64))[np.arange(g * p), labels]
    ce = -np_log_softmax(s.astype(np.float64))[:, 0]
    triplet = np.maximum(0, 0.3 - s[:, 0] + s[:, 1:].max(1))
    obj = retrieval_task.objectives(
        config(
            "finetune.retrieval_loss=sum",
            f"finetune.group_size={p}",
            "finetune.triplet_margin=0.3",
        )
    )
    assert obj.weights == {"itm": 1.0, "rank_ce": 1.0, "rank_triplet": 1.0}
    for name, values, w in (
        ("itm", bce, weights),
        ("rank_ce", ce, weights[::p]),
        ("rank_triplet", triplet, weights[::p]),
    ):
        v, got_w = obj.losses[name](batch, out)
        np.testing.assert_allclose(v, values, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got_w, w)
    binary = retrieval_task.objectives(config())
    assert list(binary.losses) == ["itm"]
    v, w = binary.losses["itm"](batch, out)
    np.testing.assert_allclose(v, bce, rtol=1e-5, atol=1e-6)
    assert (w.numpy() == 1).all()  # the default: every pair, as before
    assert list(
        retrieval_task.objectives(config("finetune.retrieval_loss=ce")).losses
    ) == ["rank_ce"]


def test_bad_settings_are_config_errors(synthetic_prepared):
    cfg = config("finetune.retrieval_loss=triplet", "finetune.group_size=4")
    with pytest.raises(ConfigError, match="multiple of 4"):
        retrieval_task.build_dataset(synthetic_prepared["train"], cfg, 6)
    with pytest.raises(ConfigError, match="group_size"):
        config("finetune.group_size=1")


def test_group_batches_of_a_prepared_folder(synthetic_prepared):
    data = synthetic_prepared["train"]
    cfg = config("finetune.retrieval_loss=ce", "finetune.group_size=2")
    batch = next(iter(retrieval_task.build_dataset(data, cfg, 8)))
    assert batch["input_ids"].shape[0] == 8 and batch["patch_features"].shape[0] == 8
    assert retrieval_task.examples_per_epoch(data, cfg) == 2 * sum(
        1
        for _ in kaleido_tf.inputs.parse.record_dataset(
            data, kaleido_tf.manifest.read_manifest(data)
        )
    )
    ids, feats = batch["input_ids"].numpy(), batch["patch_features"].numpy()
    labels = batch["itm_labels"].numpy()
    for g in range(4):
        a, b = 2 * g, 2 * g + 1
        assert labels[a] == 1
        same_text = (ids[a] == ids[b]).all()
        same_image = np.array_equal(feats[a], feats[b])
        assert same_text != same_image  # exactly one side changes


def test_finetune_cli_trains_on_the_sum(
    tiny_pretrain_run, synthetic_prepared, tmp_path, capsys
):
    from kaleido_tf.checkpoints.trained_model import load_trained_model
    from kaleido_tf.cli.main import main

    argv = [
        "finetune",
        "--task",
        "retrieval",
        "--data",
        str(synthetic_prepared["train"]),
    ]
    argv += ["--model-dir", str(tmp_path), "--init-from", str(tiny_pretrain_run)]
    for s in (
        "train.global_batch_size=8",
        "train.max_steps=2",
        "train.checkpoint_every_steps=2",
        "train.log_every_steps=1",
        "finetune.retrieval_loss=sum",
        "finetune.group_size=2",
    ):
        argv += ["--set", s]
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    logged = [line for line in lines if line.startswith("step 2:")]
    assert logged and all(
        f'"{k}_loss"' in logged[0] for k in ("itm", "rank_ce", "rank_triplet")
    )
    trained = load_trained_model(tmp_path)
    assert trained.step == 2 and trained.config.finetune.retrieval_loss == "sum"
