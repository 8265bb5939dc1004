"""Writes the synthetic data set in the exact Fashion-Gen HDF5 layout.

``fashiongen_256_256_{train,validation}.h5`` hold one row per image, the rows of a
product contiguous (pose after pose), with the same keys, shapes and dtypes as the
real Fashion-Gen files. ``..._word_regions.h5`` side files hold, for every image
row, the ground-truth mask of each visible content word of its description.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from data_prep.synthetic.garment_renderer import render_product_image
from data_prep.synthetic.product_sampler import (
    ProductSpec,
    sample_product,
    visible_words,
)

IMAGE_SIZE = 256
FIRST_PRODUCT_ID = 100_000
SPLITS = ("train", "validation")
WORD_REGIONS_DESCRIPTION = (
    "Ground-truth image regions of the visible content words of each row's "
    "input_description: row = image row in the main file, word = lower-case word "
    "(punctuation stripped, latin-1), mask = bool [256, 256] pixels it refers to."
)
_TEXT_FIELDS = (
    ("input_description", lambda s: s.description),
    ("input_concat_description", lambda s: concat_description(s)),
    ("input_name", lambda s: s.name),
    ("input_category", lambda s: s.category),
    ("input_subcategory", lambda s: s.subcategory),
    ("input_department", lambda s: s.department),
    ("input_gender", lambda s: s.gender),
    ("input_brand", lambda s: s.brand),
    ("input_composition", lambda s: s.composition),
    ("input_season", lambda s: s.season),
)


def main_file_name(split: str, size: int = IMAGE_SIZE) -> str:
    """``fashiongen_256_256_<split>.h5``."""
    return f"fashiongen_{size}_{size}_{split}.h5"


def word_regions_file_name(split: str, size: int = IMAGE_SIZE) -> str:
    """``fashiongen_256_256_<split>_word_regions.h5``."""
    return f"fashiongen_{size}_{size}_{split}_word_regions.h5"


def concat_description(spec: ProductSpec) -> str:
    """``input_concat_description``: the description followed by attributes."""
    return f"{spec.description} {spec.name}. {spec.composition}."


def _latin1_column(values: list[str]) -> np.ndarray:
    data = [v.encode("latin-1") for v in values]
    width = max([1] + [len(b) for b in data])
    return np.array(data, dtype=f"S{width}").reshape(-1, 1)


def _split_specs(
    seed_seq: np.random.SeedSequence, n: int, first_id: int
) -> Iterator[tuple[ProductSpec, np.random.Generator]]:
    """Products of one split with the RNG of their images (one child seed per
    product, so a product does not depend on the ones before it)."""
    for i, child in enumerate(seed_seq.spawn(n)):
        text_seed, image_seed = child.spawn(2)
        spec = sample_product(np.random.default_rng(text_seed), first_id + i)
        yield spec, np.random.default_rng(image_seed)


def _write_split(
    split: str,
    out_dir: Path,
    products: list[tuple[ProductSpec, np.random.Generator]],
    bar: tqdm,
) -> dict[str, Any]:
    specs = [s for s, _ in products]
    rows = [(s, pose) for s in specs for pose in range(s.num_poses)]
    n_rows = len(rows)
    words_per_row = [visible_words(s) for s, _ in rows]
    n_entries = sum(len(w) for w in words_per_row)
    word_width = max(
        [1] + [len(w.encode("latin-1")) for ws in words_per_row for w in ws]
    )

    final = out_dir / main_file_name(split)
    final_side = out_dir / word_regions_file_name(split)
    tmp = out_dir / f".{final.name}.tmp-{os.getpid()}"
    tmp_side = out_dir / f".{final_side.name}.tmp-{os.getpid()}"
    size = IMAGE_SIZE
    try:
        with h5py.File(tmp, "w") as f, h5py.File(tmp_side, "w") as g:
            images = f.create_dataset(
                "input_image",
                (n_rows, size, size, 3),
                np.uint8,
                chunks=(1, size, size, 3),
                track_times=False,
            )
            for key, get in _TEXT_FIELDS:
                f.create_dataset(
                    key,
                    data=_latin1_column([get(s) for s, _ in rows]),
                    track_times=False,
                )
            f.create_dataset(
                "input_pose",
                data=_latin1_column([f"id_gridfs_{pose + 1}" for _, pose in rows]),
                track_times=False,
            )
            f.create_dataset(
                "input_productID",
                data=np.array([s.product_id for s, _ in rows], np.int64).reshape(-1, 1),
                track_times=False,
            )
            f.create_dataset(
                "input_msrpUSD",
                data=np.array([s.msrp_usd for s, _ in rows], np.float32).reshape(-1, 1),
                track_times=False,
            )
            idx = np.arange(n_rows, dtype=np.int64)
            f.create_dataset("index", data=idx.reshape(-1, 1), track_times=False)
            f.create_dataset("index_2", data=idx, track_times=False)

            g.attrs["description"] = WORD_REGIONS_DESCRIPTION
            g.create_dataset(
                "row",
                data=np.repeat(idx, [len(w) for w in words_per_row]),
                track_times=False,
            )
            g.create_dataset(
                "word",
                data=np.array(
                    [w.encode("latin-1") for ws in words_per_row for w in ws],
                    dtype=f"S{word_width}",
                ).reshape(-1),
                track_times=False,
            )
            masks = g.create_dataset(
                "mask",
                (n_entries, size, size),
                bool,
                chunks=(1, size, size),
                compression="gzip",
                compression_opts=1,
                shuffle=False,
                track_times=False,
            )

            row = 0
            entry = 0
            for spec, rng in products:
                views = [
                    render_product_image(spec, p, rng, size)
                    for p in range(spec.num_poses)
                ]
                images[row : row + len(views)] = np.stack([im for im, _ in views])
                words = visible_words(spec)
                if words:
                    block = np.stack([m[w] for _, m in views for w in words])
                    masks[entry : entry + len(block)] = block
                    entry += len(block)
                row += len(views)
                bar.update(1)
            assert row == n_rows and entry == n_entries
    except BaseException:
        for path in (tmp, tmp_side):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        raise
    return {
        "path": final,
        "word_regions_path": final_side,
        "tmp": tmp,
        "tmp_side": tmp_side,
        "rows": n_rows,
        "products": len(specs),
        "word_region_entries": n_entries,
    }


def write_synthetic_fashiongen(
    out_dir: str | Path,
    num_products: int,
    seed: int,
    num_validation_products: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Writes a synthetic Fashion-Gen data set (train and validation splits).

    Args:
        out_dir: Output folder (created if missing).
        num_products: Products in both splits together.
        seed: Everything is derived from it: the same seed gives byte-identical
            files.
        num_validation_products: Products of the validation split; default
            ``max(1, round(0.125 * num_products))``. The train split gets the rest.
        progress: Show a tqdm progress bar over products on stderr.

    Returns:
        ``{"train": {...}, "validation": {...}, "seed": seed}`` where each split
        has ``path`` and ``word_regions_path`` (str), ``rows`` (images),
        ``products`` and ``word_region_entries`` (ints).

    Raises:
        ValueError: If the split sizes leave a split without products.

    Files are written under temporary names in ``out_dir`` and renamed into place
    only when all four are complete. Product ids are distinct across splits.
    """
    if num_validation_products is None:
        num_validation_products = max(1, round(0.125 * num_products))
    n_val = int(num_validation_products)
    n_train = int(num_products) - n_val
    if n_train < 1 or n_val < 1:
        raise ValueError(
            f"num_products={num_products} with num_validation_products={n_val} leaves "
            "a split without products; both splits need at least one"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_seq, val_seq = np.random.SeedSequence(int(seed)).spawn(2)
    plans = (
        ("train", train_seq, n_train, FIRST_PRODUCT_ID),
        ("validation", val_seq, n_val, FIRST_PRODUCT_ID + n_train),
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        with tqdm(
            total=n_train + n_val,
            desc="synthetic Fashion-Gen",
            unit="product",
            file=sys.stderr,
            disable=not progress,
        ) as bar:
            for split, seq, n, first_id in plans:
                products = list(_split_specs(seq, n, first_id))
                results[split] = _write_split(split, out, products, bar)
        for info in results.values():
            os.replace(info["tmp"], info["path"])
            os.replace(info["tmp_side"], info["word_regions_path"])
    finally:
        for info in results.values():
            for key in ("tmp", "tmp_side"):
                with contextlib.suppress(FileNotFoundError):
                    Path(info[key]).unlink()
    summary: dict[str, Any] = {"seed": int(seed)}
    for split, info in results.items():
        summary[split] = {
            "path": str(info["path"]),
            "word_regions_path": str(info["word_regions_path"]),
            "rows": info["rows"],
            "products": info["products"],
            "word_region_entries": info["word_region_entries"],
        }
    return summary
