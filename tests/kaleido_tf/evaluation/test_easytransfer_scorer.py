"""The EasyTransfer-compatible scorer against an independent computation."""

import numpy as np
import pytest

from kaleido_tf.errors import DataError
from kaleido_tf.evaluation.easytransfer_scorer import (
    ScoredPairs,
    easytransfer_metrics,
    looks_like_easytransfer,
    read_easytransfer_predictions,
)


def independent_metrics(query_ids, labels, logits):
    """Plain-Python reading of prior_art.md §1.7: group, stable sort by logit[1]."""
    n = len(labels)
    correct = sum(
        (1 if logits[i][1] > logits[i][0] else 0) == labels[i] for i in range(n)
    )
    groups = {}
    for i, q in enumerate(query_ids):
        groups.setdefault(q, []).append((float(logits[i][1]), int(labels[i])))
    out = {"accuracy": correct / (n + 1e-5)}
    for k in (1, 5, 10, 100):
        hits = 0
        for docs in groups.values():
            ranked = sorted(docs, key=lambda d: d[0], reverse=True)  # stable
            hits += any(label == 1 for _, label in ranked[:k])
        out[f"rank@{k}"] = hits / (len(groups) + 1e-5)
    # AUC: fraction of (positive, negative) pairs ordered right, ties count half.
    pos = [float(logits[i][1]) for i in range(n) if labels[i] == 1]
    neg = [float(logits[i][1]) for i in range(n) if labels[i] == 0]
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    out["auc"] = wins / (len(pos) * len(neg))
    return out


def test_matches_an_independent_computation():
    rng = np.random.default_rng(3)
    query_ids, labels, logits = [], [], []
    for q in range(30):
        size = int(rng.integers(3, 14))  # uneven groups, some under 10
        positives = int(rng.integers(0, 3))  # 0, 1 or 2 positives
        for c in range(size):
            query_ids.append(f"q{q}")
            labels.append(int(c < positives))
            # Rounded logits: ties inside groups and across classes.
            logits.append(np.round(rng.normal(size=2), 1))
    order = rng.permutation(len(labels))  # interleave the groups
    query_ids = [query_ids[i] for i in order]
    labels = np.asarray(labels)[order]
    logits = np.asarray(logits, np.float32)[order]
    got = easytransfer_metrics(ScoredPairs(tuple(query_ids), labels, logits))
    expected = independent_metrics(query_ids, labels, logits)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert got["queries"] == 30 and got["pairs"] == len(labels)


def test_ties_keep_file_order():
    # Same logit[1]: the earlier row ranks first (not pessimistic).
    first = ScoredPairs(("q", "q"), np.array([1, 0]), np.array([[0, 1], [0, 1.0]]))
    second = ScoredPairs(("q", "q"), np.array([0, 1]), np.array([[0, 1], [0, 1.0]]))
    assert easytransfer_metrics(first)["rank@1"] == pytest.approx(1 / (1 + 1e-5))
    assert easytransfer_metrics(second)["rank@1"] == 0.0


def test_reads_easytransfer_predict_output(tmp_path):
    # Two batches; text product, image product, image id, label, flat logits.
    lines = [
        "[11, 12, 13]\x01[11, 11, 11]\x01[11_1, 11_1, 11_1]\x01[1, 0, 0]\x01"
        "[0.1, 0.9, 0.2, 0.3, 0.0, 2.0]",
        "[22,21]\x01[22,22]\x01[22_2,22_2]\x01[1,0]\x01[0.0,1.5,0.0,0.5]",
    ]
    path = tmp_path / "eval_img2txt_results.txt"
    path.write_text("\n".join(lines) + "\n")
    assert looks_like_easytransfer(path)
    pairs = read_easytransfer_predictions(path, "img2txt")
    assert pairs.query_ids == ("11", "11", "11", "22", "22")
    np.testing.assert_array_equal(pairs.labels, [1, 0, 0, 1, 0])
    np.testing.assert_allclose(pairs.logits[2], [0.0, 2.0])
    m = easytransfer_metrics(pairs)
    # Query 11: the negative with logit 2.0 beats the truth's 0.9; query 22 wins.
    assert m["rank@1"] == pytest.approx(1 / (2 + 1e-5))
    assert m["rank@5"] == pytest.approx(2 / (2 + 1e-5))
    t2i = read_easytransfer_predictions(path, "txt2img")
    assert t2i.query_ids == ("11", "12", "13", "22", "21")
    path.write_text("[1]\x01[2]\x01[x]\x01[1]\n")
    with pytest.raises(DataError, match="4 fields"):
        read_easytransfer_predictions(path, "img2txt")
