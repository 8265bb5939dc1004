"""``kaleido-tf pretrain``: pretrain a system on prepared TFRecords."""

from __future__ import annotations

import argparse
from pathlib import Path

from kaleido_tf.cli.training_run import add_training_arguments
from kaleido_tf.errors import ConfigError


def stage_data_argument(text: str) -> tuple[str, Path]:
    """Parses ``--stage-data KEY=DIR``."""
    key, sep, folder = text.partition("=")
    if not sep or not key or not folder:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not KEY=DIR (a stage's data key and its prepared folder)"
        )
    return key, Path(folder)


def step_data_argument(text: str) -> tuple[str, Path]:
    """Parses ``--step-data KEY=DIR``."""
    key, sep, folder = text.partition("=")
    if not sep or not key or not folder:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not KEY=DIR (a step type's data key and its folder)"
        )
    return key, Path(folder)


def step_data_folders(args: argparse.Namespace) -> dict[str, Path]:
    """``--step-data`` and ``--omni-data`` as data key -> folder."""
    pairs = list(args.step_data)
    if args.omni_data is not None:
        pairs.append(("omni", args.omni_data))
    folders: dict[str, Path] = {}
    for key, folder in pairs:
        if key in folders and folders[key] != folder:
            raise ConfigError(
                f"the data of step type key {key} is given twice ({folders[key]} "
                f"and {folder}): give it once"
            )
        folders[key] = folder
    return folders


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "pretrain",
        help="pretrain on a prepared folder (MirroredStrategy; resumes)",
        description=(
            "Trains under MirroredStrategy over every visible GPU (the CPU when "
            "none), or MultiWorkerMirroredStrategy when TF_CONFIG names several "
            "workers (run the same command on each; only the chief writes "
            "--model-dir, which every worker must be able to read). Rerunning the "
            "same command resumes from the last checkpoint. SIGTERM (preemption) "
            "saves a checkpoint at the step reached and exits with status 143. "
            "With train.stages in the config, the stages run in order in "
            "--model-dir/stage_<i>_<name>/, each from the previous stage's "
            "weights with a fresh optimizer; a rerun skips finished stages."
        ),
    )
    p.add_argument(
        "--config",
        default="kaleido_bert/pretrain",
        help="name under configs/ (e.g. kaleido_bert/pretrain) or a YAML path",
    )
    add_training_arguments(
        p,
        "Google BERT directory (bert_config.json, bert_model.ckpt, vocab.txt) "
        "or a released EasyTransfer checkpoint prefix (model.ckpt-54198); with "
        "train.stages, it starts stage 1",
        data_required=False,
        data_help=(
            "a `kaleido-tf prepare` output folder (training split); required "
            "unless the config has train.stages, whose data paths are relative "
            "to it"
        ),
    )
    p.add_argument(
        "--stage-data",
        action="append",
        default=[],
        type=stage_data_argument,
        metavar="KEY=DIR",
        help="the prepared folder of the stages whose data is KEY (repeatable)",
    )
    p.add_argument(
        "--step-data",
        action="append",
        default=[],
        type=step_data_argument,
        metavar="KEY=DIR",
        help=(
            "the folder of a system's step type whose data is KEY (repeatable); "
            "--data is the main one (CommerceMM: the prepare-pixels folder)"
        ),
    )
    p.add_argument(
        "--omni-data",
        type=Path,
        metavar="DIR",
        help=(
            "CommerceMM: the `kaleido-tf prepare-omni` folder of the Omni-Retrieval "
            "steps (= --step-data omni=DIR); required when "
            "commerce_mm.omni_step_probability > 0"
        ),
    )
    return p


def run(args: argparse.Namespace) -> int:
    import kaleido_tf
    from kaleido_tf.cli.training_run import fit_and_report
    from kaleido_tf.training.trainer import Trainer

    overrides = list(args.set)
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    config = kaleido_tf.load_config(args.config, overrides)
    step_data = step_data_folders(args)
    if config.train.stages:
        if step_data:
            raise ConfigError(
                "--step-data / --omni-data are not read by multi-stage configs "
                "(train.stages): run each stage's config on its own"
            )
        return run_stages(args, config)
    if args.stage_data:
        raise ConfigError(
            f"--stage-data given but {args.config} has no train.stages: drop it "
            "or use a multi-stage config"
        )
    if args.data is None:
        raise ConfigError(
            f"--data is required: {args.config} has no train.stages; give the "
            "`kaleido-tf prepare` output folder"
        )
    trainer = Trainer(
        config,
        args.data,
        args.model_dir,
        init_from=args.init_from,
        argv=["kaleido-tf", *args.argv],
        step_data=step_data,
    )
    if trainer.bert_report is not None:
        print(trainer.bert_report.format())
    return fit_and_report(trainer, args, f"{config.system} pretraining ({args.config})")


def run_stages(args: argparse.Namespace, config) -> int:
    """The stages of ``config.train.stages``, in order (``training/multi_stage``)."""
    from kaleido_tf.cli.progress import log
    from kaleido_tf.cli.training_run import fit_and_report
    from kaleido_tf.training import multi_stage
    from kaleido_tf.training.trainer import PREEMPTED_EXIT

    stage_data = {}
    for key, folder in args.stage_data:
        if key in stage_data and stage_data[key] != folder:
            raise ConfigError(
                f"--stage-data {key} given twice ({stage_data[key]} and {folder}): "
                "give each key once"
            )
        stage_data[key] = folder

    def fit(trainer) -> None:
        title = f"{config.system} pretraining ({args.config}), {trainer.model_dir.name}"
        fit_and_report(trainer, args, title)

    result = multi_stage.run_stages(
        config,
        args.model_dir,
        data_dir=args.data,
        stage_data=stage_data,
        init_from=args.init_from,
        argv=["kaleido-tf", *args.argv],
        fit=fit,
        log=log,
    )
    if result.preempted:
        return PREEMPTED_EXIT
    for row in result.stages:
        print(f"{row['dir']}: {row['status']} at step {row['step']}")
    print(f"stages: {args.model_dir / multi_stage.STAGES_FILE}")
    return 0
