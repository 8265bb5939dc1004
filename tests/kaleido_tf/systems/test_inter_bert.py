"""InterBERT as a system: pipeline, conditional masked losses, ITM-hn, training."""

import logging

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
from data_prep.hard_negatives.tfidf_miner import load_hard_negatives, mine_data_dir
from kaleido_tf.errors import ConfigError, DataError
from kaleido_tf.inputs.inter_bert_pipeline import (
    INTER_BERT_BATCH_KEYS,
    InterBertPretrainInputs,
    build_inter_bert_dataset,
)
from kaleido_tf.inputs.product_table import ProductTable
from kaleido_tf.inputs.region_overlap_masking import pairwise_iou
from kaleido_tf.losses.reduction import weighted_mean
from kaleido_tf.systems import get_system, inter_bert
from tests.fixtures.region_prepared import VOCAB_SIZE, write_region_prepared

TINY = [
    "model.encoder.hidden_size=16",
    "model.encoder.num_attention_heads=2",
    "model.encoder.inner_dim=24",
    "model.encoder.num_layers=1",
    "model.encoder.max_sequence_length=16",
    f"model.encoder.vocab_size={VOCAB_SIZE}",
    "model.patch_feature_dim=8",
    "inter_bert.num_image_extractor_layers=1",
    "inter_bert.num_text_extractor_layers=1",
    "inter_bert.pooled_size=16",
    "inter_bert.num_classes=5",
    "inter_bert.max_masked_tokens=6",
]
PIPE = dict(
    layout="regions36",
    max_masked_tokens=6,
    num_classes=5,
    feature_dim=8,
    hard_negative_fraction=0.0,
)


def config(*extra):
    return kaleido_tf.load_config("inter_bert/demo", [*TINY, *extra])


@pytest.fixture(scope="module")
def region_dir(tmp_path_factory):
    return write_region_prepared(tmp_path_factory.mktemp("ib") / "train")["dir"]


@pytest.fixture(scope="module")
def mined_dir(tmp_path_factory):
    d = write_region_prepared(
        tmp_path_factory.mktemp("ibhn") / "train", num_products=12, seed=3
    )["dir"]
    mine_data_dir(d, top_k=4, chunk_size=64)
    return d


def _np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _batch(data_dir, size=16, **kwargs):
    args = {**PIPE, **kwargs}
    ds = build_inter_bert_dataset(data_dir, size, training=False, corrupt=True, **args)
    return next(iter(ds))


def test_configs_load_strictly_and_the_system_is_registered():
    assert get_system("inter_bert") is inter_bert
    paper = kaleido_tf.load_config("inter_bert/pretrain")
    released = kaleido_tf.load_config("inter_bert/pretrain_released")
    assert paper.system == released.system == "inter_bert"
    kw = inter_bert.encoder_kwargs(paper)
    assert (kw["num_interaction_layers"], kw["num_image_extractor_layers"]) == (12, 6)
    assert kw["num_text_extractor_layers"] == 6 and kw["num_regions"] == 36
    opt = paper.train.optimizer
    assert (opt.learning_rate, opt.beta_2, opt.epsilon) == (1e-4, 0.9999, 1e-6)
    assert (opt.weight_decay_rate, opt.warmup_steps) == (0.01, 10000)
    assert (paper.train.global_batch_size, paper.train.epochs) == (512, 20)
    kw = inter_bert.encoder_kwargs(released)
    assert kw["num_interaction_layers"] == 6
    assert kw["image_num_attention_heads"] == 8
    assert kw["extractor_init"] == "copy_interaction"
    with pytest.raises(ConfigError, match="unknown key 'inter_bert.mlm'"):
        kaleido_tf.load_config("inter_bert/demo", ["inter_bert.mlm=true"])
    with pytest.raises((ConfigError, ValueError), match="needs system: inter_bert"):
        kaleido_tf.load_config("image_bert/demo", ["inter_bert.msm=true"])


