"""Heads against numpy on fixed tensors."""

import numpy as np
import tensorflow as tf

from kaleido_tf.heads.classification_head import ClassificationHead
from kaleido_tf.heads.level_classification_head import LevelClassificationHead
from kaleido_tf.heads.masked_lm_head import MaskedLMHead
from kaleido_tf.heads.masked_patch_head import MaskedPatchHead
from tests.helpers import check_layer

RNG = np.random.default_rng(0)
SEQ = RNG.normal(size=(3, 12, 6)).astype(np.float32)  # B=3, T=7 text + P=5, H=6


def test_level_head_reads_its_level_after_the_text():
    head = LevelClassificationHead(4, patch_start=1, num_level_patches=4)
    check_layer(head, lambda h: h(SEQ, 7), (3, 4), trainable_weights=2)
    flat = SEQ[:, 8:12].reshape(3, 24)  # level 2 = patches 1..4 = rows 8..11
    expected = flat @ head.logits.kernel.numpy() + head.logits.bias.numpy()
    np.testing.assert_allclose(head(SEQ, 7).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_masked_patch_head_gathers_patch_positions():
    head = MaskedPatchHead(8)
    pos = np.array([[0, 4], [2, 2], [1, 3]], np.int32)
    check_layer(head, lambda h: h(SEQ, pos, 7), (3, 2, 8), trainable_weights=1)
    rows = np.stack([SEQ[b, 7 + pos[b]] for b in range(3)])
    np.testing.assert_allclose(
        head(SEQ, pos, 7).numpy(),
        rows @ head.logits.kernel.numpy(),
        rtol=1e-5,
        atol=1e-5,
    )


def test_masked_lm_head_is_tied_to_the_table():
    table = tf.Variable(RNG.normal(size=(31, 6)).astype(np.float32))
    pos = np.array([[1, 2], [3, 0], [6, 6]], np.int32)
    head = MaskedLMHead(6, 31)
    check_layer(head, lambda h: h(SEQ, pos, table), (3, 2, 31), trainable_weights=5)
    x = np.stack([SEQ[b, pos[b]] for b in range(3)])
    x = x @ head.transform.kernel.numpy() + head.transform.bias.numpy()
    x = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    x = (x - mean) / np.sqrt(var + 1e-12) * head.layer_norm.gamma.numpy()
    x += head.layer_norm.beta.numpy()
    expected = x @ table.numpy().T + head.output_bias.numpy()
    np.testing.assert_allclose(
        head(SEQ, pos, table).numpy(), expected, rtol=1e-4, atol=1e-4
    )


def test_classification_head():
    pooled = SEQ[:, 0]
    head = ClassificationHead(2)
    check_layer(head, lambda h: h(pooled), (3, 2), trainable_weights=2)
    expected = pooled @ head.logits.kernel.numpy() + head.logits.bias.numpy()
    np.testing.assert_allclose(head(pooled).numpy(), expected, rtol=1e-5, atol=1e-5)
