"""``kaleido-tf prepare-pixels``: Fashion-Gen HDF5 -> CommerceMM pixel records.

``prepare-pixels`` writes one record per image: the S x S JPEG (KPG crop or full
image) with the MIM teacher targets r(v) and c(v) precomputed offline
(``data_prep.pixels.pixel_records``). ``prepare-omni`` (``cli/prepare_omni.py``)
reads the same config (``configs/data/fashiongen_pixels224.yaml``).
Reference: imagebert_interbert_commercemm.md §4.2, §4.8, §4.11 rows 6, 14, 22.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kaleido_tf.cli.prepare import (
    add_seed_argument,
    add_shard_arguments,
    add_source_arguments,
    load_config,
    print_summary,
    request_fields,
    weights_path,
)
from kaleido_tf.cli.progress import log

DEFAULT_CONFIG = "fashiongen_pixels224"


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments ``prepare-pixels`` and ``prepare-omni`` share."""
    add_source_arguments(p, DEFAULT_CONFIG, "jpeg_quality=90")
    add_shard_arguments(p)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``prepare-pixels``."""
    p = sub.add_parser(
        "prepare-pixels",
        help="convert a Fashion-Gen .h5 file into CommerceMM pixel records + "
        "MIM teacher targets",
        description=(
            "CommerceMM inputs: one record per image with the S x S JPEG (KPG crop "
            "or full image), r(v) = pooled features of a frozen teacher CNN and "
            "c(v) = soft k-means assignments (the GrokNet / ClusterFit "
            "substitutes), plus the text fields of `prepare`. Pass 1 embeds and "
            "fits k-means (or reuses --teacher-clusters), pass 2 writes shards. "
            "Resumable; shards split across workers."
        ),
    )
    add_common_arguments(p)
    p.add_argument(
        "--backbone-weights",
        required=True,
        help="local .h5 weights of the teacher backbone without its top, or "
        "'none' for random weights (demo and tests only)",
    )
    p.add_argument(
        "--teacher-clusters",
        type=Path,
        help="teacher_clusters.npz of the training split's build (validation and "
        "test splits reuse its centroids and T instead of fitting their own)",
    )
    add_seed_argument(p)
    return p


def load_pixel_config(name_or_path: str, overrides: list[str]):
    """Resolves ``--config`` and ``--set`` into a PixelPrepareConfig and its source."""
    from kaleido_tf.config.data_prep import PixelPrepareConfig

    return load_config(PixelPrepareConfig, name_or_path, overrides)


def run(args: argparse.Namespace) -> int:
    """Runs ``prepare-pixels``."""
    from data_prep.pixels.pixel_records import PixelPrepareRequest, prepare_pixels

    config, source = load_pixel_config(args.config, args.set)
    request = PixelPrepareRequest(
        config=config,
        backbone_weights=weights_path(args.backbone_weights),
        teacher_clusters_path=args.teacher_clusters,
        seed=args.seed,
        **request_fields(args, source),
    )
    print_summary(prepare_pixels(request, log=log))
    return 0
