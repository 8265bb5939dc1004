"""``kaleido-tf demo``: the pipeline end to end on the synthetic fashion set.

Writes a synthetic Fashion-Gen-format dataset, converts both splits with the small
demo backbone, prints what was built (with a picture of the kaleido patches), then
pretrains a tiny Kaleido-BERT for a few minutes on CPU and prints the per-task losses
and ITM accuracy before and after, with a loss-curve picture.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from kaleido_tf.cli.progress import log, progress_enabled
from kaleido_tf.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="synthetic Fashion-Gen set -> prepared TFRecords, in a few minutes",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    p.add_argument("--products", type=int, default=120, help="training products")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--config", default="demo_kaleido", help="data config (default demo_kaleido)"
    )
    p.add_argument(
        "--pretrain-steps",
        type=int,
        default=600,
        help="pretraining steps of the tiny model (0 skips pretraining)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from data_prep.pipeline import PrepareRequest, prepare
    from data_prep.synthetic.fashiongen_writer import write_synthetic_fashiongen
    from kaleido_tf.cli.inspect import describe_data
    from kaleido_tf.cli.prepare import load_prepare_config

    if args.pretrain_steps > 0 and args.products < 16:
        raise ConfigError(
            f"--products {args.products} is too few to pretrain (ITM negatives need "
            "several products per split): use --products 16 or more, or "
            "--pretrain-steps 0"
        )
    started = time.time()
    raw = args.out / "fashiongen"
    raw.mkdir(parents=True, exist_ok=True)
    log(f"[1/3] synthetic Fashion-Gen set -> {raw}")
    synth = write_synthetic_fashiongen(
        raw, num_products=args.products, seed=args.seed, progress=progress_enabled(args)
    )
    config, source = load_prepare_config(args.config, [])
    summaries = {}
    train_out = args.out / "prepared" / "train"
    for step, split in ((2, "train"), (3, "validation")):
        out = args.out / "prepared" / split
        log(f"[{step}/3] prepare {split} -> {out}")
        summaries[split] = prepare(
            PrepareRequest(
                h5_path=raw / f"fashiongen_256_256_{split}.h5",
                out_dir=out,
                config=config,
                backbone_weights=None,
                vocab_path=None if split == "train" else train_out / "vocab.txt",
                categories_path=(
                    None if split == "train" else train_out / "categories.json"
                ),
                seed=args.seed,
                progress=progress_enabled(args),
                command=shlex.join(["kaleido-tf", *args.argv]),
                config_source=source,
            ),
            log=log,
        )
    print()
    print(f"synthetic data: {raw}")
    for key, value in synth.items():
        print(f"  {key}: {value}")
    picture = args.out / "prepared_samples.png"
    for split in ("train", "validation"):
        print()
        describe_data(
            args.out / "prepared" / split,
            picture=picture if split == "train" else None,
            count=5,
        )
    pictures = [picture]
    if args.pretrain_steps > 0:
        pictures.append(_pretrain(args, log))
    print()
    print(
        f"demo finished in {time.time() - started:.0f} s; look at "
        + " and ".join(str(p) for p in pictures)
    )
    return 0


def _pretrain(args: argparse.Namespace, log) -> Path:
    import kaleido_tf
    from kaleido_tf.evaluation.pretraining import evaluate_pretraining
    from kaleido_tf.training.loss_curves import plot_loss_curves
    from kaleido_tf.training.trainer import Trainer, read_history

    train = args.out / "prepared" / "train"
    validation = args.out / "prepared" / "validation"
    model_dir = args.out / "pretrain"
    config = kaleido_tf.load_config(
        "kaleido_bert/demo",
        [
            f"train.max_steps={args.pretrain_steps}",
            f"train.seed={args.seed}",
            # The config's 20 warm-up steps, shortened for very short demo runs.
            f"train.optimizer.warmup_steps={min(20, args.pretrain_steps // 10)}",
        ],
    )
    print()
    log(
        f"[4/4] pretrain a tiny Kaleido-BERT for {args.pretrain_steps} steps -> "
        f"{model_dir}"
    )
    trainer = Trainer(config, train, model_dir, argv=["kaleido-tf", *args.argv])
    held_out_seed = config.train.seed + 1000

    def measure():
        return (
            evaluate_pretraining(trainer.model, config, validation),
            evaluate_pretraining(trainer.model, config, train, seed=held_out_seed),
        )

    before = measure()
    trainer.fit(progress=not args.quiet, log=log)
    after = measure()
    picture = plot_loss_curves(
        read_history(model_dir),
        model_dir / "loss_curves.png",
        "tiny Kaleido-BERT on the synthetic set (kaleido_bert/demo)",
    )
    print()
    print(
        f"tiny Kaleido-BERT ({config.model.encoder.num_layers} layers, "
        f"H={config.model.encoder.hidden_size}), {trainer.step} steps of "
        f"{config.train.global_batch_size} pairs:"
    )
    print(f"{'':32s} {'before':>10s} {'after':>10s}")
    keys = [k for k in after[0] if k.endswith("_loss")]
    for key in keys:
        print(f"  validation {key:21s} {before[0][key]:10.4f} {after[0][key]:10.4f}")
    for key in [k for k in after[0] if k.endswith("_accuracy")]:
        print(f"  validation {key:21s} {before[0][key]:10.4f} {after[0][key]:10.4f}")
    print(
        f"  {'train, new negatives itm_acc.':32s} {before[1]['itm_accuracy']:10.4f} "
        f"{after[1]['itm_accuracy']:10.4f}"
    )
    print(
        "  (validation = products never seen in training; 'new negatives' = the "
        "training images paired with texts drawn by another seed)"
    )
    return picture
