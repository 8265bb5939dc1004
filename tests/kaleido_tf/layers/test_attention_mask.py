"""Attention masks against a numpy construction."""

import numpy as np

from kaleido_tf.layers.attention_mask import (
    padding_attention_mask,
    seq2seq_attention_mask,
)


def numpy_seq2seq(text_mask, patch_mask):
    b, t = text_mask.shape
    p = patch_mask.shape[1]
    out = np.zeros([b, t + p, t + p], np.int32)
    for i in range(b):
        for q in range(t + p):
            for k in range(t + p):
                if q < t:  # a text query
                    if k < t:
                        out[i, q, k] = int(k <= q and text_mask[i, k] == 1)
                    else:
                        out[i, q, k] = int(patch_mask[i, k - t] == 1)
                else:  # a patch query sees patches only
                    out[i, q, k] = int(k >= t and patch_mask[i, k - t] == 1)
    return out


def test_seq2seq_mask_matches_numpy():
    text = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32)
    patches = np.array([[1, 1, 0], [1, 1, 1]], np.int32)
    got = seq2seq_attention_mask(text, patches).numpy()
    np.testing.assert_array_equal(got, numpy_seq2seq(text, patches))


def test_padding_mask_is_bidirectional():
    mask = np.array([[1, 1, 0]], np.int32)
    got = padding_attention_mask(mask).numpy()
    np.testing.assert_array_equal(got[0], np.array([[1, 1, 0]] * 3))
