"""Rank@K, SumR and matching accuracy against hand-worked and brute-force values."""

import numpy as np
import pytest

from kaleido_tf.evaluation.ranking_metrics import (
    match_probability,
    matching_accuracy,
    positive_ranks,
    rank_at_k,
    retrieval_metrics,
    sum_r,
)


def test_three_hand_scored_queries_with_ties():
    scores = np.array(
        [
            [0.2, 0.9, 0.1, 0.3],  # truth 1: clearly first -> rank 1
            [0.5, 0.5, 0.7, 0.5],  # truth 0: one higher, two tied -> rank 4
            [0.1, 0.1, 0.1, 0.1],  # all tied: pessimistic -> rank 4
        ]
    )
    ranks = positive_ranks(scores, np.array([1, 0, 3]))
    np.testing.assert_array_equal(ranks, [1, 4, 4])
    got = rank_at_k(ranks, ks=(1, 3, 4))
    assert got == pytest.approx({"rank@1": 1 / 3, "rank@3": 1 / 3, "rank@4": 1.0})


def brute_force_rank(row, truth):
    """Sort candidates by descending score, negatives before the truth on ties."""
    order = sorted(range(len(row)), key=lambda c: (-row[c], c == truth))
    return order.index(truth) + 1


def test_ranks_match_brute_force_sorting_with_many_ties():
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 4, size=(60, 11)).astype(np.float64)  # many ties
    truths = rng.integers(0, 11, size=60)
    expected = [brute_force_rank(list(r), t) for r, t in zip(scores, truths)]
    ranks = positive_ranks(scores, truths)
    np.testing.assert_array_equal(ranks, expected)
    for k in (1, 5, 10):
        assert rank_at_k(ranks)[f"rank@{k}"] == pytest.approx(
            sum(r <= k for r in expected) / 60
        )


def test_sum_r_re_adds_the_papers_kaleido_column():
    itr = {"rank@1": 0.2799, "rank@5": 0.6009, "rank@10": 0.6837}
    tir = {"rank@1": 0.3388, "rank@5": 0.6060, "rank@10": 0.6859}
    assert sum_r(itr, tir) == pytest.approx(319.52)


def test_retrieval_metrics_rank_by_margin_not_saturated_probability():
    # Margins 40 and 50 both give P(match) == 1.0 in float64; the margin keeps
    # the 50 ahead, so the truth (margin 50) ranks first.
    logits = np.array([[[0.0, 40.0], [0.0, 50.0], [3.0, 0.0]]], np.float32)
    assert match_probability(logits)[0, 0] == match_probability(logits)[0, 1] == 1.0
    m = retrieval_metrics(logits, np.array([1]))
    assert m["rank@1"] == 1.0 and m["mean_rank"] == 1.0
    # Accuracy: pairs 0 and 1 predicted "match", pair 2 "no match"; labels 0 1 0.
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert (m["queries"], m["candidates"]) == (1, 3)


def test_matching_accuracy_threshold_half():
    logits = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [2.0, 2.5]])
    labels = np.array([1, 1, 0, 0])
    # P(match) > 0.5: yes, no, no (exactly 0.5), yes -> correct, wrong, right, wrong.
    assert matching_accuracy(logits, labels) == pytest.approx(0.5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="NaN"):
        positive_ranks(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="positives"):
        positive_ranks(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError):
        rank_at_k(np.array([], np.int64))