def test_batches_mask_spans_and_overlapping_region_groups(region_dir):
    batch = _batch(region_dir)
    assert set(batch) == set(INTER_BERT_BATCH_KEYS)
    inputs = InterBertPretrainInputs(region_dir, corrupt=False, **PIPE)
    clean = next(iter(inputs_dataset(inputs)))
    labels = batch["itm_labels"].numpy()
    np.testing.assert_array_equal(labels, clean["itm_labels"].numpy())
    np.testing.assert_array_equal(labels, np.tile([1, 0], 8))
    # MSM: [CLS]/[SEP]/[PAD] never masked, every text has a masked token, and the
    # slots list the original ids.
    table = ProductTable.load(region_dir)
    ids = clean["input_ids"].numpy()
    pos = batch["masked_lm_positions"].numpy()
    w = batch["masked_lm_weights"].numpy()
    assert (w.sum(1) >= 1).all()
    orig = np.take_along_axis(ids, pos, 1)
    np.testing.assert_array_equal(orig[w > 0], batch["masked_lm_ids"].numpy()[w > 0])
    special = np.isin(orig, [table.pad_id, table.cls_id, table.sep_id])
    assert not special[w > 0].any()
    # MRM: masked regions are zeroed, their boxes kept, targets = detector classes;
    # every masked region overlaps (IoU > 0.4) some other masked region or is an
    # anchor itself, and unmasked features are untouched.
    feats = batch["patch_features"].numpy()
    clean_feats = clean["patch_features"].numpy()
    rpos = batch["mrm_positions"].numpy()
    rw = batch["mrm_weights"].numpy()
    masked = np.zeros(feats.shape[:2], bool)
    for b in range(len(feats)):
        masked[b, rpos[b][rw[b] > 0]] = True
    assert masked.any()
    np.testing.assert_array_equal(feats[masked], 0.0)
    np.testing.assert_array_equal(feats[~masked], clean_feats[~masked])
    np.testing.assert_array_equal(batch["patch_boxes"], clean["patch_boxes"])
    iou = pairwise_iou(batch["patch_boxes"]).numpy()
    for b in range(len(feats)):
        group = masked[b]
        assert (iou[b][np.ix_(group, group)] > 0.4).any(axis=1).all()
    assert (batch["mrm_labels"].numpy() < 5).all()


def inputs_dataset(inputs):
    from kaleido_tf.inputs.pipeline import make_dataset

    return make_dataset(inputs, 16, training=False)


def test_masked_losses_are_zero_on_negatives_and_match_numpy(region_dir):
    cfg = config()
    batch = _batch(region_dir)
    model = kaleido_tf.build_model(cfg)
    out = model(batch, training=False)
    objectives = inter_bert.objectives(cfg)
    assert set(objectives.losses) == {"msm", "mrm", "itm"}
    labels = batch["itm_labels"].numpy()
    for task, key in (("msm", "masked_lm_weights"), ("mrm", "mrm_weights")):
        values, weights = (t.numpy() for t in objectives.losses[task](batch, out))
        slots = batch[key].numpy()
        assert slots[labels == 0].sum() > 0  # negatives were masked too
        assert (weights[labels == 0] == 0).all()
        np.testing.assert_array_equal(weights[labels == 1], slots[labels == 1])
    # MRM CE against numpy, on the positives' masked regions at index r + 1 of
    # the image stream (a head applied by hand to the gathered outputs).
    w = batch["mrm_weights"].numpy() * labels[:, None]
    image = out["image_sequence_output"].numpy()
    hidden = np.take_along_axis(
        image, batch["mrm_positions"].numpy()[..., None] + 1, axis=1
    )
    logits = hidden @ model.heads["mrm"].logits.kernel.numpy()
    np.testing.assert_allclose(out["mrm_logits"].numpy(), logits, atol=1e-5)
    ce = -np.take_along_axis(
        _np_log_softmax(logits), batch["mrm_labels"].numpy()[..., None], -1
    )[..., 0]
    share, _ = weighted_mean(*objectives.losses["mrm"](batch, out))
    np.testing.assert_allclose(share.numpy(), (ce * w).sum() / w.sum(), rtol=1e-4)
    # A negative's targets change nothing.
    changed = dict(batch)
    changed["mrm_labels"] = tf.where(
        tf.constant(labels == 0)[:, None], 4 - batch["mrm_labels"], batch["mrm_labels"]
    )
    again, _ = weighted_mean(*objectives.losses["mrm"](changed, out))
    np.testing.assert_allclose(again.numpy(), share.numpy(), rtol=1e-6)
    # ITM: 2-way, index 1 = match, on the product of the two [CLS] outputs.
    assert out["itm_logits"].shape == (16, 2)


