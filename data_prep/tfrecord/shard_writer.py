"""A TFRecord shard written under a temporary name and renamed when complete."""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

from kaleido_tf.atomic_files import remove_stale_temporaries, temporary_path


class ShardWriter:
    """Writes records to ``<path>.tmp-<pid>``; ``commit`` renames it to ``path``.

    Leaving the ``with`` block without ``commit`` (an exception, a kill) deletes the
    temporary file, so nothing under the final name is ever partial.

    Example:
        >>> with ShardWriter("train-00000-of-00004.tfrecord") as writer:
        ...     for record in records:
        ...         writer.write(record)
        ...     writer.commit()
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        remove_stale_temporaries(self.path)
        self.tmp_path = temporary_path(self.path)
        self._writer = tf.io.TFRecordWriter(str(self.tmp_path))
        self.count = 0
        self.committed = False

    def write(self, record: bytes) -> None:
        """Appends one serialised example."""
        self._writer.write(record)
        self.count += 1

    def commit(self) -> None:
        """Flushes, closes and renames the shard to its final name."""
        self._writer.flush()
        self._writer.close()
        with open(self.tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp_path, self.path)
        self.committed = True

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            self._writer.close()
            self.tmp_path.unlink(missing_ok=True)
