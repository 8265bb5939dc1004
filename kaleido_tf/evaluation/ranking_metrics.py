"""Retrieval metrics of the papers: Rank@K, SumR and FashionBERT's matching accuracy.

Reference: kaleido_fashionbert.md §2.3 (Rank@K, SumR), §3.6 and §7.3 (accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RANKS = (1, 5, 10)


def positive_ranks(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """The 1-based rank of each query's ground truth among its candidates.

    Candidates are sorted by descending score. Ties are broken pessimistically: a
    negative with the same score as the ground truth ranks above it, so the rank
    is 1 + the number of negatives scoring at least as high. A model that gives
    every candidate the same score thus gets rank C, never rank 1.

    Args:
        scores: float [Q, C]. Score of each (query, candidate) pair; higher =
            better match (any monotone function of P(match)).
        positives: int [Q]. Index of each query's ground truth in its row.

    Returns:
        int64 [Q], values in 1..C.

    Raises:
        ValueError: Bad shapes, an index out of range, or a NaN score.
    """
    scores = np.asarray(scores, np.float64)
    positives = np.asarray(positives, np.int64)
    if scores.ndim != 2 or positives.shape != (scores.shape[0],):
        raise ValueError(
            f"scores must be [Q, C] and positives [Q], got {scores.shape} and "
            f"{positives.shape}"
        )
    q, c = scores.shape
    if q and (positives.min() < 0 or positives.max() >= c):
        raise ValueError(f"positives must be in [0, {c}), got {positives}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    truth = scores[np.arange(q), positives][:, None]
    # The ground truth itself always counts as ">=": rank = that count.
    return np.sum(scores >= truth, axis=1).astype(np.int64)


def rank_at_k(ranks: np.ndarray, ks: Sequence[int] = RANKS) -> dict[str, float]:
    """Rank@K = the fraction of queries whose ground truth ranks in the top K.

    Args:
        ranks: int [Q]. ``positive_ranks`` output.
        ks: The K values.

    Returns:
        ``{"rank@1": fraction, ...}`` (0..1; the papers print ×100 as %).

    Raises:
        ValueError: No queries.
    """
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("Rank@K of zero queries")
    return {f"rank@{k}": float(np.mean(ranks <= k)) for k in ks}


def sum_r(itr: dict[str, float], tir: dict[str, float]) -> float:
    """SumR = (Rank@1 + Rank@5 + Rank@10) × 100, summed over ITR and TIR.

    Args:
        itr: ``rank_at_k`` of image-to-text retrieval (fractions).
        tir: ``rank_at_k`` of text-to-image retrieval.

    Reference: Kaleido-BERT Table 2 ("SumR=(Rank@1+Rank@5+Rank@10)*100").
    """
    return 100.0 * sum(d[f"rank@{k}"] for d in (itr, tir) for k in RANKS)


def match_margin(logits: np.ndarray) -> np.ndarray:
    """logit[1] - logit[0], in float64: ranks exactly as P(match) does.

    P(match) = softmax(logits)[1] = sigmoid(logit[1] - logit[0]) is monotone in
    the margin, but rounds to exactly 1.0 once the margin passes ~37 in float64
    (~17 in float32), which would create ties the model did not make; ranking by
    the margin keeps them apart.

    Args:
        logits: float [..., 2]. ITM logits; class 1 = match
            (``constants.ITM_MATCH``).
    """
    logits = np.asarray(logits, np.float64)
    return logits[..., 1] - logits[..., 0]


def match_probability(logits: np.ndarray) -> np.ndarray:
    """P(match) = softmax(logits)[..., 1], in float64."""
    return 1.0 / (1.0 + np.exp(-match_margin(logits)))


def matching_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """FashionBERT's matching accuracy: mean of 1[(P(match) > 0.5) == label].

    Over every (query, candidate) pair of a direction (1 positive + 100 negatives
    per query, so always predicting "no match" already scores 100/101).

    Args:
        logits: float [..., 2]. ITM logits.
        labels: int [...]. 1 = match (``constants.ITM_MATCH``), 0 = no match.

    Reference: kaleido_fashionbert.md §3.6, §7.3 (FashionBERT Table 1 "Accuracy").
    """
    predicted = match_margin(logits) > 0
    labels = np.asarray(labels)
    if predicted.shape != labels.shape or labels.size == 0:
        raise ValueError(
            f"logits [..., 2] and labels must agree and be non-empty, got "
            f"{np.shape(logits)} and {labels.shape}"
        )
    return float(np.mean(predicted == (labels == 1)))


def retrieval_metrics(logits: np.ndarray, positives: np.ndarray) -> dict[str, float]:
    """Rank@1/5/10, matching accuracy and mean rank of one direction.

    Args:
        logits: float [Q, C, 2]. ITM logits of every (query, candidate) pair.
        positives: int [Q]. Index of each query's ground truth.

    Returns:
        ``rank@1``, ``rank@5``, ``rank@10`` (fractions), ``accuracy`` (fraction),
        ``mean_rank``, ``queries`` and ``candidates``.
    """
    logits = np.asarray(logits)
    if logits.ndim != 3 or logits.shape[-1] != 2:
        raise ValueError(f"logits must be [Q, C, 2], got {logits.shape}")
    q, c, _ = logits.shape
    ranks = positive_ranks(match_margin(logits), positives)
    labels = np.zeros([q, c], np.int64)
    labels[np.arange(q), np.asarray(positives)] = 1
    out = rank_at_k(ranks)
    out["accuracy"] = matching_accuracy(logits, labels)
    out["mean_rank"] = float(np.mean(ranks))
    out["queries"] = q
    out["candidates"] = c
    return out
