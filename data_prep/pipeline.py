"""``kaleido-tf prepare``: Fashion-Gen HDF5 -> kaleido patch features -> TFRecords.

Stage order (DESIGN.md §1): read and check the source, group rows into products,
build or load the category and WordPiece vocabularies, encode the texts, then for each
shard: crop (KPG), cut patches, make the pixel variants, embed everything with the
frozen backbone in batches across images, and write the shard under a temporary name.
Shard i always holds source rows [i*S, (i+1)*S), so a rerun skips finished shards and
``--num-workers K --worker-index i`` splits the shards between processes or machines.
``manifest.json`` is written when every shard is present; on several machines,
``--merge`` (after every worker has finished) checks each shard against the size and
SHA-256 its worker recorded in the ``.done.json`` marker and writes the manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.kpg.foreground import extract_crop, make_cropper
from data_prep.kpg.kaleido_patches import KaleidoPatchGenerator
from data_prep.pixel_variants.greyscale import grey
from data_prep.pixel_variants.rotations import rotations
from data_prep.readers.fashiongen_h5 import FashionGenReader, Product
from kaleido_tf import schema
from kaleido_tf.atomic_files import atomic_write_json, atomic_write_text
from kaleido_tf.config.data_prep import PrepareConfig
from kaleido_tf.config.loader import config_to_dict
from kaleido_tf.errors import DataError
from kaleido_tf.manifest import MANIFEST_NAME, manifest_header, write_manifest

SETTINGS_NAME = "build_settings.json"
VOCAB_NAME = "vocab.txt"
CATEGORIES_NAME = "categories.json"
PRODUCTS_NAME = "products.jsonl"


@dataclasses.dataclass(frozen=True)
class PrepareRequest:
    """One conversion.

    Attributes:
        h5_path: Source Fashion-Gen ``.h5`` file.
        out_dir: Output folder.
        config: The resolved PrepareConfig.
        backbone_weights: Local ``.h5`` weights, or None for seeded random weights
            (only on an explicit ``--backbone-weights none``).
        vocab_path: A BERT ``vocab.txt``; None learns one from the texts (demo).
        categories_path: ``categories.json`` of another build (e.g. the train
            split's), so that ids agree across splits; None builds it here.
        split: Split name used in shard names; None derives it from the file name.
        num_workers: Processes sharing the shards.
        worker_index: This process's index in [0, num_workers).
        overwrite: Replace an existing build made with other settings.
        seed: Seed of random backbone weights.
        progress: Show a tqdm progress bar.
        command: The command line, recorded in the manifest.
        config_source: Where the config came from, recorded in the manifest.
        merge: Build no shard; check that every shard is present and intact
            (done marker, size, SHA-256) and write ``manifest.json``.
    """

    h5_path: Path
    out_dir: Path
    config: PrepareConfig
    backbone_weights: Path | None
    vocab_path: Path | None = None
    categories_path: Path | None = None
    split: str | None = None
    num_workers: int = 1
    worker_index: int = 0
    overwrite: bool = False
    seed: int = 0
    progress: bool = True
    command: str = ""
    config_source: str = ""
    merge: bool = False


def split_name(h5_path: Path) -> str:
    """``fashiongen_256_256_train.h5`` -> ``train``; otherwise the file stem."""
    stem = h5_path.stem
    for name in ("train", "validation", "valid", "test"):
        if stem.endswith("_" + name):
            return name
    return stem


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's content (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _settings(req: PrepareRequest, num_rows: int) -> dict[str, Any]:
    src = req.h5_path.resolve()
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "config": config_to_dict(req.config),
        "source": {"path": str(src), "bytes": src.stat().st_size, "rows": num_rows},
        "backbone_weights_sha256": (
            sha256_file(req.backbone_weights) if req.backbone_weights else None
        ),
        "random_init_seed": None if req.backbone_weights else req.seed,
        "vocab_sha256": sha256_file(req.vocab_path) if req.vocab_path else None,
        "categories_sha256": (
            sha256_file(req.categories_path) if req.categories_path else None
        ),
        "split": req.split or split_name(req.h5_path),
    }


def _shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def _done_marker(out_dir: Path, shard: str) -> Path:
    return out_dir / f"{shard}.done.json"


def _verify_shards(out_dir: Path, names: list[str], log) -> None:
    """Checks each finished shard against its marker's size and SHA-256."""
    for name in names:
        marker = json.loads(_done_marker(out_dir, name).read_text(encoding="utf-8"))
        path = out_dir / name
        if not path.is_file():
            raise DataError(
                f"{path}: missing although {name}.done.json says it is finished: "
                "copy it from its worker, or delete the marker and rerun that worker"
            )
        if "sha256" not in marker:
            log(f"{name}: marker has no checksum (older build), not verified")
            continue
        size = path.stat().st_size
        if size != marker["bytes"] or sha256_file(path) != marker["sha256"]:
            raise DataError(
                f"{path}: {size} bytes whose SHA-256 differs from what its worker "
                f"recorded ({marker['bytes']} bytes): the copy is damaged; copy it "
                "again, or delete it and its .done.json and rerun its worker"
            )
    log(f"{out_dir}: all {len(names)} shards present, sizes and SHA-256 match")


def _clear_build(out_dir: Path) -> None:
    for pattern in ("*.tfrecord", "*.tfrecord.tmp-*", "*.done.json", MANIFEST_NAME):
        for path in out_dir.glob(pattern):
            path.unlink()


def _check_settings(req: PrepareRequest, settings: dict[str, Any], log) -> None:
    check_settings(req.out_dir, req.overwrite, settings, log)


def check_settings(
    out_dir: Path, overwrite: bool, settings: dict[str, Any], log
) -> None:
    """Starts, resumes or (``overwrite``) replaces the build in ``out_dir``.

    A folder whose ``build_settings.json`` differs from ``settings`` is refused
    unless ``overwrite``, which removes the previous shards and manifest.
    """
    path = out_dir / SETTINGS_NAME
    if not path.is_file():
        _clear_build(out_dir)
        atomic_write_json(path, settings)
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        old = {}
    if old == settings:
        return
    changed = sorted(
        k for k in set(old) | set(settings) if old.get(k) != settings.get(k)
    )
    if not overwrite:
        raise DataError(
            f"{out_dir} holds a build made with other settings (differs in "
            f"{changed}): pass --overwrite to replace it, or choose another --out"
        )
    log(f"--overwrite: removing the previous build in {out_dir} ({changed})")
    _clear_build(out_dir)
    atomic_write_json(path, settings)


def _category_vocab(
    categories_path: Path | None, products: list[Product]
) -> dict[str, list[str]]:
    if categories_path is not None:
        try:
            vocab = json.loads(categories_path.read_text(encoding="utf-8"))
            assert isinstance(vocab["category"], list)
            assert isinstance(vocab["subcategory"], list)
        except (OSError, ValueError, KeyError, AssertionError, TypeError):
            raise DataError(
                f"{categories_path} is not a categories.json written by "
                "`kaleido-tf prepare` (keys 'category' and 'subcategory', lists)"
            ) from None
        return {"category": vocab["category"], "subcategory": vocab["subcategory"]}
    return {
        "category": sorted({p.category for p in products}),
        "subcategory": sorted({p.subcategory for p in products}),
    }


@dataclasses.dataclass
class SplitTexts:
    """The text side of one split, shared by every visual layout.

    Attributes:
        products: Products with a non-empty text, in source order.
        counts: Source and text counts for the manifest.
        categories: ``{"category": [...], "subcategory": [...]}``.
        vocab: The WordPiece vocabulary.
        vocab_source: Where the vocabulary came from (for the manifest).
        input_ids: int32 [len(products), T] WordPiece ids.
        word_index: int32 [len(products), T] source word of each token; -1.
        product_of_row: int64 [rows]: index in ``products``; -1 = skipped row.
        pose_of_row: int64 [rows]: 1-based view index within the product.
    """

    products: list[Product]
    counts: dict[str, int]
    categories: dict[str, list[str]]
    vocab: list[str]
    vocab_source: str
    input_ids: np.ndarray
    word_index: np.ndarray
    product_of_row: np.ndarray
    pose_of_row: np.ndarray

    def __post_init__(self) -> None:
        self.cat_id = {c: i for i, c in enumerate(self.categories["category"])}
        self.sub_id = {c: i for i, c in enumerate(self.categories["subcategory"])}

    def image_id(self, row: int) -> str | None:
        """``'<product id>_<pose index>'`` of a source row; None if skipped."""
        k = int(self.product_of_row[row])
        if k < 0:
            return None
        return f"{self.products[k].product_id}_{int(self.pose_of_row[row])}"

    def text_values(self, row: int) -> dict[str, Any] | None:
        """The ``schema.text_fields`` values of a source row; None if skipped."""
        k = int(self.product_of_row[row])
        if k < 0:
            return None
        p = self.products[k]
        pose = int(self.pose_of_row[row])
        return {
            "image_id": f"{p.product_id}_{pose}".encode(),
            "product_id": p.product_id,
            "pose_index": pose,
            "source_row": row,
            "category_id": self.cat_id.get(p.category, -1),
            "subcategory_id": self.sub_id.get(p.subcategory, -1),
            "input_ids": self.input_ids[k],
            "word_index": self.word_index[k],
        }

    def manifest_entries(self) -> dict[str, Any]:
        """The manifest keys that describe the text side."""
        return {
            "vocab_file": VOCAB_NAME,
            "vocab_size": len(self.vocab),
            "vocab_source": self.vocab_source,
            "categories_file": CATEGORIES_NAME,
            "num_categories": len(self.categories["category"]),
            "num_subcategories": len(self.categories["subcategory"]),
            "products_file": PRODUCTS_NAME,
        }


def encode_split_texts(
    reader: FashionGenReader,
    out_dir: Path,
    text_config,
    vocab_path: Path | None,
    categories_path: Path | None,
    log: Callable[[str], None],
) -> SplitTexts:
    """Groups rows into products, encodes their texts and writes the text files.

    Writes ``vocab.txt``, ``categories.json`` and ``products.jsonl`` to
    ``out_dir`` (atomically). Products with an empty text are skipped.

    Args:
        reader: The open source file.
        out_dir: The output folder.
        text_config: A ``TextConfig``.
        vocab_path: A BERT ``vocab.txt``; None learns one from the texts (demo).
        categories_path: ``categories.json`` of another build, or None.
        log: Logger of one-line messages.
    """
    from data_prep.text.wordpiece import WordPieceEncoder, learn_vocab, read_vocab

    all_products = reader.products()
    products = [p for p in all_products if p.text]
    counts: dict[str, int] = {
        "source_rows": reader.num_rows,
        "source_products": len(all_products),
        "skipped_empty_text_products": len(all_products) - len(products),
        "skipped_empty_text_rows": sum(len(p.rows) for p in all_products)
        - sum(len(p.rows) for p in products),
        "repaired_texts": sum(p.text_repaired for p in products),
    }
    cats = _category_vocab(categories_path, products)
    cat_id = {c: i for i, c in enumerate(cats["category"])}
    sub_id = {c: i for i, c in enumerate(cats["subcategory"])}
    counts["unknown_category_products"] = sum(
        p.category not in cat_id or p.subcategory not in sub_id for p in products
    )
    if vocab_path is not None:
        vocab = read_vocab(vocab_path)
        vocab_source = f"given: {vocab_path.resolve()}"
    else:
        log(
            "no --vocab given: learning a WordPiece vocabulary from these texts "
            "(demo-only; real runs use BERT's vocab.txt)"
        )
        vocab = learn_vocab(
            [p.text for p in products],
            text_config.demo_vocab_size,
            text_config.lower_case,
        )
        vocab_source = "learned from the texts of this split (demo only)"
    encoder = WordPieceEncoder(
        vocab, text_config.max_seq_length, text_config.lower_case
    )
    input_ids, word_index, truncated = encoder.encode([p.text for p in products])
    counts["truncated_texts"] = truncated

    atomic_write_text(out_dir / VOCAB_NAME, "\n".join(vocab) + "\n")
    atomic_write_json(out_dir / CATEGORIES_NAME, cats)
    lines = []
    for i, p in enumerate(products):
        n_tokens = int((word_index[i] >= 0).sum()) + 2
        lines.append(
            json.dumps(
                {
                    "product_id": p.product_id,
                    "category": p.category,
                    "subcategory": p.subcategory,
                    "category_id": cat_id.get(p.category, -1),
                    "subcategory_id": sub_id.get(p.subcategory, -1),
                    "num_images": len(p.rows),
                    "text": p.text,
                    "input_ids": input_ids[i, :n_tokens].tolist(),
                },
                ensure_ascii=False,
            )
        )
    atomic_write_text(out_dir / PRODUCTS_NAME, "\n".join(lines) + "\n")

    product_of_row = np.full(reader.num_rows, -1, np.int64)
    pose_of_row = np.zeros(reader.num_rows, np.int64)
    for i, p in enumerate(products):
        product_of_row[list(p.rows)] = i
        pose_of_row[list(p.rows)] = np.arange(1, len(p.rows) + 1)
    return SplitTexts(
        products=products,
        counts=counts,
        categories=cats,
        vocab=vocab,
        vocab_source=vocab_source,
        input_ids=input_ids,
        word_index=word_index,
        product_of_row=product_of_row,
        pose_of_row=pose_of_row,
    )


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """Which shards exist and which this worker still has to write.

    Attributes:
        names: Every shard name; shard i holds source rows [i*S, (i+1)*S).
        pending: Indices this worker writes now (no ``.done.json`` yet).
        skipped: How many of this worker's shards were already finished.
        records_per_shard: S.
        num_rows: Source rows.
    """

    names: list[str]
    pending: list[int]
    skipped: int
    records_per_shard: int
    num_rows: int

    def rows(self, index: int) -> tuple[int, int]:
        """``(start, stop)`` source rows of shard ``index``."""
        start = index * self.records_per_shard
        return start, min(start + self.records_per_shard, self.num_rows)


def plan_shards(
    out_dir: Path,
    split: str,
    num_rows: int,
    records_per_shard: int,
    num_workers: int,
    worker_index: int,
    merge: bool,
) -> ShardPlan:
    """Shard names and this worker's unfinished shards (i % num_workers)."""
    num_shards = max(1, math.ceil(num_rows / records_per_shard))
    names = [_shard_name(split, i, num_shards) for i in range(num_shards)]
    mine = [i for i in range(num_shards) if i % num_workers == worker_index]
    if merge:
        mine = []
    pending = [i for i in mine if not _done_marker(out_dir, names[i]).is_file()]
    return ShardPlan(
        names, pending, len(mine) - len(pending), records_per_shard, num_rows
    )


def check_worker_index(req: Any) -> None:
    """DataError unless ``0 <= req.worker_index < req.num_workers``."""
    if not 0 <= req.worker_index < req.num_workers:
        raise DataError(
            f"--worker-index {req.worker_index} must be in [0, {req.num_workers})"
        )


def plan_request_shards(
    req: Any, split: str, num_rows: int, records_per_shard: int
) -> ShardPlan:
    """``plan_shards`` with a request's folder, workers and merge flag."""
    return plan_shards(
        req.out_dir,
        split,
        num_rows,
        records_per_shard,
        req.num_workers,
        req.worker_index,
        req.merge,
    )


def write_build_manifest(
    req: Any,
    summary: dict,
    head: dict,
    texts: Any,
    settings: dict,
    counts: dict,
    shards: list[dict],
    settings_file: str | None = None,
    rows_key: str = "rows",
) -> dict:
    """Writes ``manifest.json``: ``head`` (the builder's own entries), then the
    entries every builder shares (config source, text files, source, counts,
    shards, command); returns ``summary`` with the manifest path and counts.

    Args:
        req: The request (``config_source``, ``command``, ``out_dir``).
        summary, shards: ``finish_shards``'s.
        head: The builder's entries, first in the manifest.
        texts: ``encode_split_texts``'s result.
        settings: The build settings (their ``source``).
        counts: The counts to record.
        settings_file: If given, recorded as ``build_settings_file``.
        rows_key: The name of each shard's ``rows`` entry in the manifest.
    """
    manifest = {
        **head,
        "config_source": req.config_source,
        **({"build_settings_file": settings_file} if settings_file else {}),
        **texts.manifest_entries(),
        "source": settings["source"],
        "counts": counts,
        "shards": [
            {"file": s["file"], "records": s["records"], rows_key: s["rows"]}
            for s in shards
        ],
        "command": req.command,
    }
    summary["manifest"] = str(write_manifest(req.out_dir, manifest))
    summary["counts"] = counts
    return summary


def write_shard(
    out_dir: Path,
    name: str,
    rows: tuple[int, int],
    records,
    shard_counts: dict[str, int],
) -> dict[str, Any]:
    """Writes one shard atomically, then its ``.done.json`` marker.

    Args:
        out_dir: The output folder.
        name: Shard file name.
        rows: ``(start, stop)`` source rows it covers.
        records: Iterable of serialised examples; it may update
            ``shard_counts`` while it is consumed.
        shard_counts: Counts recorded in the marker; ``records`` is set here.

    Returns:
        The marker's content.
    """
    from data_prep.tfrecord.shard_writer import ShardWriter

    with ShardWriter(out_dir / name) as writer:
        for record in records:
            writer.write(record)
        shard_counts["records"] = writer.count
        writer.commit()
    shard_path = out_dir / name
    marker = {
        "file": name,
        "rows": list(rows),
        **shard_counts,
        "bytes": shard_path.stat().st_size,
        "sha256": sha256_file(shard_path),
    }
    atomic_write_json(_done_marker(out_dir, name), marker)
    return marker


def finish_shards(
    out_dir: Path,
    plan: ShardPlan,
    merge: bool,
    split: str,
    log: Callable[[str], None],
) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """After this worker's shards: decides whether the manifest is due.

    Returns:
        ``(summary, markers)``: the run summary, and the done markers of every
        shard when the manifest must be written now, else None (shards of other
        workers are missing, or the folder was already complete; the summary
        then says so).

    Raises:
        DataError: ``merge`` and a shard is missing, or a copy is damaged.
    """
    names = plan.names
    num_shards = len(names)
    missing = [n for n in names if not _done_marker(out_dir, n).is_file()]
    manifest_path = out_dir / MANIFEST_NAME
    summary: dict[str, Any] = {
        "out_dir": str(out_dir),
        "split": split,
        "shards_total": num_shards,
        "shards_written": len(plan.pending),
        "shards_skipped_finished": plan.skipped,
        "shards_missing": len(missing),
        "manifest": None,
    }
    if missing and merge:
        raise DataError(
            f"{out_dir}: {len(missing)} of {num_shards} shards are missing "
            f"or unfinished (first: {missing[0]}): run the worker that owns "
            "each (shard i belongs to --worker-index i % --num-workers), then "
            "merge again"
        )
    if merge:
        _verify_shards(out_dir, names, log)
    if missing:
        log(
            f"{len(missing)} of {num_shards} shards are still missing (other "
            "workers): the manifest is written by the run that finishes last"
        )
        return summary, None
    if not plan.pending and manifest_path.is_file() and not merge:
        log(f"{out_dir}: already complete, nothing to do")
        summary["manifest"] = str(manifest_path)
        summary["counts"] = json.loads(manifest_path.read_text("utf-8"))["counts"]
        return summary, None
    markers = [
        json.loads(_done_marker(out_dir, name).read_text(encoding="utf-8"))
        for name in names
    ]
    return summary, markers


class _ShardBuilder:
    """Turns source rows into serialised records (crop, patches, features)."""

    def __init__(self, req: PrepareRequest, extractor, fields) -> None:
        cfg = req.config
        self.layout = schema.get_layout(cfg.layout)
        self.cropper = make_cropper(
            cfg.crop.method,
            cfg.crop.threshold,
            cfg.crop.morph_kernel,
            cfg.crop.min_component_fraction,
            cfg.crop.margin,
        )
        self.crop_size = cfg.crop.output_size
        self.kpg = KaleidoPatchGenerator(
            self.layout, self.crop_size, cfg.backbone.patch_size
        )
        self.boxes = self.kpg.normalised_boxes()
        self.extractor = extractor
        self.fields = fields
        if self.layout.pixel_variants:
            self.level1 = self.layout.level_slice(schema.ROTATED_LEVEL)
            self.level4 = self.layout.level_slice(schema.GREYED_LEVEL)

    def pixels(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        """All patches of one image that the backbone embeds, and its crop box.

        Order: the P layout patches, then (kaleido) the 3 rotations of the level-1
        patch and the 16 greyed level-4 patches.
        """
        box = self.cropper.crop_box(image)
        crop = extract_crop(image, box, self.crop_size)
        patches = self.kpg.patches(crop)
        if self.layout.pixel_variants:
            level1 = patches[self.level1][0]
            patches = np.concatenate(
                [
                    patches,
                    rotations(level1, schema.NUM_ROTATIONS),
                    grey(patches[self.level4]),
                ]
            )
        return patches, box

    def records(self, items: list[dict[str, Any]]) -> list[bytes]:
        """Embeds the patches of ``items`` in one batched pass and serialises them."""
        from data_prep.tfrecord.example_codec import encode_record

        features = self.extractor(np.concatenate([it.pop("pixels") for it in items]))
        out, start = [], 0
        p = self.layout.num_patches
        for it in items:
            per_image = features[start : start + it.pop("num_pixels")]
            start += len(per_image)
            it["patch_features"] = per_image[:p]
            it.update(schema.empty_alignment())
            it["patch_boxes"] = self.boxes
            if self.layout.pixel_variants:
                it["rotated_features"] = per_image[p : p + schema.NUM_ROTATIONS]
                it["grey_features"] = per_image[p + schema.NUM_ROTATIONS :]
            out.append(encode_record(it, self.fields))
        return out


def prepare(req: PrepareRequest, log: Callable[[str], None] | None = None) -> dict:
    """Runs one conversion (or this worker's share of it). See the module docstring.

    Returns:
        A summary: output folder, shards written and skipped, counts, and whether
        the manifest was written.

    Raises:
        DataError, ConfigError, CheckpointError: bad input, reported before any
            output is written where the check allows it.
    """
    from tqdm import tqdm

    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    cfg = req.config
    check_worker_index(req)
    layout = schema.get_layout(cfg.layout)
    with FashionGenReader(req.h5_path, cfg.text.field) as reader:
        split = req.split or split_name(req.h5_path)
        req.out_dir.mkdir(parents=True, exist_ok=True)
        settings = _settings(req, reader.num_rows)
        _check_settings(req, settings, log)

        texts = encode_split_texts(
            reader,
            req.out_dir,
            cfg.text,
            req.vocab_path,
            req.categories_path,
            log,
        )
        products, counts = texts.products, texts.counts

        # Shards.
        plan = plan_request_shards(
            req, split, reader.num_rows, cfg.output.records_per_shard
        )
        names = plan.names
        if plan.pending:
            from data_prep.backbones.patch_feature_extractor import (
                PatchFeatureExtractor,
            )

            if req.backbone_weights is None:
                log(
                    f"warning: --backbone-weights none: {cfg.backbone.name} has "
                    f"random weights (seed {req.seed}); features are for demos and "
                    "tests only, and the manifest says so"
                )
            extractor = PatchFeatureExtractor(
                cfg.backbone.name,
                cfg.backbone.patch_size,
                req.backbone_weights,
                seed=req.seed,
                batch_size=cfg.backbone.batch_size,
            )
            fields = schema.record_fields(
                layout, cfg.text.max_seq_length, extractor.feature_dim
            )
            builder = _ShardBuilder(req, extractor, fields)
            total = sum(b - a for a, b in map(plan.rows, plan.pending))
            bar = tqdm(
                total=total,
                unit="img",
                desc=f"prepare {split}",
                disable=not req.progress,
                file=sys.stderr,
                dynamic_ncols=True,
            )

            def shard_records(start: int, stop: int, shard_counts: dict):
                batch: list[dict[str, Any]] = []
                for row, image in reader.iter_images(start, stop):
                    item = texts.text_values(row)
                    if item is None:
                        shard_counts["skipped_rows"] += 1
                        bar.update(1)
                        continue
                    pixels, box = builder.pixels(image)
                    shard_counts["crop_fallback"] += not box.found_foreground
                    item["crop_box"] = np.asarray(
                        [box.x1, box.y1, box.x2, box.y2], np.int64
                    )
                    item["pixels"] = pixels
                    item["num_pixels"] = len(pixels)
                    batch.append(item)
                    if len(batch) == cfg.output.images_per_batch:
                        yield from builder.records(batch)
                        bar.update(len(batch))
                        batch.clear()
                if batch:
                    yield from builder.records(batch)
                    bar.update(len(batch))

            with bar:
                for i in plan.pending:
                    start, stop = plan.rows(i)
                    shard_counts = {"records": 0, "skipped_rows": 0, "crop_fallback": 0}
                    write_shard(
                        req.out_dir,
                        names[i],
                        (start, stop),
                        shard_records(start, stop, shard_counts),
                        shard_counts,
                    )
                    log(
                        f"shard {names[i]}: {shard_counts['records']} records "
                        f"from rows {start}-{stop - 1}"
                    )
            backbone = extractor.describe()
            atomic_write_json(req.out_dir / "backbone.json", backbone)

        summary, shards = finish_shards(req.out_dir, plan, req.merge, split, log)
        if shards is None:
            return summary
        backbone_path = req.out_dir / "backbone.json"
        backbone = json.loads(backbone_path.read_text(encoding="utf-8"))
        counts["images"] = sum(s["records"] for s in shards)
        counts["products"] = len(products)
        counts["crop_fallback_full_image"] = sum(s["crop_fallback"] for s in shards)
        head = {
            **manifest_header(
                split, layout, backbone["feature_dim"], cfg.text.max_seq_length
            ),
            "backbone": backbone,
            "backbone_weights_random": backbone["weights"] is None,
            "crop": config_to_dict(cfg.crop),
            "text": config_to_dict(cfg.text),
        }
        return write_build_manifest(req, summary, head, texts, settings, counts, shards)
