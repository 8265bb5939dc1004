"""``kaleido-tf finetune``: a downstream task from a pretraining run (§4.2).

Uses the pretraining command's trainer (MirroredStrategy, resume, TensorBoard,
progress bar); the task decides the heads, losses and batches
(``kaleido_tf/finetuning/``).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from kaleido_tf.cli.progress import log
from kaleido_tf.cli.training_run import add_training_arguments
from kaleido_tf.errors import ConfigError, DataError

TASKS = ("retrieval", "category", "subcategory", "captioning")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a pretrained model (retrieval, category, captioning...)",
        description=(
            "Trains a downstream task from a `kaleido-tf pretrain` run (--init-from), "
            "whose model section it takes. Rerunning the same command resumes; "
            "SIGTERM saves a checkpoint and exits with status 143; TF_CONFIG with "
            "several workers runs MultiWorkerMirroredStrategy, as pretrain does."
        ),
    )
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument(
        "--config",
        help="name under configs/ or a YAML path (default: "
        "kaleido_bert/finetune_<task>)",
    )
    add_training_arguments(
        p,
        "a pretraining run folder (its latest checkpoint) or a checkpoint "
        "prefix; omit only to train from scratch",
    )
    return p


# ExperimentConfig fields that belong to one system (None for the others).
SYSTEM_SECTIONS = ("fashion_bert", "image_bert", "inter_bert", "commerce_mm")


def resolve_config(args: argparse.Namespace):
    """The fine-tuning config: file, the init run's model section, --set, classes."""
    import kaleido_tf
    from kaleido_tf.checkpoints.trained_model import CONFIG_FILE, run_config

    name = args.config or f"kaleido_bert/finetune_{args.task}"
    overrides = list(args.set)
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    config = kaleido_tf.load_config(name, overrides)
    if config.finetune is None or config.finetune.task != args.task:
        found = None if config.finetune is None else config.finetune.task
        raise ConfigError(
            f"{name}: finetune.task is {found!r} but --task is {args.task!r}"
        )
    init = args.init_from
    run_dir = init if init is not None and init.is_dir() else None
    if init is not None and run_dir is None:
        run_dir = init.parent.parent  # RUN/checkpoints/ckpt-N
    if run_dir is not None and (run_dir / CONFIG_FILE).is_file():
        pretrained = run_config(run_dir)
        if pretrained.model != config.model:
            log(f"model section taken from {run_dir / CONFIG_FILE}")
        # The system sections shape the network too (ImageBERT's region embedding,
        # InterBERT's streams, CommerceMM's image encoder and K): the run's.
        sections = {
            f.name: getattr(pretrained, f.name)
            for f in dataclasses.fields(pretrained)
            if f.name in SYSTEM_SECTIONS
        }
        config = dataclasses.replace(
            config, system=pretrained.system, model=pretrained.model, **sections
        )
    if args.task in ("category", "subcategory") and config.finetune.num_classes == 0:
        config = dataclasses.replace(
            config,
            finetune=dataclasses.replace(
                config.finetune, num_classes=count_classes(args.data, args.task)
            ),
        )
    return config, name


def count_classes(data_dir: Path, task: str) -> int:
    """Classes of ``task`` in the data's ``categories.json``."""
    import json

    path = Path(data_dir) / "categories.json"
    try:
        names = json.loads(path.read_text(encoding="utf-8"))[task]
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path}: cannot read the {task} list ({err})") from None
    return len(names)


def run(args: argparse.Namespace) -> int:
    from kaleido_tf.cli.training_run import fit_and_report
    from kaleido_tf.training.trainer import Trainer

    config, name = resolve_config(args)
    trainer = Trainer(
        config,
        args.data,
        args.model_dir,
        init_checkpoint=args.init_from,
        argv=["kaleido-tf", *args.argv],
    )
    if trainer.init_report is not None:
        log(trainer.init_report.summary())
    elif trainer.resumed_from is None:
        log("no --init-from: every weight starts from its initialiser")
    return fit_and_report(
        trainer, args, f"{config.system} fine-tuning: {args.task} ({name})"
    )
