"""Category (CR) and sub-category (SUB) recognition metrics: ACC, macro-F, Sum CLS.

Reference: Kaleido-BERT §4.2, Table 3; kaleido_fashionbert.md §4.7, §7.4, K-Q23,
K-Q24.
"""

from __future__ import annotations

import numpy as np


def score(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int | None = None
) -> dict[str, float]:
    """Accuracy and macro-F of one recognition task.

    macro-F is scikit-learn's ``f1_score(average='macro')`` (K-Q24): the
    unweighted mean of the per-class F1 over the classes that occur in the labels
    or the predictions (a class in neither does not count); a class that is
    predicted but never true, or true but never predicted, has F1 = 0.

    Args:
        labels: int [N]. True class of each test example (one per (image, text)
            pair).
        predictions: int [N]. Predicted class (argmax of the logits).
        num_classes: C (48 for CR, 122 for SUB); if given, every id must be in
            [0, C).

    Returns:
        ``accuracy`` (0..1; the paper prints ×100 as %), ``macro_f`` (0..1, as
        the paper prints it) and ``examples``.

    Raises:
        ValueError: Empty or unequal inputs, or an id outside [0, C).
    """
    from sklearn.metrics import f1_score

    labels = np.asarray(labels).reshape(-1)
    predictions = np.asarray(predictions).reshape(-1)
    if labels.size == 0 or labels.shape != predictions.shape:
        raise ValueError(
            f"labels and predictions must be non-empty and of one length, got "
            f"{labels.shape} and {predictions.shape}"
        )
    if num_classes is not None:
        for name, ids in (("labels", labels), ("predictions", predictions)):
            if ids.min() < 0 or ids.max() >= num_classes:
                raise ValueError(
                    f"{name} must be in [0, {num_classes}), got "
                    f"[{ids.min()}, {ids.max()}]"
                )
    return {
        "accuracy": float(np.mean(labels == predictions)),
        "macro_f": float(
            f1_score(labels, predictions, average="macro", zero_division=0)
        ),
        "examples": int(labels.size),
    }


def sum_cls(category: dict[str, float], subcategory: dict[str, float]) -> float:
    """Sum CLS = (ACC + macro-F) × 100, summed over CR and SUB.

    Args:
        category: ``score`` of category recognition.
        subcategory: ``score`` of sub-category recognition.

    Reference: Kaleido-BERT Table 3 (95.07 + 71.4 + 88.07 + 63.6 = 318.14).
    """
    return 100.0 * sum(d["accuracy"] + d["macro_f"] for d in (category, subcategory))
