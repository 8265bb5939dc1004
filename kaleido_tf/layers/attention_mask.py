"""Self-attention masks from padding masks."""

import tensorflow as tf


def padding_attention_mask(token_mask: tf.Tensor) -> tf.Tensor:
    """Every query may attend to every real key.

    Args:
        token_mask: int [B, L]; 1 = real token or patch, 0 = padding.

    Returns:
        int32 [B, L, L]; entry (b, q, k) is 1 when query q may attend to key k.
    """
    mask = tf.cast(token_mask, tf.int32)
    ones = tf.ones_like(mask)
    return ones[:, :, tf.newaxis] * mask[:, tf.newaxis, :]  # [B, L, L]


def seq2seq_attention_mask(text_mask: tf.Tensor, patch_mask: tf.Tensor) -> tf.Tensor:
    """UniLM/VLP seq2seq mask over ``[text | patches]`` for captioning (K-Q19).

    Patches attend to (real) patches only; a text position attends to every real
    patch and to the real text positions at or before it (causal). A token's hidden
    state therefore never depends on later tokens, which is what decoding one token
    at a time needs.

    Args:
        text_mask: int [B, T]; 1 = real token.
        patch_mask: int [B, P]; 1 = real patch.

    Returns:
        int32 [B, T + P, T + P]; entry (b, q, k) is 1 when query q may attend to k.

    Reference: kaleido_fashionbert.md K-Q19 (Zhou et al., VLP; Dong et al., UniLM).
    """
    text = tf.cast(text_mask, tf.int32)
    patches = tf.cast(patch_mask, tf.int32)
    t = tf.shape(text)[1]
    p = tf.shape(patches)[1]
    causal = tf.linalg.band_part(tf.ones([t, t], tf.int32), -1, 0)  # k <= q
    text_to_text = causal[tf.newaxis] * text[:, tf.newaxis, :]  # [B, T, T]
    text_to_patch = tf.ones([1, t, 1], tf.int32) * patches[:, tf.newaxis, :]
    patch_to_text = tf.zeros([tf.shape(text)[0], p, t], tf.int32)
    patch_to_patch = tf.ones([1, p, 1], tf.int32) * patches[:, tf.newaxis, :]
    top = tf.concat([text_to_text, text_to_patch], axis=2)
    bottom = tf.concat([patch_to_text, patch_to_patch], axis=2)
    return tf.concat([top, bottom], axis=1)
