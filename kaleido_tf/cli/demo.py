"""``kaleido-tf demo``: the whole offline pipeline on the synthetic fashion set.

Writes a synthetic Fashion-Gen-format dataset, converts both splits with the small
demo backbone, and prints what was built, with a picture of the kaleido patches.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from kaleido_tf.cli.progress import log, progress_enabled


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
    return p


def run(args: argparse.Namespace) -> int:
    from data_prep.synthetic.fashiongen_writer import write_synthetic_fashiongen

    from data_prep.pipeline import PrepareRequest, prepare
    from kaleido_tf.cli.inspect import describe_data
    from kaleido_tf.cli.prepare import load_prepare_config

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
    print()
    print(f"demo finished in {time.time() - started:.0f} s; look at {picture}")
    return 0
