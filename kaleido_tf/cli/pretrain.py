"""``kaleido-tf pretrain``: pretrain a system on prepared TFRecords."""

from __future__ import annotations

import argparse

from kaleido_tf.cli.training_run import add_training_arguments


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
    add_training_arguments(
        p,
        "Google BERT directory (bert_config.json, bert_model.ckpt, vocab.txt) "
        "or a released EasyTransfer checkpoint prefix (model.ckpt-54198)",
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
    trainer = Trainer(
        config,
        args.data,
        args.model_dir,
        init_from=args.init_from,
        argv=["kaleido-tf", *args.argv],
    )
    if trainer.bert_report is not None:
        print(trainer.bert_report.format())
    return fit_and_report(trainer, args, f"{config.system} pretraining ({args.config})")
