"""Atomic file writes: a temporary name in the same folder, then ``os.replace``.

A killed process leaves at most a ``*.tmp-<pid>`` file, never a file under its final
name with partial content.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def temporary_path(path: str | Path) -> Path:
    """The temporary name this process uses while writing ``path``."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (fsync before the rename)."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Writes UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Writes ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def remove_stale_temporaries(path: str | Path) -> int:
    """Deletes ``<path>.tmp-*`` files left by killed writers; returns how many."""
    path = Path(path)
    count = 0
    for stale in path.parent.glob(f"{path.name}.tmp-*"):
        stale.unlink(missing_ok=True)
        count += 1
    return count
