"""Captioning fine-tuning: causal encoder, caption masking, beam-search decoding."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf
import kaleido_tf.errors
from kaleido_tf.finetuning.caption_generation import (
    SpecialIds,
    generate_captions,
    ids_to_text,
)
from kaleido_tf.finetuning.captioning_task import CaptionMasker
from tests.conftest import TINY_MODEL

VOCAB = 12
SPECIAL = SpecialIds(cls_id=1, sep_id=2, mask_id=3, banned_ids=(0, 1, 3))


def captioning_config(*extra):
    return kaleido_tf.load_config(
        "kaleido_bert/finetune_captioning",
        [
            *TINY_MODEL,
            "model.patch_feature_dim=6",
            f"model.encoder.vocab_size={VOCAB}",
            "model.encoder.max_sequence_length=12",
            "finetune.captioning.max_caption_tokens=5",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def model():
    config = captioning_config()
    built = kaleido_tf.build_model(config)
    # Larger random weights than the initialiser: a peaked, input-dependent model.
    rng = np.random.default_rng(0)
    for w in built.weights:
        if "layer_norm" not in w.name and "gamma" not in w.name:
            w.assign(rng.normal(0, 0.5, w.shape).astype(np.float32))
    return built


def patches(batch, seed=0):
    rng = np.random.default_rng(seed)
    return (
        tf.constant(rng.normal(size=[batch, 55, 6]), tf.float32),
        tf.constant(rng.uniform(size=[batch, 55, 5]), tf.float32),
    )


def forward(model, ids, features, boxes, position):
    b, t = ids.shape
    return model(
        {
            "input_ids": tf.constant(ids, tf.int32),
            "input_mask": tf.ones([b, t], tf.int32),
            "segment_ids": tf.zeros([b, t], tf.int32),
            "patch_features": features,
            "patch_boxes": boxes,
            "patch_mask": tf.ones([b, 55], tf.int32),
            "masked_lm_positions": tf.fill([b, 1], position),
        },
        training=False,
    )


def test_text_is_causal_and_patches_ignore_text(model):
    features, boxes = patches(1)
    a = np.array([[1, 5, 6, 7, 8, 2]])
    b = a.copy()
    b[0, 4:] = [9, 10]  # change the last two tokens
    out_a = forward(model, a, features, boxes, 3)["sequence_output"].numpy()
    out_b = forward(model, b, features, boxes, 3)["sequence_output"].numpy()
    np.testing.assert_allclose(out_a[0, :4], out_b[0, :4], atol=1e-5)
    assert np.abs(out_a[0, 4:6] - out_b[0, 4:6]).max() > 1e-3
    np.testing.assert_allclose(out_a[0, 6:], out_b[0, 6:], atol=1e-5)  # patches


def log_softmax(x):
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def next_log_probs(model, prefix, features, boxes):
    ids = np.array([prefix + [SPECIAL.mask_id]])
    logits = forward(model, ids, features, boxes, len(prefix))["mlm_logits"]
    logits = logits.numpy()[0, 0].astype(np.float64)
    logits[list(SPECIAL.banned_ids)] = -1e9
    return log_softmax(logits)


def test_beam_one_is_the_greedy_caption_and_its_score(model):
    features, boxes = patches(2, seed=1)
    ids, scores = generate_captions(
        model, features, boxes, SPECIAL, VOCAB, beam_size=1, max_tokens=5
    )
    for row in range(2):
        prefix, total = [SPECIAL.cls_id], 0.0
        for _ in range(6):
            lp = next_log_probs(
                model, prefix, features[row : row + 1], boxes[row : row + 1]
            )
            token = int(np.argmax(lp))
            total += lp[token]
            prefix.append(token)
            if token == SPECIAL.sep_id:
                break
        expected = prefix[1:] + [0] * (6 - len(prefix[1:]))
        assert ids.numpy()[row].tolist() == expected
        np.testing.assert_allclose(scores.numpy()[row], total, rtol=1e-4, atol=1e-4)


def exhaustive_best(model, features, boxes, max_tokens):
    """Best caption ending in [SEP] within ``max_tokens + 1`` ids, by enumeration.

    (The beam search prefers finished captions to unfinished ones.)"""
    allowed = [i for i in range(VOCAB) if i not in SPECIAL.banned_ids]
    best = (-np.inf, None)
    frontier = [([SPECIAL.cls_id], 0.0)]
    for depth in range(max_tokens + 1):
        grown = []
        for prefix, score in frontier:
            lp = next_log_probs(model, prefix, features, boxes)
            for token in allowed:
                s = score + lp[token]
                if token == SPECIAL.sep_id:
                    if s > best[0]:
                        best = (s, prefix[1:] + [token])
                elif depth < max_tokens:
                    grown.append((prefix + [token], s))
        frontier = grown
    return best


def test_wide_beam_finds_the_exhaustive_optimum(model):
    features, boxes = patches(1, seed=2)
    # With K >= the 9 allowed ids and 2 decoding steps, the beam holds every
    # prefix: it must return the exhaustive optimum.
    score, caption = exhaustive_best(model, features, boxes, max_tokens=1)
    ids, scores = generate_captions(
        model, features, boxes, SPECIAL, VOCAB, beam_size=VOCAB, max_tokens=1
    )
    got = [t for t in ids.numpy()[0].tolist()]
    assert got[: len(caption)] == caption
    np.testing.assert_allclose(scores.numpy()[0], score, rtol=1e-4, atol=1e-4)


def test_ids_to_text_glues_word_pieces():
    vocab = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "zip", "##per", "coat")
    assert ids_to_text([4, 5, 6, 2, 6], vocab, sep_id=2) == "zipper coat"


def masker(**kwargs):
    settings = dict(
        pad_id=0,
        mask_id=3,
        random_token_ids=np.arange(4, 30),
        mask_rate=0.15,
        max_masked_tokens=6,
        seed=0,
    )
    settings.update(kwargs)
    return CaptionMasker(**settings)


def caption_batch(n=64, t=24, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.zeros([n, t], np.int32)
    for i in range(n):
        length = int(rng.integers(3, t + 1))
        ids[i, 0], ids[i, length - 1] = 1, 2
        ids[i, 1 : length - 1] = rng.integers(4, 30, length - 2)
    return ids


def test_caption_masker_masks_the_caption_only():
    ids = caption_batch()
    keys = tf.constant(np.arange(len(ids)), tf.int64)
    out = {
        k: v.numpy() for k, v in masker()(tf.constant(5, tf.int64), keys, ids).items()
    }
    masked_total = 0
    for i in range(len(ids)):
        length = int((ids[i] != 0).sum())
        w = out["masked_lm_weights"][i].astype(bool)
        positions = out["masked_lm_positions"][i][w]
        expected = min(6, max(1, int(np.round(0.15 * (length - 1)))))
        assert w.sum() == expected
        assert len(set(positions.tolist())) == len(positions)
        assert ((positions >= 1) & (positions < length)).all()  # not [CLS]/padding
        np.testing.assert_array_equal(out["masked_lm_ids"][i][w], ids[i][positions])
        changed = np.flatnonzero(out["input_ids"][i] != ids[i])
        assert set(changed.tolist()) <= set(positions.tolist())
        masked_total += w.sum()
    # 80/10/10 over the batch: most slots hold [MASK].
    became_mask = (out["input_ids"] == 3).sum()
    assert 0.6 < became_mask / masked_total <= 1.0


def test_caption_masker_is_a_function_of_step_and_image():
    ids = caption_batch(8)
    keys = tf.constant(np.arange(8), tf.int64)
    m = masker()
    a = m(tf.constant(1, tf.int64), keys, ids)["masked_lm_positions"].numpy()
    b = m(tf.constant(1, tf.int64), keys, ids)["masked_lm_positions"].numpy()
    c = m(tf.constant(2, tf.int64), keys, ids)["masked_lm_positions"].numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Row 3 alone gives the same masks as row 3 in the batch.
    alone = m(tf.constant(1, tf.int64), keys[3:4], ids[3:4])["masked_lm_positions"]
    np.testing.assert_array_equal(alone.numpy()[0], a[3])


def test_caption_too_long_for_the_encoder_is_refused():
    config = captioning_config("finetune.captioning.max_caption_tokens=11")
    with pytest.raises(kaleido_tf.errors.ConfigError, match="max_caption_tokens"):
        kaleido_tf.build_model(dataclasses.replace(config))
