"""Start-up checks of a training run's output folder, before any model is built.

A run that cannot write its checkpoints should fail in its first second, not at
its first checkpoint hours later.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kaleido_tf.errors import OutputError

MIB = 1 << 20


def check_model_dir(model_dir: str | Path, min_free_mb: int) -> None:
    """Creates ``model_dir`` and checks it is writable with ``min_free_mb`` free.

    Args:
        model_dir: The run's output folder (created if missing).
        min_free_mb: Free space (MiB) the file system must have.

    Raises:
        OutputError: The folder cannot be created or written, or its file system
            has less free space than ``min_free_mb``.
    """
    path = Path(model_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise OutputError(
            f"cannot write the model directory {path} ({err.strerror or err}): "
            "choose a writable --model-dir"
        ) from None
    free = shutil.disk_usage(path).free
    if free < min_free_mb * MIB:
        raise OutputError(
            f"the disk of {path} has {free / MIB:.0f} MiB free, less than "
            f"train.min_free_disk_mb={min_free_mb}: free space or choose another "
            "--model-dir"
        )
