"""The 9 gated Omni-Retrieval terms against numpy; gating; 1 vs 2 replicas."""

import numpy as np
import pytest
import tensorflow as tf

from kaleido_tf.losses.omni_retrieval import (
    MODALITIES,
    OMNI_TASKS,
    omni_loss_terms,
    omni_retrieval_losses,
    presence,
    similarity_matrices,
)
from kaleido_tf.losses.reduction import weighted_mean
from tests.helpers import run_cpu_script

B, E = 5, 6


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_omni(source, target, src_flags, tgt_flags, scale):
    """Task -> mean over gated-in rows of both directions, written with loops."""
    out = {}
    for u in ("text", "image", "multimodal"):
        for v in ("text", "image", "multimodal"):
            s = scale * unit(source[u]) @ unit(target[v]).T
            du, dv = src_flags[u], tgt_flags[v]
            terms = []
            for i in range(len(s)):
                if not (du[i] and dv[i]):
                    continue
                row = np.log(sum(np.exp(s[i, j]) for j in range(len(s)) if dv[j]))
                col = np.log(sum(np.exp(s[j, i]) for j in range(len(s)) if du[j]))
                terms.append(row - s[i, i] + col - s[i, i])
            out[u[0] + "2" + v[0]] = float(np.mean(terms)) if terms else 0.0
    return out


def flags(text, image):
    text, image = np.asarray(text, bool), np.asarray(image, bool)
    return {"text": text, "image": image, "multimodal": text & image}


def random_sides(seed):
    rng = np.random.default_rng(seed)
    return [
        {m: rng.normal(size=(B, E)).astype(np.float32) for m in MODALITIES}
        for _ in range(2)
    ]


# Source 1 has no text (a product view image), source 3 no image (a search query);
# target 4 has no image.
SRC_TEXT, SRC_IMAGE = [1, 0, 1, 1, 1], [1, 1, 1, 0, 1]
TGT_TEXT, TGT_IMAGE = [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]


def tf_flags(text, image):
    return presence(tf.constant(text), tf.constant(image))


def reduced(losses):
    return {task: float(weighted_mean(*vw)[0]) for task, vw in losses.items()}


def test_nine_tasks_in_the_paper_order():
    assert list(OMNI_TASKS) == [
        "t2t", "t2i", "t2m", "i2t", "i2i", "i2m", "m2t", "m2i", "m2m"
    ]  # fmt: skip
    assert OMNI_TASKS["t2m"] == ("text", "multimodal")  # Q2P
    assert OMNI_TASKS["i2m"] == ("image", "multimodal")  # I2P


def test_presence_gates_multimodal_on_both():
    got = presence(tf.constant([1, 0, 1, 0]), tf.constant([True, True, False, False]))
    np.testing.assert_array_equal(got["multimodal"].numpy(), [1, 0, 0, 0])
    np.testing.assert_array_equal(got["text"].numpy(), [1, 0, 1, 0])


