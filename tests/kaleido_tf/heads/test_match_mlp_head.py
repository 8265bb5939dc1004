"""MatchMLPHead against numpy."""

import numpy as np
import pytest
import tensorflow as tf

import kaleido_tf  # noqa: F401
from kaleido_tf.heads.match_mlp_head import MatchMLPHead
from tests.helpers import check_layer

RNG = np.random.default_rng(0)
IMAGE = RNG.normal(size=(3, 12)).astype(np.float32)  # B=3, H=12
TEXT = RNG.normal(size=(3, 12)).astype(np.float32)


def _dense(layer, x):
    return x @ layer.kernel.numpy() + layer.bias.numpy()


@pytest.mark.parametrize("num_classes", [2, 1])
def test_mlp_on_the_product_of_the_pooled_cls_outputs(num_classes):
    head = MatchMLPHead(pooled_size=10, num_classes=num_classes)
    check_layer(
        head,
        lambda h: h(IMAGE, TEXT, training=False),
        (3, num_classes),
        trainable_weights=6,
    )
    image = np.maximum(_dense(head.image_pooler, IMAGE), 0)
    text = np.maximum(_dense(head.text_pooler, TEXT), 0)
    expected = _dense(head.logits, image * text)
    np.testing.assert_allclose(
        head(IMAGE, TEXT, training=False).numpy(), expected, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        head.pooled_product(IMAGE, TEXT).numpy(), image * text, rtol=1e-5, atol=1e-6
    )
    # The two poolers are distinct: swapping the inputs changes the logits.
    swapped = head(TEXT, IMAGE, training=False).numpy()
    assert not np.allclose(swapped, expected)


def test_dropout_acts_on_the_product_in_training():
    head = MatchMLPHead(pooled_size=64, dropout=0.5)
    tf.random.set_seed(1)
    a = head(IMAGE, TEXT, training=True).numpy()
    b = head(IMAGE, TEXT, training=False).numpy()
    assert not np.allclose(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="pooled_size"):
        MatchMLPHead(0)
