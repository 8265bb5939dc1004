"""Clean, labelled (text, pixels) pairs of a ``prepare-pixels`` folder: CommerceMM's
categorization fine-tuning and evaluation.

One example per image record: the product's text, the record's pixels (RGB in
[0, 255], ``commerce_mm_pipeline.pixels_0_255``) and a label field of the record
(``category_id`` or ``subcategory_id``; -1 = unknown). No masking and no greying
(K-Q18); the shuffling, sharding and exact resume of ``pipeline.make_dataset``
through ``commerce_mm_pipeline``'s per-epoch stream.

Reference: spec imagebert_interbert_commercemm.md §4.8 (CC, MPC on the fused
[CLS]), §4.11 #18; kaleido_fashionbert.md K-Q18, K-Q23.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tensorflow as tf

from kaleido_tf import schema
from kaleido_tf.inputs.checks import check_finite
from kaleido_tf.inputs.commerce_mm_pipeline import _PixelFolderInputs, pixels_0_255
from kaleido_tf.inputs.parse import parse_record
from kaleido_tf.inputs.pipeline import make_dataset
from kaleido_tf.inputs.product_table import ProductTable
from kaleido_tf.manifest import manifest_fields

LABEL_KEYS = ("category_id", "subcategory_id")


class LabelledPixelInputs(_PixelFolderInputs):
    """Clean labelled examples (``input_ids``, ``input_mask``, ``pixels``,
    ``label_key``) of a ``prepare-pixels`` folder.

    Args:
        data_dir: A ``kaleido-tf prepare-pixels`` output folder.
        label_key: ``category_id`` or ``subcategory_id``.
        seed: Seed of the shuffle.
        image_size: If given, the S the model needs (checked).
        max_seq_length: If given, the largest T the model takes (checked).

    Raises:
        DataError: Not a pixel folder, or a mismatch with the model.
        ValueError: Unknown ``label_key``.
    """

    def __init__(
        self,
        data_dir: str | Path,
        label_key: str,
        seed: int = 0,
        image_size: int | None = None,
        max_seq_length: int | None = None,
    ) -> None:
        from kaleido_tf.errors import DataError

        if label_key not in LABEL_KEYS:
            raise ValueError(f"label_key must be one of {LABEL_KEYS}, got {label_key}")
        self._open(data_dir, schema.PixelLayout, "prepare-pixels", seed)
        self._check_image_size(image_size)
        if max_seq_length is not None and self.max_seq_length > max_seq_length:
            raise DataError(
                f"{self.data_dir}: text length {self.max_seq_length} exceeds "
                f"model.encoder.max_sequence_length {max_seq_length}"
            )
        self.label_key = label_key
        self.pad_id = ProductTable.load(self.data_dir, self.manifest).pad_id
        keys = ("input_ids", "image_jpeg", label_key)
        self.fields = {
            k: v for k, v in manifest_fields(self.manifest).items() if k in keys
        }

    def example(self, serialized: tf.Tensor, epoch: tf.Tensor) -> dict:
        """One record -> ``input_ids``, ``input_mask`` int32 [T], ``pixels``
        float32 [S, S, 3] and the label int64 []."""
        del epoch
        record = check_finite(parse_record(serialized, self.fields))
        input_ids = tf.cast(record["input_ids"], tf.int32)
        return {
            "input_ids": input_ids,
            "input_mask": tf.cast(input_ids != self.pad_id, tf.int32),
            "pixels": pixels_0_255(record["image_jpeg"], self.image_size),
            self.label_key: record[self.label_key],
        }


def build_labelled_dataset(
    data_dir: str | Path,
    config: Any,
    label_key: str,
    global_batch_size: int,
    start_step: int = 0,
    training: bool = True,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Batches of ``LabelledPixelInputs``; one file-order pass when not training
    (the last batch kept), shuffled epochs and an exact resume when training."""
    from kaleido_tf.config.experiment import CommerceMMConfig

    cmm = config.commerce_mm or CommerceMMConfig()
    inputs = LabelledPixelInputs(
        data_dir,
        label_key,
        seed=config.train.seed,
        image_size=cmm.image_size,
        max_seq_length=config.model.encoder.max_sequence_length,
    )
    return make_dataset(
        inputs,
        global_batch_size,
        training=training,
        input_context=input_context,
        start_step=start_step,
        group_size=32,
    )
