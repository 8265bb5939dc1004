"""``kaleido-tf synth``: a synthetic dataset in the Fashion-Gen HDF5 layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from kaleido_tf.cli.progress import progress_enabled
from kaleido_tf.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "synth",
        help="write a synthetic Fashion-Gen-format dataset (train + validation .h5)",
        description=(
            "Procedurally drawn garments whose descriptions are true of the images, "
            "in the exact Fashion-Gen HDF5 layout, with ground-truth word -> region "
            "masks in side files."
        ),
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--products", type=int, default=200, help="training products")
    p.add_argument(
        "--validation-products",
        type=int,
        default=None,
        help="validation products (default: 12.5%% of --products, as Fashion-Gen)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args: argparse.Namespace) -> int:
    from data_prep.synthetic.fashiongen_writer import write_synthetic_fashiongen

    if args.products < 1:
        raise ConfigError(f"--products must be >= 1, got {args.products}")
    if args.validation_products is not None and args.validation_products < 1:
        raise ConfigError("--validation-products must be >= 1")
    args.out.mkdir(parents=True, exist_ok=True)
    result = write_synthetic_fashiongen(
        args.out,
        num_products=args.products,
        seed=args.seed,
        num_validation_products=args.validation_products,
        progress=progress_enabled(args),
    )
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0
