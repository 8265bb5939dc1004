"""Caption decoding for the seq2seq captioning model, by beam search.

Step i feeds ``[CLS] w1 .. wi [MASK]`` with the image's patches through the model
(seq2seq attention mask) and reads the masked-LM logits at the [MASK]; the beam search
is tf-models-official's ``sequence_beam_search`` (length normalisation ``alpha``),
stopping at [SEP]. No key/value cache: each step re-encodes the prefix, which is
O(L^2) per caption but keeps the model a pure function of its inputs (and exportable).

Reference: kaleido_fashionbert.md K-Q19 (beam 5, at most 64 tokens).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
from official.nlp.modeling.ops import beam_search

NEG_INF = -1e9


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    """Token ids the decoder needs (from the data's vocabulary).

    Attributes:
        cls_id: Start of every caption.
        sep_id: End of a caption.
        mask_id: The slot whose token is predicted.
        banned_ids: Ids never generated ([PAD], [CLS], [MASK], [UNK], ...).
    """

    cls_id: int
    sep_id: int
    mask_id: int
    banned_ids: tuple[int, ...]

    @classmethod
    def from_table(cls, table, model_vocab_size: int) -> SpecialIds:
        """From a ProductTable: bans every special token except [SEP], and the
        ids past the data's vocabulary (a model table may have spare rows)."""
        allowed = set(np.asarray(table.random_token_ids).tolist()) | {table.sep_id}
        banned = tuple(i for i in range(model_vocab_size) if i not in allowed)
        return cls(table.cls_id, table.sep_id, table.mask_id, banned)


def generate_captions(
    model,
    patch_features: tf.Tensor,
    patch_boxes: tf.Tensor,
    special: SpecialIds,
    vocab_size: int,
    beam_size: int = 5,
    max_tokens: int = 62,
    alpha: float = 0.0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Best caption of each image.

    Args:
        model: A captioning VLModel (``captioning_task.build_model``).
        patch_features: float32 [B, P, D].
        patch_boxes: float32 [B, P, 5].
        special: SpecialIds.
        vocab_size: V of the model.
        beam_size: K.
        max_tokens: Longest caption in WordPieces, [SEP] excluded.
        alpha: Length normalisation strength (0: plain log-probability).

    Returns:
        ``(ids, scores)``: int32 [B, max_tokens + 1], the caption's WordPieces,
        then [SEP], then zeros (a caption that reached ``max_tokens`` may end
        without [SEP]); float32 [B], the best beam's score.
    """
    batch = tf.shape(patch_features)[0]
    p = tf.shape(patch_features)[1]
    banned = np.zeros([vocab_size], np.float32)
    banned[list(special.banned_ids)] = NEG_INF
    banned = tf.constant(banned)

    def symbols_to_logits(ids, i, cache):
        rows = tf.shape(ids)[0]
        length = tf.shape(ids)[1] + 1
        inputs = {
            "input_ids": tf.concat(
                [ids, tf.fill([rows, 1], tf.cast(special.mask_id, ids.dtype))], 1
            ),
            "input_mask": tf.ones([rows, length], tf.int32),
            "segment_ids": tf.zeros([rows, length], tf.int32),
            "patch_features": cache["patch_features"],
            "patch_boxes": cache["patch_boxes"],
            "patch_mask": tf.ones([rows, p], tf.int32),
            "masked_lm_positions": tf.fill([rows, 1], length - 1),
        }
        logits = model(inputs, training=False)["mlm_logits"][:, 0, :]
        return tf.cast(logits, tf.float32) + banned, cache

    ids, scores = beam_search.sequence_beam_search(
        symbols_to_logits,
        initial_ids=tf.fill([batch], tf.constant(special.cls_id, tf.int32)),
        initial_cache={"patch_features": patch_features, "patch_boxes": patch_boxes},
        vocab_size=vocab_size,
        beam_size=beam_size,
        alpha=alpha,
        max_decode_length=max_tokens + 1,
        eos_id=special.sep_id,
        padded_decode=False,
    )
    best = ids[:, 0, 1:]  # drop [CLS]
    # Zero everything after the first [SEP] (finished beams are padded with eos).
    is_sep = tf.cast(tf.equal(best, special.sep_id), tf.int32)
    after = tf.cumsum(is_sep, axis=1, exclusive=True) > 0
    best = tf.where(after, tf.zeros_like(best), best)
    width = max_tokens + 1
    best = tf.pad(best, [[0, 0], [0, width - tf.shape(best)[1]]])
    return best, scores[:, 0]


def ids_to_text(ids, vocab: tuple[str, ...], sep_id: int) -> str:
    """WordPieces up to [SEP] joined into words (``##`` pieces glued on)."""
    words: list[str] = []
    for token_id in np.asarray(ids).tolist():
        if token_id == sep_id or token_id == 0:
            break
        piece = vocab[token_id]
        if piece.startswith("##") and words:
            words[-1] += piece[2:]
        else:
            words.append(piece)
    return " ".join(words)
