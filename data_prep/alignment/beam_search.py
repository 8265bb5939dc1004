"""Beam-search caption decoding that keeps each generated word's attention map.

AAG needs, for every word of the decoded caption, the attention α_t with which the
captioner produced it (Kaleido-BERT §3.3). ``official.nlp.modeling.ops.beam_search``
cannot give that: it gathers its cache only for *alive* sequences, so the history of
a sequence is dropped when it finishes, and it scores with GNMT's length penalty. This
module is therefore a small explicit implementation: the decoder step runs in
TensorFlow on all B·K beams at once; the bookkeeping (top-2K candidates, finished
hypotheses, attention histories) is numpy.

Dimension legend: B images; K beam size; N = B·K rows; V vocabulary; G grid
locations.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

StepFn = Callable[[tf.Tensor, Any], tuple[Any, Any, Any]]


@dataclasses.dataclass
class BeamSearchResult:
    """The best caption of each image.

    Attributes:
        tokens: One list of word ids per image, without ``<start>``/``<end>``.
        scores: float64 [B]: Σ_t log p(y_t | y_<t) of the caption including its
            ``<end>``.
        attention: One float32 [n_i, G] array per image: row t is α_t, the
            attention with which word t was generated.
    """

    tokens: list[list[int]]
    scores: np.ndarray
    attention: list[np.ndarray]


def tile_beams(x: Any, beam_size: int) -> Any:
    """Repeats every row K times (``[B, ...]`` -> ``[B*K, ...]``, image-major)."""
    return tf.nest.map_structure(lambda t: tf.repeat(t, beam_size, axis=0), x)


def beam_search(
    step_fn: StepFn,
    initial_state: Any,
    batch_size: int,
    beam_size: int,
    max_words: int,
    start_id: int,
    end_id: int,
    forbidden_ids: Sequence[int] = (),
) -> BeamSearchResult:
    """Finds, per image, the caption of highest total log-probability in a beam.

    A caption is ``w_1 .. w_n <end>`` with n <= ``max_words``; its score is the sum
    of log p over its words and its ``<end>`` (no length normalisation). At each
    step the K alive hypotheses of an image are extended by every word, the 2K
    best candidates are taken; those ending in ``<end>`` join the finished ones and
    the best K others stay alive. At step ``max_words`` only ``<end>`` is allowed.
    An image stops when its best finished score is at least its best alive score
    (log-probabilities are <= 0, so no continuation can do better); with a beam
    as wide as the number of prefixes the result is the exact optimum.

    Args:
        step_fn: ``(tokens, state) -> (log_probs, alpha, new_state)`` with
            tokens: int32 [N], the previous word of each beam; log_probs: float
            [N, V]; alpha: float [N, G]; states: nested tensors with leading N.
            Per-image constants (e.g. the grid) must be tiled with
            ``tile_beams`` by the caller.
        initial_state: Nested tensors with leading dimension B; tiled here.
        batch_size: B.
        beam_size: K.
        max_words: Longest caption in words.
        start_id: Id fed at the first step.
        end_id: Id that ends a caption.
        forbidden_ids: Ids never generated (e.g. ``<pad>``, ``<start>``, ``<unk>``).

    Returns:
        A BeamSearchResult.

    Reference: Show, Attend and Tell (Xu et al. 2015) §4.3 (beam search decoding).
    Deviation: explicit implementation instead of
    ``official.nlp.modeling.ops.beam_search`` (see the module docstring).
    """
    b_size, k = batch_size, beam_size
    state = tile_beams(initial_state, k)
    tokens = np.full(b_size * k, start_id, np.int32)
    alive_score = np.full((b_size, k), -np.inf)
    alive_score[:, 0] = 0.0
    alive_seq = np.zeros((b_size, k, 0), np.int64)
    alive_att: np.ndarray | None = None
    finished: list[list[tuple[float, np.ndarray, np.ndarray]]] = [
        [] for _ in range(b_size)
    ]
    done = np.zeros(b_size, bool)
    forbidden = list(forbidden_ids)
    for t in range(max_words + 1):
        log_probs, alpha, new_state = step_fn(tf.constant(tokens), state)
        lp = np.array(log_probs, np.float64).reshape(b_size, k, -1)  # [B, K, V]
        vocab = lp.shape[-1]
        alpha = np.asarray(alpha, np.float32).reshape(b_size, k, -1)  # [B, K, G]
        if alive_att is None:
            alive_att = np.zeros((b_size, k, 0, alpha.shape[-1]), np.float32)
        if forbidden:
            lp[:, :, forbidden] = -np.inf
        if t == max_words:
            keep_end = lp[:, :, end_id].copy()
            lp[:] = -np.inf
            lp[:, :, end_id] = keep_end
        flat = (alive_score[:, :, None] + lp).reshape(b_size, k * vocab)
        order = np.argsort(-flat, axis=1, kind="stable")[:, : 2 * k]
        parent = np.zeros((b_size, k), np.int64)
        word = np.full((b_size, k), end_id, np.int64)
        score = np.full((b_size, k), -np.inf)
        for b in range(b_size):
            if done[b]:
                continue
            n = 0
            for j in order[b]:
                s = flat[b, j]
                if not np.isfinite(s):
                    break
                p, w = divmod(int(j), vocab)
                if w == end_id:
                    finished[b].append((float(s), alive_seq[b, p], alive_att[b, p]))
                elif n < k:
                    parent[b, n], word[b, n], score[b, n] = p, w, s
                    n += 1
            best_done = max((f[0] for f in finished[b]), default=-np.inf)
            if n == 0 or best_done >= score[b, 0]:
                done[b] = True
                score[b] = -np.inf
        rows = np.arange(b_size)[:, None]
        alive_seq = np.concatenate(
            [alive_seq[rows, parent], word[:, :, None]], axis=2
        )  # [B, K, t + 1]
        alive_att = np.concatenate(
            [alive_att[rows, parent], alpha[rows, parent][:, :, None]], axis=2
        )  # [B, K, t + 1, G]
        alive_score = score
        if done.all():
            break
        flat_parent = tf.constant((rows * k + parent).reshape(-1), tf.int32)
        state = tf.nest.map_structure(lambda s: tf.gather(s, flat_parent), new_state)
        tokens = word.reshape(-1).astype(np.int32)
    out_tokens, out_scores, out_att = [], np.full(b_size, -np.inf), []
    for b in range(b_size):
        if finished[b]:
            best = max(range(len(finished[b])), key=lambda i: finished[b][i][0])
            s, seq, att = finished[b][best]
            out_tokens.append([int(x) for x in seq])
            out_scores[b] = s
            out_att.append(np.asarray(att, np.float32))
        else:
            out_tokens.append([])
            out_att.append(np.zeros((0, alive_att.shape[-1]), np.float32))
    return BeamSearchResult(out_tokens, out_scores, out_att)


def generate_captions(
    model,
    grid_features: tf.Tensor,
    beam_size: int,
    max_words: int,
) -> BeamSearchResult:
    """Captions a batch of encoded images with ``model`` (an SATCaptioner).

    Args:
        model: An ``SATCaptioner`` (weights loaded).
        grid_features: float32 [B, G, C], ``model.encoder(images)``.
        beam_size: K (K-Q10: 3).
        max_words: Longest caption (§4.2: 30).

    Returns:
        A BeamSearchResult whose attention rows are α_t of the generated words.

    Reference: Show, Attend and Tell (Xu et al. 2015) §4.3; Kaleido-BERT §3.3.
    """
    from data_prep.alignment.caption_vocab import (
        END_ID,
        PAD_ID,
        START_ID,
        UNK_ID,
    )

    model.build_decoder()
    grid = tf.cast(grid_features, tf.float32)
    b_size = int(grid.shape[0])
    tiled = tile_beams(grid, beam_size)  # [N, G, C]
    projected = model.attention.project_features(tiled)  # [N, G, A]
    step = _compiled_step(model)

    def step_fn(tokens, state):
        log_probs, alpha, (h, c) = step(tiled, projected, tokens, state[0], state[1])
        return log_probs, alpha, (h, c)

    h0, c0 = model.initial_state(grid)
    return beam_search(
        step_fn,
        (h0, c0),
        b_size,
        beam_size,
        max_words,
        START_ID,
        END_ID,
        forbidden_ids=(PAD_ID, START_ID, UNK_ID),
    )


_STEP_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled_step(model):
    """The model's decode step as a tf.function, built once per model."""
    step = _STEP_FNS.get(model)
    if step is None:

        @tf.function(reduce_retracing=True)
        def step(grid, projected, tokens, h, c):
            log_probs, alpha, (h2, c2) = model.decode_step(
                grid, projected, tokens, [h, c]
            )
            return log_probs, alpha, (h2, c2)

        _STEP_FNS[model] = step
    return step