def test_similarity_matrices_are_b_by_b_cosines():
    source, target = random_sides(0)
    mats = similarity_matrices(source, target)
    assert sorted(mats) == sorted(OMNI_TASKS)
    for task, (u, v) in OMNI_TASKS.items():
        assert mats[task].shape == (B, B)
        expected = unit(source[u]) @ unit(target[v]).T
        np.testing.assert_allclose(mats[task].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_gated_losses_match_numpy():
    source, target = random_sides(1)
    losses = omni_retrieval_losses(
        source,
        target,
        tf_flags(SRC_TEXT, SRC_IMAGE),
        tf_flags(TGT_TEXT, TGT_IMAGE),
        tf.constant(4.0),
    )
    expected = np_omni(
        source, target, flags(SRC_TEXT, SRC_IMAGE), flags(TGT_TEXT, TGT_IMAGE), 4.0
    )
    got = reduced(losses)
    for task in OMNI_TASKS:
        np.testing.assert_allclose(got[task], expected[task], rtol=1e-5, atol=1e-6)
    # Row weights: source gate and target gate of the same row.
    np.testing.assert_array_equal(losses["t2i"][1].numpy(), [1, 0, 1, 1, 0])
    np.testing.assert_array_equal(losses["m2m"][1].numpy(), [1, 0, 1, 0, 0])
    np.testing.assert_array_equal(losses["i2t"][1].numpy(), [1, 1, 1, 0, 1])


def test_missing_modalities_have_no_effect_on_loss_or_gradient():
    source, target = random_sides(2)
    src_flags = tf_flags(SRC_TEXT, SRC_IMAGE)
    tgt_flags = tf_flags(TGT_TEXT, TGT_IMAGE)
    base = reduced(
        omni_retrieval_losses(source, target, src_flags, tgt_flags, tf.constant(3.0))
    )
    # Overwrite every embedding whose modality is missing (incl. multimodal ones).
    rng = np.random.default_rng(9)
    changed_src = {m: x.copy() for m, x in source.items()}
    changed_tgt = {m: x.copy() for m, x in target.items()}
    for m in MODALITIES:
        for i in np.flatnonzero(src_flags[m].numpy() == 0):
            changed_src[m][i] = rng.normal(size=E) * 50
        for i in np.flatnonzero(tgt_flags[m].numpy() == 0):
            changed_tgt[m][i] = rng.normal(size=E) * 50
    assert not np.allclose(changed_src["text"], source["text"])
    variables = {m: tf.Variable(x) for m, x in changed_src.items()}
    with tf.GradientTape() as tape:
        losses = omni_retrieval_losses(
            variables, changed_tgt, src_flags, tgt_flags, tf.constant(3.0)
        )
        total = tf.add_n([weighted_mean(*vw)[0] for vw in losses.values()])
    after = reduced(losses)
    for task in OMNI_TASKS:
        np.testing.assert_allclose(after[task], base[task], rtol=1e-6, atol=1e-7)
    grads = tape.gradient(total, variables)
    for m in MODALITIES:
        missing = src_flags[m].numpy() == 0
        assert np.all(grads[m].numpy()[missing] == 0)
        assert np.any(grads[m].numpy()[~missing] != 0)


def test_no_gated_in_row_gives_zero():
    source, target = random_sides(3)
    none = tf_flags([0] * B, [1] * B)
    losses = omni_retrieval_losses(
        source, target, none, tf_flags([1] * B, [1] * B), tf.constant(3.0)
    )
    got = reduced(losses)
    assert got["t2i"] == 0.0 and got["m2m"] == 0.0
    assert got["i2i"] > 0.0


def test_unknown_task_is_refused():
    source, target = random_sides(4)
    f = tf_flags([1] * B, [1] * B)
    with pytest.raises(ValueError, match="t2x"):
        omni_retrieval_losses(source, target, f, f, tf.constant(1.0), tasks=["t2x"])


def test_loss_terms_read_batch_flags_and_outputs():
    source, target = random_sides(5)
    outputs = {"contrastive_scale": tf.constant(2.5)}
    for side, emb in (("source", source), ("target", target)):
        for m in MODALITIES:
            outputs[f"{side}_{m}_embedding"] = tf.constant(emb[m])
    batch = {
        "source_text_present": tf.constant(SRC_TEXT),
        "source_image_present": tf.constant(SRC_IMAGE),
        "target_text_present": tf.constant(TGT_TEXT),
        "target_image_present": tf.constant(TGT_IMAGE),
    }
    terms = omni_loss_terms()
    assert sorted(terms) == sorted(f"omni_{t}" for t in OMNI_TASKS)
    expected = np_omni(
        source, target, flags(SRC_TEXT, SRC_IMAGE), flags(TGT_TEXT, TGT_IMAGE), 2.5
    )
    for task in OMNI_TASKS:
        values, weights = terms[f"omni_{task}"](batch, outputs)
        assert values.shape == (B,) and weights.shape == (B,)
        got = float(weighted_mean(values, weights)[0])
        np.testing.assert_allclose(got, expected[task], rtol=1e-5, atol=1e-6)


SCRIPT = r"""
import os
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import kaleido_tf
import tf_keras
from kaleido_tf.losses.contrastive import LearnedTemperature
from kaleido_tf.losses.omni_retrieval import MODALITIES, omni_loss_terms
from kaleido_tf.losses.reduction import weighted_mean
from kaleido_tf.systems.base import Objectives
from kaleido_tf.training.trainer import global_loss_and_gradients
from tests.kaleido_tf.losses.test_omni_retrieval import flags, np_omni


class Tiny(tf_keras.Model):
    # Siamese: the same three projections embed the source and the target.
    def __init__(self):
        super().__init__()
        self.heads = {m: tf_keras.layers.Dense(5, name=m) for m in MODALITIES}
        self.temperature = LearnedTemperature(initial_temperature=0.25, name="tau")

    def call(self, batch, training=None):
        out = {"contrastive_scale": self.temperature(tf.constant(1.0))}
        for side in ("source", "target"):
            for m in MODALITIES:
                out[f"{side}_{m}_embedding"] = self.heads[m](batch[f"{side}_x"])
        return out


rng = np.random.default_rng(11)
text = {"source": [1, 0, 1, 1, 0, 1], "target": [1, 1, 1, 1, 1, 0]}
image = {"source": [1, 1, 0, 1, 1, 1], "target": [1, 0, 1, 1, 1, 1]}
batch = {}
for side in ("source", "target"):
    batch[f"{side}_x"] = tf.constant(rng.normal(size=(6, 4)), tf.float32)
    batch[f"{side}_text_present"] = tf.constant(text[side], tf.int32)
    batch[f"{side}_image_present"] = tf.constant(image[side], tf.int32)
terms = omni_loss_terms()
objectives = Objectives(losses=terms, weights={k: 1.0 for k in terms},
                        accuracies={})
# Reference: one device, no strategy (the plain tape, global_sum is the identity).
model = Tiny()
model(batch)
with tf.GradientTape() as tape:
    outputs = model(batch)
    total = tf.add_n([weighted_mean(*term(batch, outputs))[0]
                      for term in objectives.losses.values()])
results = [(float(total),
            [g.numpy() for g in tape.gradient(total, model.trainable_variables)])]
weights = model.get_weights()
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    replicated = Tiny()
    replicated(batch)
replicated.set_weights(weights)
total, grads = global_loss_and_gradients(strategy, replicated, objectives, batch)
results.append((float(total), [g.numpy() for g in grads]))
out = {k: v.numpy() for k, v in model(batch).items()}
expected = sum(np_omni(
    {m: out[f"source_{m}_embedding"] for m in MODALITIES},
    {m: out[f"target_{m}_embedding"] for m in MODALITIES},
    flags(text["source"], image["source"]), flags(text["target"], image["target"]),
    4.0).values())
(t1, g1), (t2, g2) = results
print("totals", t1, t2, expected)
assert abs(t1 - expected) <= 1e-5 * abs(expected), (t1, expected)
assert abs(t2 - expected) <= 1e-5 * abs(expected), (t2, expected)
worst = max(float(np.max(np.abs(a - b))) for a, b in zip(g1, g2))
scale = min(float(np.max(np.abs(a))) for a in g1)
print("max gradient difference", worst, "smallest gradient", scale)
assert scale > 0 and worst <= 1e-5, worst
print("OK")
"""


@pytest.mark.multi_device
def test_two_replicas_give_the_single_device_loss_and_gradients():
    run_cpu_script(SCRIPT)
