"""CR / SUB evaluation: one prediction per (image, own text) pair of a split (K-Q24).

Reference: Kaleido-BERT §4.2 (CR & SUB); kaleido_fashionbert.md §7.4, K-Q23, K-Q24.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tensorflow as tf


def predict_categories(
    model, config, data_dir: str | Path, batch_size: int = 64, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and argmax predictions of every image record of ``data_dir``.

    Clean inputs (K-Q18), file order, the last partial batch kept. Records with an
    unknown label (-1) are left out.

    Returns:
        ``(labels, predictions)``: int64 [N] each.
    """
    from tqdm import tqdm

    from kaleido_tf.finetuning import category_task

    task, key = category_task.head_id(config), category_task.label_key(config)
    dataset = category_task.build_dataset(data_dir, config, batch_size, training=False)

    @tf.function(reduce_retracing=True)
    def predict(batch):
        logits = model(batch, training=False)[f"{task}_logits"]
        return tf.argmax(logits, -1)

    labels, predictions = [], []
    total = category_task.examples_per_epoch(data_dir, config)
    with tqdm(
        total=total,
        desc=f"evaluate {task}",
        unit="img",
        disable=not progress,
        file=sys.stderr,
    ) as bar:
        for batch in dataset:
            labels.append(batch[key].numpy())
            predictions.append(predict(batch).numpy())
            bar.update(len(labels[-1]))
    labels_all = np.concatenate(labels).astype(np.int64)
    predicted = np.concatenate(predictions).astype(np.int64)
    known = labels_all >= 0
    return labels_all[known], predicted[known]
