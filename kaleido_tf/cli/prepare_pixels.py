"""``kaleido-tf prepare-pixels``: Fashion-Gen HDF5 -> CommerceMM pixel records.

``prepare-pixels`` writes one record per image: the S x S JPEG (KPG crop or full
image) with the MIM teacher targets r(v) and c(v) precomputed offline
(``data_prep.pixels.pixel_records``). ``prepare-omni`` (``cli/prepare_omni.py``)
reads the same config (``configs/data/fashiongen_pixels224.yaml``).
Reference: imagebert_interbert_commercemm.md §4.2, §4.8, §4.11 rows 6, 14, 22.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from kaleido_tf.cli.progress import log, progress_enabled
from kaleido_tf.errors import ConfigError

DEFAULT_CONFIG = "fashiongen_pixels224"


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--h5", required=True, type=Path, help="source .h5 file")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help=f"name under configs/data/ or a YAML path (default: {DEFAULT_CONFIG})",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set jpeg_quality=90",
    )
    p.add_argument("--vocab", type=Path, help="BERT vocab.txt (default: learn one)")
    p.add_argument(
        "--categories",
        type=Path,
        help="categories.json of the training split's build, so ids agree",
    )
    p.add_argument("--split", help="split name in shard names (default: from --h5)")
    p.add_argument(
        "--num-workers",
        type=int,
        default=1,
        help="processes or machines sharing the shards (shard i goes to worker i %% K)",
    )
    p.add_argument("--worker-index", type=int, default=0, help="this worker, 0..K-1")
    p.add_argument(
        "--merge",
        action="store_true",
        help="after every worker finished: check each shard (done marker, size, "
        "SHA-256) and write manifest.json; builds no shard",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing build made with other settings",
    )


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
    p.add_argument("--seed", type=int, default=0, help="seed of random weights")
    return p


def load_pixel_config(name_or_path: str, overrides: list[str]):
    """Resolves ``--config`` and ``--set`` into a PixelPrepareConfig and its source."""
    from kaleido_tf.config.data_prep import PixelPrepareConfig
    from kaleido_tf.config.loader import load_dataclass, resolve_config_path

    path = resolve_config_path(name_or_path, "data")
    return load_dataclass(PixelPrepareConfig, path, overrides), str(path)


def check_workers(args: argparse.Namespace) -> None:
    if args.num_workers < 1:
        raise ConfigError(f"--num-workers must be >= 1, got {args.num_workers}")


def print_summary(summary: dict) -> None:
    for key, value in summary.items():
        print(f"{key}: {value}")


def run(args: argparse.Namespace) -> int:
    """Runs ``prepare-pixels``."""
    from data_prep.pixels.pixel_records import PixelPrepareRequest, prepare_pixels

    config, source = load_pixel_config(args.config, args.set)
    check_workers(args)
    if args.backbone_weights.strip().lower() == "none":
        weights = None
    else:
        weights = Path(args.backbone_weights)
    request = PixelPrepareRequest(
        h5_path=args.h5,
        out_dir=args.out,
        config=config,
        backbone_weights=weights,
        teacher_clusters_path=args.teacher_clusters,
        vocab_path=args.vocab,
        categories_path=args.categories,
        split=args.split,
        num_workers=args.num_workers,
        worker_index=args.worker_index,
        overwrite=args.overwrite,
        seed=args.seed,
        progress=progress_enabled(args),
        command=shlex.join(["kaleido-tf", *getattr(args, "argv", [])]),
        config_source=source,
        merge=args.merge,
    )
    print_summary(prepare_pixels(request, log=log))
    return 0
