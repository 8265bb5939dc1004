"""Throughput of ``kaleido-tf prepare``'s image stage, batched vs. one patch at a time.

For each backbone, one run measures (a) the batched path that ``prepare`` uses (crop,
kaleido patches + pixel variants, then the backbone over patches gathered across
``images_per_batch`` images) and (b) a naive loop that calls the backbone on one
patch at a time, on the same synthetic images and the same network, and prints
images/s and the ratio. Both paths produce the same features (the tests check it).

Usage:
    python bench/prepare_throughput.py [--images 48] [--resnet-images 4]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kaleido_tf  # noqa: E402,F401
from data_prep.pipeline import PrepareRequest, _ShardBuilder  # noqa: E402
from kaleido_tf import schema  # noqa: E402
from kaleido_tf.config.data_prep import PrepareConfig  # noqa: E402
from kaleido_tf.config.loader import load_dataclass, resolve_config_path  # noqa: E402


def synthetic_images(count: int, seed: int) -> list[np.ndarray]:
    """``count`` images of the project's synthetic fashion set."""
    import h5py
    from data_prep.synthetic.fashiongen_writer import write_synthetic_fashiongen

    with tempfile.TemporaryDirectory() as tmp:
        products = max(2, count // 3 + 2)
        while True:
            write_synthetic_fashiongen(
                tmp, num_products=products, seed=seed, progress=False
            )
            with h5py.File(Path(tmp) / "fashiongen_256_256_train.h5") as f:
                if len(f["input_image"]) >= count:
                    return [f["input_image"][i] for i in range(count)]
            products *= 2


def measure(config: PrepareConfig, images: list[np.ndarray], naive_images: int) -> dict:
    from data_prep.backbones.patch_feature_extractor import PatchFeatureExtractor

    extractor = PatchFeatureExtractor(
        config.backbone.name,
        config.backbone.patch_size,
        None,
        batch_size=config.backbone.batch_size,
    )
    fields = schema.record_fields(
        schema.get_layout(config.layout),
        config.text.max_seq_length,
        extractor.feature_dim,
    )
    req = PrepareRequest(Path("x.h5"), Path("."), config, None)
    builder = _ShardBuilder(req, extractor, fields)
    t = config.text.max_seq_length
    warm, _ = builder.pixels(images[0])
    extractor(warm[: config.backbone.batch_size])  # trace and warm up

    def item(image):
        pixels, box = builder.pixels(image)
        return {
            "image_id": b"1_1",
            "product_id": 1,
            "pose_index": 1,
            "source_row": 0,
            "category_id": 0,
            "subcategory_id": 0,
            "input_ids": np.zeros(t, np.int64),
            "word_index": np.full(t, -1),
            "crop_box": np.asarray([box.x1, box.y1, box.x2, box.y2]),
            "pixels": pixels,
            "num_pixels": len(pixels),
        }

    start = time.perf_counter()
    per = config.output.images_per_batch
    for a in range(0, len(images), per):
        builder.records([item(im) for im in images[a : a + per]])
    batched = len(images) / (time.perf_counter() - start)

    start = time.perf_counter()
    for image in images[:naive_images]:
        pixels, _ = builder.pixels(image)
        for patch in pixels:  # one forward pass per patch
            extractor(patch[None])
    naive = naive_images / (time.perf_counter() - start)
    return {
        "backbone": f"{config.backbone.name} @ {config.backbone.patch_size}px",
        "patches_per_image": len(warm),
        "feature_dim": extractor.feature_dim,
        "batched": batched,
        "naive": naive,
        "images": len(images),
        "naive_images": naive_images,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48, help="demo-backbone images")
    parser.add_argument("--resnet-images", type=int, default=4, help="ResNet-50 images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images = synthetic_images(max(args.images, args.resnet_images), args.seed)
    demo = load_dataclass(PrepareConfig, resolve_config_path("demo_kaleido", "data"))
    paper = load_dataclass(
        PrepareConfig, resolve_config_path("fashiongen_kaleido", "data")
    )
    rows = [
        measure(demo, images[: args.images], max(1, args.images // 8)),
        measure(paper, images[: args.resnet_images], max(1, args.resnet_images // 2)),
    ]
    import os

    print(
        f"# prepare throughput, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, kaleido layout (55 patches + 3 rotations + 16 grey)"
    )
    print(
        "| backbone | patches/image | D | batched images/s | naive images/s | ratio |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backbone']} | {r['patches_per_image']} | {r['feature_dim']} | "
            f"{r['batched']:.2f} ({r['images']} images) | {r['naive']:.2f} "
            f"({r['naive_images']} images) | {r['batched'] / r['naive']:.1f}x |"
        )


if __name__ == "__main__":
    main()
