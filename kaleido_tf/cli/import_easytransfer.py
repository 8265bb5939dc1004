"""``kaleido-tf import-easytransfer``: released EasyTransfer data and checkpoints.

With ``--schema/--in``: TSV files -> a prepared folder (TFRecord shards). With
``--checkpoint/--config``: a released TF1 checkpoint -> a run folder that
``evaluate``, ``export`` and ``finetune --init-from`` read.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from kaleido_tf.cli.progress import log, progress_enabled
from kaleido_tf.errors import ConfigError

SCHEMA_NAMES = (
    "fashionbert-pretrain",
    "fashionbert-eval",
    "kaleido-pretrain",
    "kaleido-finetune",
    "kaleido-retrieve",
)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "import-easytransfer",
        help="convert released FashionBERT / Kaleido-BERT TSV files into TFRecords",
        description=(
            "Streams the TSV files of the EasyTransfer releases (tab-separated "
            "columns, comma-separated numbers; a .list_csv names the files) into "
            "this project's prepared folder: TFRecord shards, products.jsonl, "
            "vocab.txt, categories.json and manifest.json. A malformed row stops "
            "the import with its file, row and column; nothing is left half-written."
        ),
    )
    p.add_argument("--schema", choices=SCHEMA_NAMES, help="the released TSV schema")
    p.add_argument(
        "--in",
        dest="source",
        type=Path,
        help="a TSV file or a .list_csv listing them",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder (prepared data, or a run folder with --checkpoint)",
    )
    p.add_argument(
        "--vocab", type=Path, help="vocab.txt of the release (bert-base-uncased)"
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="a released checkpoint prefix (model.ckpt-54198, kaleidobert.ckpt-50683)",
    )
    p.add_argument(
        "--config",
        help="with --checkpoint: the model config (fashion_bert/pretrain_released)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --checkpoint: override a config value",
    )
    p.add_argument(
        "--records-per-shard", type=int, default=1024, help="image records per shard"
    )
    p.add_argument(
        "--overwrite",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="replace an existing --out folder",
    )
    return p


def run(args: argparse.Namespace) -> int:
    if args.checkpoint is not None:
        return _run_checkpoint(args)
    missing = [
        flag
        for flag, value in (
            ("--schema", args.schema),
            ("--in", args.source),
            ("--vocab", args.vocab),
        )
        if value is None
    ]
    if missing:
        raise ConfigError(
            f"import-easytransfer needs {', '.join(missing)} to convert TSV files "
            "(or --checkpoint and --config to convert a checkpoint)"
        )
    from data_prep.easytransfer_import import import_easytransfer

    summary = import_easytransfer(
        args.schema,
        args.source,
        args.out,
        args.vocab,
        records_per_shard=args.records_per_shard,
        overwrite=args.overwrite,
        progress=progress_enabled(args),
        command="kaleido-tf " + shlex.join(getattr(args, "argv", [])),
        log=log,
    )
    print(f"manifest: {summary['manifest']}")
    print(f"counts: {summary['counts']}")
    return 0


def _run_checkpoint(args: argparse.Namespace) -> int:
    import kaleido_tf
    from kaleido_tf.checkpoints.easytransfer import write_run_folder

    if args.config is None:
        raise ConfigError(
            "--checkpoint needs --config: fashion_bert/pretrain_released for "
            "model.ckpt-54198, kaleido_bert/pretrain_released for "
            "kaleidobert.ckpt-50683"
        )
    config = kaleido_tf.load_config(args.config, args.set)
    report = write_run_folder(config, args.checkpoint, args.out)
    print(report.format())
    print(f"run folder: {args.out}")
    return 0
