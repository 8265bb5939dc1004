"""Checks of record contents in the input pipeline: non-finite features, damaged shards.

``check_finite`` runs inside tf.data on every parsed record (a NaN or Inf in a
float field stops training with the record's ``image_id``); ``find_corrupt_shard``
names the file behind a ``DataLossError`` after the fact, by reading each shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

# Marker of the assertion message; the trainer turns it into a DataError.
NON_FINITE = "non-finite value (NaN or Inf) in"


def check_finite(record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """``record`` unchanged, after asserting its float fields are finite.

    Args:
        record: One parsed record (``parse.parse_record``) with ``image_id``.

    Returns:
        The same tensors, depending on the assertions.

    Raises:
        tf.errors.InvalidArgumentError: When the dataset runs, naming the field and
            the record's ``image_id`` (message contains ``NON_FINITE``).
    """
    checks = []
    for key, value in record.items():
        if value.dtype.is_floating:
            checks.append(
                tf.debugging.Assert(
                    tf.reduce_all(tf.math.is_finite(value)),
                    [
                        f"{NON_FINITE} {key} of record image_id=",
                        record.get("image_id", "?"),
                    ],
                    summarize=1,
                )
            )
    with tf.control_dependencies(checks):
        return {key: tf.identity(value) for key, value in record.items()}


def find_corrupt_shard(files: Sequence[str | Path]) -> tuple[Path, str] | None:
    """The first TFRecord file that cannot be read to its end, and why.

    Reads every record of every file (checking lengths and CRCs), so it is
    meant for reporting a failure, not for every run.
    """
    for path in files:
        try:
            for _ in tf.data.TFRecordDataset(str(path)):
                pass
        except (tf.errors.DataLossError, tf.errors.NotFoundError) as err:
            return Path(path), (err.message or str(err)).splitlines()[0]
    return None
