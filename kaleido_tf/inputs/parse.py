"""Parses image records written by ``kaleido-tf prepare`` (schema in ``schema.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tensorflow as tf

from kaleido_tf.errors import DataError
from kaleido_tf.manifest import manifest_fields
from kaleido_tf.schema import FieldSpec


def feature_description(fields: dict[str, FieldSpec]) -> dict[str, Any]:
    """``tf.io.parse_example`` features for the schema's fields."""
    out = {}
    for key, spec in fields.items():
        if spec.dtype in ("bytes", "float16_bytes"):
            out[key] = tf.io.FixedLenFeature([], tf.string)
        elif spec.dtype == "int64":
            out[key] = tf.io.FixedLenFeature([spec.size], tf.int64)
        elif spec.dtype == "float32":
            out[key] = tf.io.FixedLenFeature([spec.size], tf.float32)
        else:
            raise DataError(f"schema key {key!r} has unknown dtype {spec.dtype!r}")
    return out


def parse_record(
    serialized: tf.Tensor, fields: dict[str, FieldSpec]
) -> dict[str, tf.Tensor]:
    """Parses one serialised record into tensors of the schema's shapes.

    Args:
        serialized: string scalar, one ``tf.train.Example``.
        fields: ``schema.record_fields(...)`` or ``manifest_fields(manifest)``.

    Returns:
        Key -> tensor. ``float16_bytes`` fields come back as float32 of their
        shape (e.g. ``patch_features: float32 [P, D]``); ``int64`` fields as int32
        (``input_ids: int32 [T]``) except ids that may exceed int32
        (``product_id``, ``source_row``), which stay int64.
    """
    parsed = tf.io.parse_single_example(serialized, feature_description(fields))
    out = {}
    for key, spec in fields.items():
        value = parsed[key]
        if spec.dtype == "float16_bytes":
            value = tf.io.decode_raw(value, tf.float16, little_endian=True)
            value = tf.cast(tf.reshape(value, spec.shape), tf.float32)
        elif spec.dtype == "bytes":
            pass
        else:
            value = tf.reshape(value, spec.shape)
            if spec.dtype == "int64" and key not in ("product_id", "source_row"):
                value = tf.cast(value, tf.int32)
        out[key] = value
    return out


def record_dataset(data_dir: str | Path, manifest: dict[str, Any]) -> tf.data.Dataset:
    """All records of a prepared folder, in shard order, parsed (deterministic)."""
    files = [str(Path(data_dir) / s["file"]) for s in manifest["shards"]]
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise DataError(
            f"{data_dir}: shard {missing[0]} listed in manifest.json is missing: "
            "rerun `kaleido-tf prepare`"
        )
    fields = manifest_fields(manifest)
    return tf.data.TFRecordDataset(files).map(
        lambda s: parse_record(s, fields),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
