"""``kaleido-tf inspect``: show a resolved config or a prepared data folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("inspect", help="show a resolved config or prepared data")
    what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    c = what.add_parser("config", help="the resolved data-prep config as YAML")
    c.add_argument("name", help="name under configs/data/ or a YAML path")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    d = what.add_parser("data", help="a prepared folder: manifest, counts, a record")
    d.add_argument("folder", type=Path)
    d.add_argument(
        "--picture",
        type=Path,
        help="also write a PNG of a few images with their crops and patch grids "
        "(needs the source .h5 named in the manifest)",
    )
    d.add_argument("--count", type=int, default=6, help="images in the picture")
    k = what.add_parser(
        "checkpoint",
        help="a Google BERT checkpoint: its variables and where the name map puts them",
    )
    k.add_argument("bert_dir", type=Path, help="bert_config.json + bert_model.ckpt")
    k.add_argument(
        "--config",
        default="kaleido_bert/pretrain",
        help="experiment config whose model the map targets (sizes follow the "
        "checkpoint's bert_config.json)",
    )
    for parser in (c, d, k):
        parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return p


def run(args: argparse.Namespace) -> int:
    if args.what == "config":
        import yaml

        from kaleido_tf.cli.prepare import load_prepare_config
        from kaleido_tf.config.loader import config_to_dict

        config, source = load_prepare_config(args.name, args.set)
        print(f"# resolved from {source}")
        print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
        return 0
    if args.what == "checkpoint":
        import kaleido_tf
        from kaleido_tf.checkpoints.google_bert import (
            bert_overrides,
            describe_checkpoint,
        )

        config = kaleido_tf.load_config(args.config, bert_overrides(args.bert_dir))
        print(describe_checkpoint(config, args.bert_dir))
        return 0
    return describe_data(args.folder, args.picture, args.count)


def describe_data(folder: Path, picture: Path | None = None, count: int = 6) -> int:
    """Prints a prepared folder's manifest summary and its first record."""
    import numpy as np

    from kaleido_tf.inputs.parse import record_dataset
    from kaleido_tf.manifest import read_manifest

    manifest = read_manifest(folder)
    backbone = manifest["backbone"]
    weights = backbone["weights"] or f"RANDOM (seed {backbone['random_init_seed']})"
    print(
        f"{folder}: split {manifest['split']!r}, layout {manifest['layout']} "
        f"({manifest['num_patches']} patches), D={manifest['feature_dim']}, "
        f"T={manifest['max_seq_length']}"
    )
    print(
        f"  backbone {backbone['name']} @ {backbone['patch_size']}px, weights "
        f"{weights}, fingerprint {backbone['fingerprint']}"
    )
    print(
        f"  vocab {manifest['vocab_size']} tokens ({manifest['vocab_source']}); "
        f"{manifest['num_categories']} categories, "
        f"{manifest['num_subcategories']} sub-categories"
    )
    print("  counts: " + json.dumps(manifest["counts"]))
    print(
        f"  {len(manifest['shards'])} shards: "
        + ", ".join(f"{s['file']} ({s['records']})" for s in manifest["shards"][:4])
        + (" ..." if len(manifest["shards"]) > 4 else "")
    )
    records = list(record_dataset(folder, manifest).take(max(1, count)))
    if not records:
        return 0
    first = records[0]
    vocab = (Path(folder) / manifest["vocab_file"]).read_text("utf-8").splitlines()
    ids = [i for i in first["input_ids"].numpy().tolist() if i != 0]
    print(
        f"  first record {first['image_id'].numpy().decode()}: "
        f"patch_features {tuple(first['patch_features'].shape)} "
        f"(mean {float(np.mean(first['patch_features'])):.3f}), "
        f"crop_box {first['crop_box'].numpy().tolist()}"
    )
    print(
        "  tokens: "
        + " ".join(vocab[i] for i in ids[:24])
        + (" ..." if len(ids) > 24 else "")
    )
    if picture is not None:
        _picture(folder, manifest, records, picture)
        print(f"  picture: {picture}")
    return 0


def _picture(folder: Path, manifest: dict, records: list, out: Path) -> None:
    import h5py

    from data_prep.kpg.foreground import CropBox, border_background, extract_crop
    from data_prep.visualize import render_samples
    from kaleido_tf import schema

    products = {}
    with open(Path(folder) / manifest["products_file"], encoding="utf-8") as f:
        for line in f:
            p = json.loads(line)
            products[p["product_id"]] = p
    images, boxes, crops, captions = [], [], [], []
    with h5py.File(manifest["source"]["path"], "r") as h5:
        for rec in records:
            row = int(rec["source_row"].numpy())
            image = h5["input_image"][row]
            box = tuple(int(v) for v in rec["crop_box"].numpy())
            product = products[int(rec["product_id"].numpy())]
            images.append(image)
            boxes.append(box)
            fill = tuple(int(round(c * 255)) for c in border_background(image))
            crop = extract_crop(
                image, CropBox(*box, fill), manifest["crop"]["output_size"]
            )
            crops.append(crop)
            captions.append(
                f"{rec['image_id'].numpy().decode()}  "
                f"{product['category']} / {product['subcategory']}\n{product['text']}"
            )
    render_samples(
        images, boxes, crops, captions, schema.get_layout(manifest["layout"]), out
    )
