"""``kaleido-tf align {train,extract,show}``: the Attention-based Alignment Generator.

Kaleido-BERT §3.3: a Show-Attend-and-Tell captioner trained on the prepared training
split (``train``); its per-word attention turned into token-patch pairs stored in the
records of a prepared folder (``extract``); a picture of one image's alignment
(``show``).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from kaleido_tf.cli.progress import log, progress_enabled
from kaleido_tf.errors import ConfigError

DEFAULT_CONFIG = "sat_fashiongen"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def _config_flags(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument(
        "--config",
        default=default,
        help="name under configs/align/ or a YAML path"
        + (f" (default: {default})" if default else " (default: the model folder's)"),
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.train_steps=2000",
    )


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "align",
        help="AAG: train the SAT captioner, extract token-patch pairs, show them",
        description=(
            "The Attention-based Alignment Generator of Kaleido-BERT (§3.3): a "
            "Show-Attend-and-Tell captioner whose per-word attention gives "
            "<token, kaleido patch> pairs for alignment-guided masking."
        ),
    )
    what = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    t = what.add_parser(
        "train",
        help="train (or resume) the captioner on a prepared training split",
        description="Trains the SAT captioner; checkpoints and resumes in --model-dir.",
    )
    t.add_argument("--data", required=True, type=Path, help="prepared training split")
    t.add_argument("--model-dir", required=True, type=Path, help="captioner folder")
    _config_flags(t, DEFAULT_CONFIG)
    t.add_argument(
        "--backbone-weights",
        required=True,
        help="local .h5 weights of the encoder backbone without its top, or 'none' "
        "for random weights (demo and tests only)",
    )
    t.add_argument("--seed", type=int, default=0, help="batch order and random init")
    t.add_argument(
        "--source-h5",
        type=Path,
        help="the .h5 the data was prepared from (default: the path in its manifest)",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a captioner folder trained with other settings",
    )
    _common(t)

    e = what.add_parser(
        "extract",
        help="caption every image of a prepared folder and store its pairs",
        description=(
            "Rewrites each shard with align_word_index / align_patch_index / "
            "align_score filled; resumable per shard; records the captioner in "
            "manifest.json. The encoder weights come from the captioner checkpoint."
        ),
    )
    e.add_argument("--data", required=True, type=Path, help="prepared folder")
    e.add_argument("--model-dir", required=True, type=Path, help="captioner folder")
    e.add_argument("--checkpoint", type=Path, help="checkpoint prefix (default: last)")
    _config_flags(e, None)
    e.add_argument("--source-h5", type=Path, help="the .h5 the data was prepared from")
    e.add_argument(
        "--num-workers",
        type=int,
        default=1,
        help="machines sharing the shards (shard i goes to worker i %% K)",
    )
    e.add_argument("--worker-index", type=int, default=0, help="this worker, 0..K-1")
    _common(e)

    s = what.add_parser(
        "show",
        help="picture of one image: crop, caption, attention, aligned patches",
        description=(
            "Captions one image again with the captioner and draws its kaleido "
            "grid, the caption, and each aligned word's attention and patches."
        ),
    )
    s.add_argument("--data", required=True, type=Path, help="prepared folder")
    s.add_argument("--image", required=True, help="image id, '<product id>_<pose>'")
    s.add_argument("--out", required=True, type=Path, help="output .png")
    s.add_argument(
        "--model-dir",
        type=Path,
        help="captioner folder (default: the one recorded by `align extract`)",
    )
    s.add_argument("--checkpoint", type=Path, help="checkpoint prefix")
    _config_flags(s, None)
    s.add_argument("--source-h5", type=Path, help="the .h5 the data was prepared from")
    _common(s)
    return p


def load_alignment_config(name_or_path: str, overrides: list[str]):
    """Resolves ``--config`` (under ``configs/align/``) and ``--set``."""
    from kaleido_tf.config.alignment import AlignmentConfig
    from kaleido_tf.config.loader import load_dataclass, resolve_config_path

    path = resolve_config_path(name_or_path, "align")
    return load_dataclass(AlignmentConfig, path, overrides), str(path)


def _model_config(args: argparse.Namespace, model_dir: Path | None):
    """``--config`` if given, else the model folder's resolved config.yaml."""
    if args.config is not None:
        return load_alignment_config(args.config, args.set)
    if model_dir is not None:
        from data_prep.alignment.trainer import CONFIG_FILE

        path = model_dir / CONFIG_FILE
        if path.is_file():
            return load_alignment_config(str(path), args.set)
    return load_alignment_config(DEFAULT_CONFIG, args.set)


def _command(args: argparse.Namespace) -> str:
    return shlex.join(["kaleido-tf", *args.argv])


def run(args: argparse.Namespace) -> int:
    if args.action == "train":
        return _train(args)
    if args.action == "extract":
        return _extract(args)
    return _show(args)


def _train(args: argparse.Namespace) -> int:
    from data_prep.alignment.trainer import TrainRequest, train_captioner

    config, source = load_alignment_config(args.config, args.set)
    if args.backbone_weights.strip().lower() == "none":
        weights = None
    else:
        weights = Path(args.backbone_weights)
        if not weights.is_file():
            raise ConfigError(
                f"--backbone-weights {weights}: no such file; give the local notop "
                f".h5 of {config.encoder.name}, or 'none' for random weights"
            )
    summary = train_captioner(
        TrainRequest(
            data_dir=args.data,
            model_dir=args.model_dir,
            config=config,
            backbone_weights=weights,
            seed=args.seed,
            progress=progress_enabled(args),
            overwrite=args.overwrite,
            source_h5=args.source_h5,
            command=_command(args),
            config_source=source,
        ),
        log=log,
    )
    for key, value in summary.items():
        print(f"{key}: {value}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from data_prep.alignment.extract import ExtractRequest, extract_alignments

    config, source = _model_config(args, args.model_dir)
    summary = extract_alignments(
        ExtractRequest(
            data_dir=args.data,
            model_dir=args.model_dir,
            config=config,
            checkpoint=args.checkpoint,
            source_h5=args.source_h5,
            progress=progress_enabled(args),
            command=_command(args),
            config_source=source,
            num_workers=args.num_workers,
            worker_index=args.worker_index,
        ),
        log=log,
    )
    for key, value in summary.items():
        print(f"{key}: {value}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from data_prep.alignment.show import show_alignment
    from kaleido_tf.manifest import read_manifest

    model_dir = args.model_dir
    checkpoint = args.checkpoint
    if model_dir is None:
        entry = read_manifest(args.data).get("alignment")
        if entry is None:
            raise ConfigError(
                f"{args.data}/manifest.json names no captioner (run `kaleido-tf align "
                "extract` on it first) and no --model-dir was given"
            )
        model_dir = Path(entry["captioner"]["model_dir"])
        checkpoint = checkpoint or Path(entry["captioner"]["checkpoint"])
    config, _ = _model_config(args, model_dir)
    out = show_alignment(
        args.data,
        model_dir,
        args.image,
        args.out,
        config,
        checkpoint=checkpoint,
        source_h5=args.source_h5,
    )
    print(f"wrote {out}")
    return 0
