"""``kaleido-tf prepare``: Fashion-Gen HDF5 -> patch features -> TFRecord shards."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from kaleido_tf.cli.progress import log, progress_enabled
from kaleido_tf.errors import ConfigError


def add_source_arguments(
    p: argparse.ArgumentParser,
    default_config: str,
    set_example: str,
    required: bool = True,
) -> None:
    """``--h5``, ``--out``, ``--config`` and ``--set`` of every prepare command."""
    p.add_argument("--h5", required=required, type=Path, help="source .h5 file")
    p.add_argument("--out", required=required, type=Path, help="output folder")
    p.add_argument(
        "--config",
        default=default_config,
        help=f"name under configs/data/ or a YAML path (default: {default_config})",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value, e.g. --set {set_example}",
    )


def add_shard_arguments(p: argparse.ArgumentParser) -> None:
    """Text ids, split name, workers, merge and overwrite of every prepare command."""
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


def add_seed_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed of random weights")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "prepare",
        help="convert a Fashion-Gen .h5 file into TFRecord shards + manifest",
        description=(
            "Streams a Fashion-Gen-layout .h5 file: foreground crop and kaleido "
            "patches (or FashionBERT's 8x8 grid), backbone features, pixel pretext "
            "variants, WordPiece ids. Resumable; shards split across workers."
        ),
    )
    add_source_arguments(p, "fashiongen_kaleido", "backbone.batch_size=32")
    p.add_argument(
        "--backbone-weights",
        required=True,
        help="local .h5 weights of the backbone without its top, or 'none' for "
        "random weights (demo and tests only)",
    )
    add_shard_arguments(p)
    add_seed_argument(p)
    return p


def load_config(config_class: type, name_or_path: str, overrides: list[str]):
    """Resolves ``--config`` and ``--set`` into a ``config_class`` and its source."""
    from kaleido_tf.config.loader import load_dataclass, resolve_config_path

    path = resolve_config_path(name_or_path, "data")
    return load_dataclass(config_class, path, overrides), str(path)


def load_prepare_config(name_or_path: str, overrides: list[str]):
    """Resolves ``--config`` and ``--set`` into a PrepareConfig and its source."""
    from kaleido_tf.config.data_prep import PrepareConfig

    return load_config(PrepareConfig, name_or_path, overrides)


def weights_path(value: str) -> Path | None:
    """``--backbone-weights``: a path, or None for 'none' (random weights)."""
    return None if value.strip().lower() == "none" else Path(value)


def request_fields(args: argparse.Namespace, config_source: str) -> dict:
    """The request fields every prepare command fills from its common arguments
    (``add_source_arguments``, ``add_shard_arguments``).

    Raises:
        ConfigError: ``--num-workers`` below 1.
    """
    if args.num_workers < 1:
        raise ConfigError(f"--num-workers must be >= 1, got {args.num_workers}")
    return {
        "h5_path": args.h5,
        "out_dir": args.out,
        "vocab_path": args.vocab,
        "categories_path": args.categories,
        "split": args.split,
        "num_workers": args.num_workers,
        "worker_index": args.worker_index,
        "overwrite": args.overwrite,
        "progress": progress_enabled(args),
        "command": shlex.join(["kaleido-tf", *getattr(args, "argv", [])]),
        "config_source": config_source,
        "merge": args.merge,
    }


def print_summary(summary: dict) -> None:
    for key, value in summary.items():
        print(f"{key}: {value}")


def run(args: argparse.Namespace) -> int:
    from data_prep.pipeline import PrepareRequest, prepare

    config, source = load_prepare_config(args.config, args.set)
    weights = weights_path(args.backbone_weights)
    request = PrepareRequest(
        config=config,
        backbone_weights=weights,
        seed=args.seed,
        **request_fields(args, source),
    )
    print_summary(prepare(request, log=log))
    return 0