def test_hard_negatives_are_a_fifth_of_negatives_and_come_from_the_pool(mined_dir):
    pools = load_hard_negatives(mined_dir)
    table = ProductTable.load(mined_dir)
    row_of = {tuple(r): i for i, r in enumerate(table.input_ids.tolist())}
    index_of = {int(p): i for i, p in enumerate(table.product_ids)}
    inputs = InterBertPretrainInputs(
        mined_dir,
        corrupt=False,
        extra_keys=("product_id",),
        **{**PIPE, "hard_negative_fraction": 0.2},
    )
    from kaleido_tf.inputs.pipeline import make_dataset

    ds = make_dataset(inputs, 24, training=True, num_epochs=25)
    hard, total = 0, 0
    for batch in ds:
        neg = batch["itm_labels"].numpy() == 0
        flags = batch["itm_hard"].numpy()
        assert (flags[~neg] == 0).all()
        for ids, product, flag in zip(
            batch["input_ids"].numpy()[neg],
            batch["product_id"].numpy()[neg],
            flags[neg],
        ):
            own = index_of[int(product)]
            drawn = row_of[tuple(ids.tolist())]
            assert drawn != own
            if flag:  # a hard negative is in its positive's mined pool
                assert drawn in pools.pool[own, : pools.pool_size[own]]
            hard += int(flag)
            total += 1
    expected = inputs.hard_sampler.expected_hard_fraction
    assert expected > 0.15  # most products have a pool on this data
    assert abs(hard / total - expected) < 4 * np.sqrt(expected / total)


def test_hard_negatives_missing_file_is_a_clear_error(region_dir):
    with pytest.raises(DataError, match="mine-negatives.*hard_negative_fraction=0"):
        InterBertPretrainInputs(region_dir, **{**PIPE, "hard_negative_fraction": 0.2})


@pytest.mark.slow
def test_paper_configuration_parameter_count_is_logged(caplog):
    cfg = kaleido_tf.load_config("inter_bert/pretrain")
    with caplog.at_level(logging.INFO, logger="kaleido_tf.systems.inter_bert"):
        model = inter_bert.build_model(cfg)
    counts = inter_bert.count_parameters(model)
    assert "InterBERT inter_bert" in caplog.text
    # Independent arithmetic: a BERT-base block, the embedding tables, the heads.
    h, i, v = 768, 3072, 30522
    block = 4 * (h * h + h) + 2 * h * i + i + h + 4 * h
    assert counts["interaction"] == 12 * block
    assert counts["image_extractor"] == counts["text_extractor"] == 6 * block
    assert counts["text_embedding"] == (v + 512 + 2) * h + 2 * h
    msm = h * h + h + 2 * h + v  # transform, LayerNorm, output bias (tied table)
    itm = 2 * (h * 1024 + 1024) + (1024 + 1) * 2  # two poolers, 2-way logits
    heads = msm + h * 1600 + itm  # MRM: bias-free H -> 1600
    assert counts["heads"] == heads
    assert 190e6 < counts["total"] < 210e6  # spec §3.3: about 199M
