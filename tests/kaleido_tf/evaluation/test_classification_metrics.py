"""ACC, macro-F and Sum CLS against a hand computation."""

import pytest

from kaleido_tf.evaluation.classification_metrics import score, sum_cls


def test_accuracy_and_macro_f_by_hand():
    labels = [0, 0, 0, 1, 1, 2, 2, 2]
    predictions = [0, 0, 1, 1, 2, 2, 2, 3]
    # class: tp fp fn -> F1 = 2tp / (2tp + fp + fn)
    # 0: 2 0 1 -> 4/5;  1: 1 1 1 -> 2/4;  2: 2 1 1 -> 4/6;  3: 0 1 0 -> 0
    # Class 4 (of num_classes 6) occurs nowhere and does not count.
    macro_f = (4 / 5 + 2 / 4 + 4 / 6 + 0) / 4
    got = score(labels, predictions, num_classes=6)
    assert got["accuracy"] == pytest.approx(5 / 8)
    assert got["macro_f"] == pytest.approx(macro_f)
    assert got["examples"] == 8


def test_sum_cls_re_adds_the_papers_kaleido_column():
    cr = {"accuracy": 0.9507, "macro_f": 0.714}
    sub = {"accuracy": 0.8807, "macro_f": 0.636}
    assert sum_cls(cr, sub) == pytest.approx(318.14)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        score([0, 1, 3], [0, 1, 2], num_classes=3)
    with pytest.raises(ValueError, match="one length"):
        score([0, 1], [0])
