"""What ``pretrain`` and ``finetune`` do once their Trainer is built: train, then
report (preemption exit status, chief-only outputs, loss curves)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kaleido_tf.cli.progress import log


def add_training_arguments(
    p: argparse.ArgumentParser,
    init_help: str,
    data_required: bool = True,
    data_help: str = "a `kaleido-tf prepare` output folder (training split)",
) -> None:
    """``--set``, ``--data``, ``--model-dir``, ``--init-from``, ``--seed``: the
    arguments ``pretrain`` and ``finetune`` share (``--init-from`` means what
    ``init_help`` says; ``--data`` is optional unless ``data_required``)."""
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--data",
        "--data-dir",
        dest="data",
        required=data_required,
        type=Path,
        help=data_help,
    )
    p.add_argument("--model-dir", required=True, type=Path)
    p.add_argument("--init-from", type=Path, help=init_help)
    p.add_argument("--seed", type=int, help="overrides train.seed")


def fit_and_report(trainer, args: argparse.Namespace, title: str) -> int:
    """Trains to the end of the schedule and prints where the results are.

    Args:
        trainer: A built ``training.trainer.Trainer``; its ``model_dir`` receives
            the loss-curve picture.
        args: The command's arguments (``quiet``).
        title: Title of the loss-curve picture.

    Returns:
        The exit status: ``PREEMPTED_EXIT`` after SIGTERM (checkpoint saved; the
        same command resumes), else 0.
    """
    from kaleido_tf.training.loss_curves import plot_loss_curves
    from kaleido_tf.training.trainer import PREEMPTED_EXIT, read_history

    config = trainer.config
    log(
        f"{title}: {trainer.plan.total_steps} steps "
        f"({trainer.plan.steps_per_epoch} per epoch), global batch "
        f"{config.train.global_batch_size} on {trainer.strategy.num_replicas_in_sync} "
        "replica(s)"
    )
    trainer.fit(progress=not args.quiet, log=log)
    if trainer.preempted:
        return PREEMPTED_EXIT
    if not trainer.is_chief:
        return 0  # only the chief writes the model directory
    picture = plot_loss_curves(
        read_history(trainer.model_dir), trainer.model_dir / "loss_curves.png", title
    )
    print(f"checkpoints: {trainer.manager.latest_checkpoint}")
    print(f"loss curves: {picture}")
    return 0
