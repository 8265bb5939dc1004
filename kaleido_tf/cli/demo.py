"""``kaleido-tf demo``: the pipeline end to end on the synthetic fashion set.

Writes a synthetic Fashion-Gen-format dataset whose descriptions truly describe its
images, converts both splits with the small demo backbone (with a picture of the
kaleido patches), trains the AAG captioner and stores token-patch pairs (with a
picture of one image's alignment), pretrains a tiny Kaleido-BERT on CPU (losses and
ITM accuracy before and after, loss curves), scores it zero-shot on retrieval lists
drawn from the validation products (Kaleido-BERT Table 2 layout), and exports a
SavedModel for TF Serving.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from kaleido_tf.cli.progress import log, progress_enabled
from kaleido_tf.errors import ConfigError, KaleidoError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="the whole pipeline on a synthetic fashion set, on CPU, in minutes",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    p.add_argument("--products", type=int, default=120, help="training products")
    p.add_argument(
        "--validation-products",
        type=int,
        default=101,
        help="validation products (101: 1 positive + 100 negatives per query)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--config", default="demo_kaleido", help="data config (default demo_kaleido)"
    )
    p.add_argument(
        "--align-steps",
        type=int,
        default=750,
        help="AAG captioner training steps (0 skips alignment: AGM masks randomly)",
    )
    p.add_argument(
        "--pretrain-steps",
        type=int,
        default=600,
        help="pretraining steps of the tiny model (0 skips pretraining and after)",
    )
    p.add_argument(
        "--queries",
        type=int,
        default=100,
        help="retrieval queries per direction (0 skips retrieval)",
    )
    p.add_argument(
        "--no-export", action="store_true", help="skip the SavedModel export"
    )
    return p


def _cli(argv: list[str]) -> None:
    """Runs another ``kaleido-tf`` command in-process; its errors stop the demo."""
    from kaleido_tf.cli.main import main

    status = main(argv)
    if status != 0:
        raise KaleidoError(f"`kaleido-tf {shlex.join(argv)}` failed (status {status})")


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
    if args.validation_products < 2:
        raise ConfigError("--validation-products must be >= 2")
    quiet = [] if progress_enabled(args) else ["--quiet"]
    started = time.time()
    raw = args.out / "fashiongen"
    raw.mkdir(parents=True, exist_ok=True)
    log(f"[1/7] synthetic Fashion-Gen set -> {raw}")
    synth = write_synthetic_fashiongen(
        raw,
        num_products=args.products + args.validation_products,
        seed=args.seed,
        num_validation_products=args.validation_products,
        progress=progress_enabled(args),
    )
    config, source = load_prepare_config(args.config, [])
    prepared = {s: args.out / "prepared" / s for s in ("train", "validation")}
    for step, split in ((2, "train"), (3, "validation")):
        log(f"[{step}/7] prepare {split} -> {prepared[split]}")
        prepare(
            PrepareRequest(
                h5_path=raw / f"fashiongen_256_256_{split}.h5",
                out_dir=prepared[split],
                config=config,
                backbone_weights=None,
                vocab_path=None
                if split == "train"
                else prepared["train"] / "vocab.txt",
                categories_path=(
                    None if split == "train" else prepared["train"] / "categories.json"
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
            prepared[split],
            picture=picture if split == "train" else None,
            count=5,
        )
    pictures = [picture]
    if args.align_steps > 0:
        pictures.append(_align(args, prepared, quiet))
    if args.pretrain_steps > 0:
        pictures.append(_pretrain(args, log))
        if args.queries > 0:
            _retrieval(args, prepared["validation"], quiet)
        if not args.no_export:
            _export(args, prepared["train"], quiet)
    print()
    print(
        f"demo finished in {time.time() - started:.0f} s; look at "
        + ", ".join(str(p) for p in pictures)
    )
    return 0


def _align(args: argparse.Namespace, prepared: dict[str, Path], quiet) -> Path:
    """AAG: train the SAT captioner, store pairs in both splits, draw one image."""
    import json

    model_dir = args.out / "aag"
    print()
    log(f"[4/7] AAG captioner ({args.align_steps} steps) -> {model_dir}")
    _cli(
        ["align", "train", "--data", str(prepared["train"])]
        + ["--model-dir", str(model_dir), "--config", "sat_demo"]
        + ["--set", f"train.train_steps={args.align_steps}"]
        + ["--backbone-weights", "none", "--seed", str(args.seed), *quiet]
    )
    for split in ("train", "validation"):
        _cli(
            ["align", "extract", "--data", str(prepared[split])]
            + ["--model-dir", str(model_dir), *quiet]
        )
    first = prepared["validation"] / "products.jsonl"
    product = json.loads(first.read_text(encoding="utf-8").splitlines()[0])
    picture = args.out / "alignment_example.png"
    image = f"{product['product_id']}_1"
    _cli(
        ["align", "show", "--data", str(prepared["validation"]), "--image", image]
        + ["--out", str(picture)]
    )
    return picture


def _retrieval(args: argparse.Namespace, validation: Path, quiet) -> None:
    """Zero-shot ITR/TIR of the pretrained model on lists of validation products."""
    lists = args.out / "retrieval_lists.json"
    negatives = min(100, args.validation_products - 1)
    queries = min(args.queries, args.validation_products)
    print()
    log(
        f"[6/7] zero-shot retrieval: {queries} queries x (1 + {negatives}) candidates "
        f"per direction (chance Rank@1 = {100 / (negatives + 1):.1f}%)"
    )
    if not lists.is_file():
        _cli(
            ["evaluate", "build-lists", "--data", str(validation)]
            + ["--out", str(lists), "--queries", str(queries)]
            + ["--negatives", str(negatives), "--seed", str(args.seed), *quiet]
        )
    _cli(
        ["evaluate", "retrieval", "--model-dir", str(args.out / "pretrain")]
        + ["--data", str(validation), "--lists", str(lists)]
        + ["--out", str(args.out / "retrieval"), "--label", "demo", *quiet]
    )


def _export(args: argparse.Namespace, train: Path, quiet) -> None:
    """The pretrained model's ITM head as a TF Serving SavedModel."""
    out = args.out / "saved_model" / "retrieval"
    print()
    log(f"[7/7] export the retrieval SavedModel -> {out}")
    _cli(
        ["export", "--model-dir", str(args.out / "pretrain"), "--task", "retrieval"]
        + ["--data", str(train), "--out", str(out), "--overwrite", *quiet]
    )


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
        f"[5/7] pretrain a tiny Kaleido-BERT for {args.pretrain_steps} steps -> "
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
