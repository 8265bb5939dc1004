"""Released EasyTransfer TSV files -> this project's prepared folder (TFRecords).

Streaming: rows are read one at a time and written to shards of
``records_per_shard`` image records. One record per **image** (DESIGN.md §2): a
matched row (``nx_sent_labels`` = 1, or every row of the fine-tuning schema) gives
its image with its own product's text; mismatched rows are counted and skipped,
since this project draws ITM negatives online. The text's ``[MASK]``ed tokens are
restored from ``masked_lm_positions`` / ``masked_lm_ids``. The folder is built
under a temporary name and renamed when complete: a malformed row stops the import
with its file, row and column, and nothing is left behind.

Per schema (prior_art.md §1.4, §2.4; released_checkpoints.md §7):

* ``fashionbert-*``: layout ``grid8``; ``image_feature`` is 64 x D patch-major.
  Products are ``image_prod_id`` (eval) or, without ids (pretrain), a hash of the
  restored text.
* ``kaleido-*``: layout ``kaleido``; the five level columns give the 55 patches;
  the ``img_loc_position_*`` integers are kept as released (unnormalised, what
  the released ``position_dense`` was trained on). The camouflage location column
  has 45 values (9 cells x 5) or, as the released schema declares, 35; with 35
  the nine level-3 boxes are recomputed from the level-1 box (the whole crop) as
  a 3 x 3 split, and ``counts.camouflage_boxes_recomputed`` says how often.
  Pixel variants (rotations, grey cells) are not in the files: the records carry
  copies of the clean features there (``manifest.pixel_variants``).
  ``kaleido-pretrain`` features carry the released pretext transforms
  ("convert" columns) on levels 1-3; the greyed level-4 cells are restored from
  ``img_grey_mask_gt``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.readers.easytransfer_tsv import (
    KALEIDO_BOX_ALTERNATIVES,
    SCHEMAS,
    TSVReader,
    data_files,
)
from kaleido_tf import constants, schema
from kaleido_tf.atomic_files import atomic_write_json, atomic_write_text
from kaleido_tf.errors import DataError, OutputError
from kaleido_tf.manifest import MANIFEST_NAME, manifest_header, write_manifest

VOCAB_NAME = "vocab.txt"
CATEGORIES_NAME = "categories.json"
PRODUCTS_NAME = "products.jsonl"
SPLITS = {
    "fashionbert-pretrain": "train",
    "fashionbert-eval": "validation",
    "kaleido-pretrain": "train",
    "kaleido-retrieve": "validation",
    "kaleido-finetune": "train",
}
_LEVEL_NAMES = ("rotation", "jigsaw", "camouflage", "grey_mask", "blank_mask")


def _product_id(raw: str) -> int:
    """A released product id as int64 (a stable 53-bit hash if not numeric)."""
    raw = raw.strip().strip('"')
    if raw.isdigit() and int(raw) < 2**62:
        return int(raw)
    return int.from_bytes(hashlib.sha1(raw.encode()).digest()[:7], "big")


def _text_ids(row: dict[str, Any], vocab_size: int, where: str) -> list[int]:
    """The unmasked ``[CLS] ... [SEP]`` ids of a row (padding dropped)."""
    ids = row["input_ids"].copy()
    if "masked_lm_positions" in row:
        positions, originals = row["masked_lm_positions"], row["masked_lm_ids"]
        real = row["masked_lm_weights"] > 0
        if np.any(positions[real] >= len(ids)) or np.any(positions[real] < 0):
            raise DataError(f"{where}: masked_lm_positions point outside input_ids")
        ids[positions[real]] = originals[real]
    length = int(np.sum(row["input_mask"] > 0))
    if length < 2 or np.any(row["input_mask"][:length] <= 0):
        raise DataError(
            f"{where}: input_mask is not 1s then 0s over at least [CLS] [SEP]"
        )
    ids = ids[:length]
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise DataError(
            f"{where}: input_ids hold id {int(ids.max())} outside the "
            f"{vocab_size}-token vocab.txt: give the vocab.txt of the release"
        )
    return [int(i) for i in ids]


def _kaleido_boxes(row: dict[str, Any], counts: dict[str, int]) -> np.ndarray:
    """[55, 5] released location integers, level by level (see module doc)."""
    parts = []
    for name in _LEVEL_NAMES:
        values = row[f"img_loc_position_{name}"].astype(np.float32)
        if name in KALEIDO_BOX_ALTERNATIVES and len(values) == 35:
            x1, x2, y1, y2, _ = parts[0][0]
            edge_x = [x1 + np.floor(i * (x2 - x1) / 3 + 0.5) for i in range(4)]
            edge_y = [y1 + np.floor(i * (y2 - y1) / 3 + 0.5) for i in range(4)]
            cells = [
                [edge_x[c], edge_x[c + 1], edge_y[r], edge_y[r + 1]]
                for r in range(3)
                for c in range(3)
            ]
            values = np.asarray(
                [[a, b, c, d, (b - a) * (d - c)] for a, b, c, d in cells], np.float32
            )
            counts["camouflage_boxes_recomputed"] += 1
        parts.append(values.reshape(-1, 5))
    return np.concatenate(parts, axis=0)


class _Shards:
    """Shards of at most ``per_shard`` records in ``folder``, named as ``prepare``."""

    def __init__(self, folder: Path, split: str, per_shard: int) -> None:
        from data_prep.tfrecord.shard_writer import ShardWriter

        self._writer_cls = ShardWriter
        self.folder, self.split, self.per_shard = folder, split, per_shard
        self.writer = None
        self.done: list[dict[str, Any]] = []
        self.first_row = 0

    def write(self, record: bytes, source_row: int) -> None:
        if self.writer is None:
            name = f"{self.split}-{len(self.done):05d}.tfrecord"
            self.writer = self._writer_cls(self.folder / name)
            self.first_row = source_row
        self.writer.write(record)
        self.last_row = source_row
        if self.writer.count >= self.per_shard:
            self.close()

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.commit()
        self.done.append(
            {
                "file": self.writer.path.name,
                "records": self.writer.count,
                "rows": [self.first_row, self.last_row + 1],
            }
        )
        self.writer = None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.__exit__(None, None, None)
            self.writer = None


def import_easytransfer(
    schema_name: str,
    source: str | Path,
    out_dir: str | Path,
    vocab_path: str | Path,
    records_per_shard: int = 1024,
    overwrite: bool = False,
    progress: bool = False,
    command: str = "",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Converts released TSV files into a prepared folder readable by training,
    fine-tuning and evaluation.

    Args:
        schema_name: A key of ``data_prep.readers.easytransfer_tsv.SCHEMAS``.
        source: A TSV file or a ``.list_csv`` of them.
        out_dir: The prepared folder to create.
        vocab_path: The ``vocab.txt`` the ids refer to (bert-base-uncased for the
            releases); copied into the folder.
        records_per_shard: Image records per TFRecord shard.
        overwrite: Replace an existing ``out_dir``.
        progress: Show a tqdm bar (bytes read) on stderr.
        command: The command line, recorded in the manifest.
        log: Where one-line messages go.

    Returns:
        A summary: ``out_dir``, ``manifest``, ``counts``.

    Raises:
        DataError: A missing file, a malformed row (file, row and column named),
            or no matched row at all.
        OutputError: ``out_dir`` exists without ``overwrite``.
    """
    from tqdm import tqdm

    from data_prep.tfrecord.example_codec import encode_record

    log = log or (lambda message: None)
    out_dir = Path(out_dir)
    if schema_name not in SCHEMAS:
        raise DataError(
            f"unknown --schema {schema_name!r}: valid schemas are {sorted(SCHEMAS)}"
        )
    if records_per_shard < 1:
        raise DataError(f"records_per_shard must be >= 1, got {records_per_shard}")
    if out_dir.exists() and not overwrite:
        raise OutputError(
            f"{out_dir} exists: choose another --out or pass --overwrite to replace it"
        )
    files = data_files(source)
    try:
        vocab = [t.strip() for t in Path(vocab_path).read_text("utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read --vocab {vocab_path} ({e})") from None
    missing = [t for t in constants.SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise DataError(f"{vocab_path} lacks the special tokens {missing}")

    kaleido = schema_name.startswith("kaleido")
    layout = schema.get_layout("kaleido" if kaleido else "grid8")
    p = layout.num_patches
    split = SPLITS[schema_name]
    reader = TSVReader(schema_name)
    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shards = _Shards(tmp, split, records_per_shard)
    counts = {
        "rows": 0,
        "matched_rows": 0,
        "skipped_mismatched_rows": 0,
        "skipped_repeated_images": 0,
        "text_conflicts": 0,
        "camouflage_boxes_recomputed": 0,
        "restored_grey_cells": 0,
    }
    products: dict[int, dict[str, Any]] = {}
    seen: set[str] = set()
    categories: dict[str, set[str]] = {"category": set(), "subcategory": set()}
    fields = None
    grid_boxes = None
    total_bytes = sum(f.stat().st_size for f in files)
    bar = tqdm(
        total=total_bytes,
        unit="B",
        unit_scale=True,
        disable=not progress,
        desc=f"import {schema_name}",
    )
    try:
        for where, size, row in reader.rows(files):
            bar.update(size)
            if not row:
                continue
            source_row = counts["rows"]
            counts["rows"] += 1
            if "nx_sent_labels" in row and int(row["nx_sent_labels"][0]) != 1:
                counts["skipped_mismatched_rows"] += 1
                continue
            counts["matched_rows"] += 1
            ids = _text_ids(row, len(vocab), where)
            t = reader.symbols["T"]
            if "image_prod_id" in row:
                product = _product_id(row["image_prod_id"])
                pose = row["prod_img_id"].strip().strip('"')
                pose_index = int(pose) if pose.isdigit() else 0
            else:  # pretraining files carry no ids: one product per text
                product = _product_id(" ".join(map(str, ids)))
                pose_index = 0
            if "text_prod_id" in row and _product_id(row["text_prod_id"]) != product:
                raise DataError(
                    f"{where}: a matched row whose text_prod_id "
                    f"{row['text_prod_id']!r} differs from image_prod_id "
                    f"{row['image_prod_id']!r}"
                )
            entry = products.get(product)
            if entry is None:
                entry = {
                    "product_id": product,
                    "category": row.get("img_category", "").strip().strip('"'),
                    "subcategory": row.get("img_subcategory", "").strip().strip('"'),
                    "num_images": 0,
                    "text": str(row.get("prod_desc", "")).strip().strip('"'),
                    "input_ids": ids,
                }
                products[product] = entry
            elif entry["input_ids"] != ids:
                counts["text_conflicts"] += 1
            if not pose_index:
                pose_index = entry["num_images"] + 1
            image_id = f"{product}_{pose_index}"
            if image_id in seen:  # retrieval files repeat a query image per row
                counts["skipped_repeated_images"] += 1
                continue
            seen.add(image_id)
            entry["num_images"] += 1
            categories["category"].add(entry["category"])
            categories["subcategory"].add(entry["subcategory"])

            if kaleido:
                feats = np.concatenate(
                    [row[f"img_feature_convert_{name}"] for name in _LEVEL_NAMES]
                )
                d = reader.symbols["D"]
                feats = feats.reshape(p, d)
                boxes = _kaleido_boxes(row, counts)
                grey_start = layout.level_slice(4).start
                grey = feats[layout.level_slice(4)].copy()
                if "img_grey_mask_gt" in row:  # restore the greyed level-4 cells
                    cells = row["img_grey_lm_ids"]
                    if np.any(cells < 0) or np.any(cells >= 16):
                        raise DataError(
                            f"{where}: img_grey_lm_ids {cells.tolist()} outside 0..15"
                        )
                    colour = row["img_grey_mask_gt"].reshape(len(cells), d)
                    feats[grey_start + cells] = colour
                    counts["restored_grey_cells"] += len(cells)
                level1 = feats[0:1]
                variants = {
                    "rotated_features": np.repeat(level1, schema.NUM_ROTATIONS, 0),
                    "grey_features": grey,
                }
            else:
                d = reader.symbols["D"]
                feats = row["image_feature"].reshape(p, d)
                if grid_boxes is None:
                    from data_prep.kpg.kaleido_patches import KaleidoPatchGenerator

                    grid_boxes = KaleidoPatchGenerator(
                        layout, constants.FASHIONGEN_IMAGE_SIZE, 32
                    ).normalised_boxes()
                boxes = grid_boxes
                variants = {}
            if fields is None:
                fields = schema.record_fields(layout, t, d)
            padded = np.zeros(t, np.int64)
            padded[: len(ids)] = ids
            values = {
                "image_id": image_id.encode(),
                "product_id": product,
                "pose_index": pose_index,
                "source_row": source_row,
                "category_id": int(row["img_category_id"][0])
                if "img_category_id" in row
                else -1,
                "subcategory_id": int(row["img_subcategory_id"][0])
                if "img_subcategory_id" in row
                else -1,
                "input_ids": padded,
                "word_index": _word_index(ids, vocab, t),
                "crop_box": np.full(4, -1, np.int64),
                "patch_boxes": boxes,
                "patch_features": feats,
                **schema.empty_alignment(),
                **variants,
            }
            try:
                record = encode_record(values, fields)
            except DataError as e:
                raise DataError(f"{where}: {e}") from None
            shards.write(record, source_row)
        shards.close()
        if not shards.done:
            raise DataError(
                f"{source}: no matched row (nx_sent_labels = 1) in "
                f"{counts['rows']} rows: nothing to import"
            )
        _finish(
            tmp,
            schema_name,
            files,
            vocab,
            products,
            categories,
            counts,
            shards.done,
            layout,
            reader.symbols,
            split,
            command,
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shards.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    log(
        f"{out_dir}: {sum(s['records'] for s in shards.done)} image records of "
        f"{len(products)} products from {counts['rows']} rows in "
        f"{len(shards.done)} shards"
    )
    return {
        "out_dir": str(out_dir),
        "manifest": str(out_dir / MANIFEST_NAME),
        "counts": counts,
    }


def _word_index(ids: list[int], vocab: list[str], t: int) -> np.ndarray:
    """Word of each token (a "##" piece continues the previous word); -1 for
    [CLS], [SEP] and padding (as ``ProductTable`` computes it)."""
    out = np.full(t, -1, np.int64)
    word = -1
    for i in range(1, len(ids) - 1):
        if i == 1 or not vocab[ids[i]].startswith("##"):
            word += 1
        out[i] = word
    return out


def _finish(
    folder: Path,
    schema_name: str,
    files: list[Path],
    vocab: list[str],
    products: dict[int, dict[str, Any]],
    categories: dict[str, set[str]],
    counts: dict[str, int],
    shards: list[dict[str, Any]],
    layout: schema.Layout,
    symbols: dict[str, int],
    split: str,
    command: str,
) -> None:
    """Vocabulary, categories, product table and manifest (written last)."""
    atomic_write_text(folder / VOCAB_NAME, "\n".join(vocab) + "\n")
    cats = {k: sorted(v) for k, v in categories.items()}
    atomic_write_json(folder / CATEGORIES_NAME, cats)
    lines = []
    for entry in products.values():
        row = dict(entry)
        row["category_id"] = cats["category"].index(entry["category"])
        row["subcategory_id"] = cats["subcategory"].index(entry["subcategory"])
        lines.append(json.dumps(row))
    atomic_write_text(folder / PRODUCTS_NAME, "\n".join(lines) + "\n")
    d = symbols["D"]
    counts["images"] = sum(s["records"] for s in shards)
    counts["products"] = len(products)
    kaleido = layout.name == "kaleido"
    manifest = {
        **manifest_header(split, layout, d, symbols["T"]),
        "backbone": {"name": "easytransfer-release", "feature_dim": d, "weights": ""},
        "backbone_weights_random": False,
        "text": {
            "field": "description",
            "max_seq_length": symbols["T"],
            "lower_case": True,
        },
        "box_units": "released integers" if kaleido else "normalised grid",
        "pixel_variants": "copies of the clean features" if kaleido else "none",
        "pretext_transforms_in_features": schema_name == "kaleido-pretrain",
        "vocab_file": VOCAB_NAME,
        "vocab_size": len(vocab),
        "vocab_source": "given",
        "categories_file": CATEGORIES_NAME,
        "num_categories": len(cats["category"]),
        "num_subcategories": len(cats["subcategory"]),
        "products_file": PRODUCTS_NAME,
        "source": {
            "easytransfer_schema": schema_name,
            "files": [str(f) for f in files],
        },
        "counts": counts,
        "shards": shards,
        "command": command,
    }
    write_manifest(folder, manifest)
