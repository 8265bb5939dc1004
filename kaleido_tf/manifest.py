"""``manifest.json``: what a prepared data folder holds and how it was built.

Written last by ``kaleido-tf prepare``; readers refuse a folder whose manifest is
missing or whose schema version, layout or feature size differs from what they expect
(DESIGN.md §2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kaleido_tf import schema
from kaleido_tf.atomic_files import atomic_write_json
from kaleido_tf.errors import DataError

MANIFEST_NAME = "manifest.json"


def manifest_header(
    split: str,
    layout: schema.AnyLayout,
    feature_dim: int,
    max_seq_length: int,
) -> dict[str, Any]:
    """The keys every manifest starts with, whoever writes the folder (``prepare``,
    ``import-easytransfer``): versions, creation time and the record shapes."""
    import datetime

    import kaleido_tf

    return {
        "schema_version": schema.SCHEMA_VERSION,
        "kaleido_tf_version": kaleido_tf.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "split": split,
        "layout": layout.name,
        "grids": list(layout.grids),
        "num_patches": layout.num_patches,
        "feature_dim": feature_dim,
        "feature_dtype": schema.FEATURE_BYTES_DTYPE,
        "max_seq_length": max_seq_length,
    }


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> Path:
    """Writes ``folder/manifest.json`` atomically and returns its path."""
    path = Path(folder) / MANIFEST_NAME
    atomic_write_json(path, manifest)
    return path


def read_manifest(
    folder: str | Path,
    layout: str | None = None,
    feature_dim: int | None = None,
    max_seq_length: int | None = None,
) -> dict[str, Any]:
    """Reads and checks a prepared folder's manifest.

    Args:
        folder: The ``kaleido-tf prepare`` output folder.
        layout: If given, the layout the caller needs.
        feature_dim: If given, the feature size D the caller needs.
        max_seq_length: If given, the text length T the caller needs.

    Raises:
        DataError: Missing or unreadable manifest, another schema version, or a
            mismatch with what the caller needs; the message says how to fix it.
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(
            f"{path} not found: {folder} is not a finished `kaleido-tf prepare` "
            "output (rerun prepare; it resumes where it stopped)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path} is unreadable ({e}): rerun `kaleido-tf prepare`")
    version = manifest.get("schema_version")
    if version != schema.SCHEMA_VERSION:
        raise DataError(
            f"{path} has schema_version {version}, this build reads "
            f"{schema.SCHEMA_VERSION}: rebuild with `kaleido-tf prepare`"
        )
    checks = (
        ("layout", layout),
        ("feature_dim", feature_dim),
        ("max_seq_length", max_seq_length),
    )
    for key, wanted in checks:
        if wanted is not None and manifest.get(key) != wanted:
            raise DataError(
                f"{path} has {key}={manifest.get(key)!r}, but the config needs "
                f"{wanted!r}: prepare the data with a matching config or change "
                "the config"
            )
    return manifest


def manifest_fields(manifest: dict[str, Any]) -> dict[str, schema.FieldSpec]:
    """The record fields of the shards a manifest describes."""
    return schema.record_fields(
        schema.get_layout(manifest["layout"]),
        manifest["max_seq_length"],
        manifest["feature_dim"],
        num_classes=int(manifest.get("num_classes", 0)),
        class_distribution=bool(manifest.get("class_distribution", False)),
        num_clusters=int(manifest.get("num_clusters", 0)),
    )
