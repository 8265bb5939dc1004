"""``kaleido-tf pretrain``: pretrain a system on prepared TFRecords."""

from __future__ import annotations

import argparse
from pathlib import Path

from kaleido_tf.cli.progress import log


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
            "saves a checkpoint at the step reached and exits with status 143."
        ),
    )
    p.add_argument(
        "--config",
        default="kaleido_bert/pretrain",
        help="name under configs/ (e.g. kaleido_bert/pretrain) or a YAML path",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--data",
        "--data-dir",
        dest="data",
        required=True,
        type=Path,
        help="a `kaleido-tf prepare` output folder (training split)",
    )
    p.add_argument("--model-dir", required=True, type=Path)
    p.add_argument(
        "--init-from",
        type=Path,
        help="Google BERT directory (bert_config.json, bert_model.ckpt, vocab.txt)",
    )
    p.add_argument("--seed", type=int, help="overrides train.seed")
    return p


def run(args: argparse.Namespace) -> int:
    import kaleido_tf
    from kaleido_tf.training.loss_curves import plot_loss_curves
    from kaleido_tf.training.trainer import PREEMPTED_EXIT, Trainer, read_history

    overrides = list(args.set)
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    config = kaleido_tf.load_config(args.config, overrides)
    trainer = Trainer(
        config,
        args.data,
        args.model_dir,
        init_from=args.init_from,
        argv=["kaleido-tf", *args.argv],
    )
    if trainer.bert_report is not None:
        print(trainer.bert_report.format())
    log(
        f"{config.system}: {trainer.plan.total_steps} steps "
        f"({trainer.plan.steps_per_epoch} per epoch), global batch "
        f"{config.train.global_batch_size} on {trainer.strategy.num_replicas_in_sync} "
        "replica(s)"
    )
    trainer.fit(progress=not args.quiet, log=log)
    if trainer.preempted:
        return PREEMPTED_EXIT  # checkpoint saved; the same command resumes
    if not trainer.is_chief:
        return 0  # only the chief writes the model directory
    picture = plot_loss_curves(
        read_history(args.model_dir),
        args.model_dir / "loss_curves.png",
        f"{config.system} pretraining ({args.config})",
    )
    print(f"checkpoints: {trainer.manager.latest_checkpoint}")
    print(f"loss curves: {picture}")
    return 0
