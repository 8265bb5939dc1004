"""``kaleido-tf prepare-regions``: Fashion-Gen HDF5 -> detector regions -> TFRecords.

The text side is exactly ``kaleido-tf prepare``'s (``encode_split_texts``: same
image ids ``'<product id>_<pose index>'``, WordPiece ids, ``products.jsonl``,
``vocab.txt``, ``categories.json``); the visual side is up to R regions per image
(``schema.region_fields``) from one region source:

* ``savedmodel``: a TF2 detection SavedModel run on each image, with RoIAlign
  features of the project's backbone (``detector_regions``);
* ``bottom_up_tsv`` / ``bottom_up_npz``: bottom-up-attention feature files keyed
  by image id (``bottom_up_features``).

Shards, ``.done.json`` markers, resume, ``--num-workers/--worker-index``,
``--merge`` and atomic writes are ``data_prep.pipeline``'s. The manifest is
``manifest_header`` + ``num_classes``, ``class_distribution`` and a ``detector``
entry (kind, path, SHA-256, class names, backbone for the RoIAlign path).

Reference: imagebert_interbert_commercemm.md §2.2, §2.8, §2.10 item 1.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_prep.pipeline import (
    SETTINGS_NAME,
    check_settings,
    check_worker_index,
    encode_split_texts,
    finish_shards,
    plan_request_shards,
    sha256_file,
    split_name,
    write_build_manifest,
    write_shard,
)
from data_prep.readers.fashiongen_h5 import FashionGenReader
from data_prep.regions.region_records import region_values
from kaleido_tf import schema
from kaleido_tf.atomic_files import atomic_write_json
from kaleido_tf.config.data_prep import RegionPrepareConfig
from kaleido_tf.config.loader import config_to_dict
from kaleido_tf.errors import DataError
from kaleido_tf.manifest import manifest_header

DETECTOR_NAME = "detector.json"
SOURCE_KINDS = ("savedmodel", "bottom_up_tsv", "bottom_up_npz")


@dataclasses.dataclass(frozen=True)
class RegionPrepareRequest:
    """One region conversion.

    Attributes:
        h5_path: Source Fashion-Gen ``.h5`` file.
        out_dir: Output folder.
        config: The resolved RegionPrepareConfig.
        source_kind: ``savedmodel``, ``bottom_up_tsv`` or ``bottom_up_npz``.
        source_paths: The SavedModel folder, the TSV file(s), or the NPZ folder.
        backbone_weights: ``savedmodel`` only: local ``.h5`` weights of the
            RoIAlign backbone, or None for seeded random weights.
        class_names_path: One object-class name per line (e.g. Visual Genome's
            ``objects_vocab.txt``); default for a SavedModel: its
            ``class_names.txt`` if present.
        vocab_path, categories_path, split, num_workers, worker_index,
        overwrite, seed, progress, command, config_source, merge: As in
            ``data_prep.pipeline.PrepareRequest``.
    """

    h5_path: Path
    out_dir: Path
    config: RegionPrepareConfig
    source_kind: str
    source_paths: tuple[Path, ...]
    backbone_weights: Path | None = None
    class_names_path: Path | None = None
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


def _source_identity(req: RegionPrepareRequest) -> dict[str, Any]:
    """Kind, resolved paths and a content digest of the region source (settings)."""
    paths = [Path(p) for p in req.source_paths]
    for p in paths:
        if not p.exists():
            raise DataError(f"{req.source_kind} source {p} not found")
    if req.source_kind == "savedmodel":
        digest = (
            [sha256_file(paths[0] / "saved_model.pb")]
            if (paths[0] / "saved_model.pb").is_file()
            else [None]
        )
    elif req.source_kind == "bottom_up_tsv":
        digest = [sha256_file(p) for p in paths]
    else:
        digest = [None]  # per-file listing digest: see BottomUpNPZ.describe
    return {
        "kind": req.source_kind,
        "paths": [str(p.resolve()) for p in paths],
        "sha256": digest,
        "backbone_weights_sha256": (
            sha256_file(req.backbone_weights) if req.backbone_weights else None
        ),
        "random_init_seed": (
            req.seed
            if req.source_kind == "savedmodel" and not req.backbone_weights
            else None
        ),
        "class_names_sha256": (
            sha256_file(req.class_names_path) if req.class_names_path else None
        ),
    }


def _settings(req: RegionPrepareRequest, num_rows: int, source: dict) -> dict:
    src = req.h5_path.resolve()
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "config": config_to_dict(req.config),
        "source": {"path": str(src), "bytes": src.stat().st_size, "rows": num_rows},
        "region_source": source,
        "vocab_sha256": sha256_file(req.vocab_path) if req.vocab_path else None,
        "categories_sha256": (
            sha256_file(req.categories_path) if req.categories_path else None
        ),
        "split": req.split or split_name(req.h5_path),
    }


def _read_names(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    if not path.is_file():
        raise DataError(f"class names file {path} not found")
    return [n for n in path.read_text(encoding="utf-8").splitlines() if n.strip()]


class _RegionSource:
    """One interface over the three sources: ``detections(image_id, image)``."""

    def __init__(
        self, req: RegionPrepareRequest, log, identity: dict | None = None
    ) -> None:
        cfg = req.config
        self.kind = req.source_kind
        self.identity = identity
        layout = schema.get_layout(cfg.layout)
        if self.kind == "savedmodel":
            from data_prep.regions.detector_regions import DetectorRegionSource

            if len(req.source_paths) != 1:
                raise DataError("--detector takes one SavedModel folder")
            if req.backbone_weights is None:
                log(
                    f"warning: --backbone-weights none: {cfg.backbone.name} has "
                    f"random weights (seed {req.seed}); RoI features are for demos "
                    "and tests only, and the manifest says so"
                )
            self.source = DetectorRegionSource(
                req.source_paths[0],
                layout.max_regions,
                cfg.backbone.name,
                cfg.backbone.image_size,
                cfg.backbone.output_layer,
                roi_size=cfg.backbone.roi_size,
                weights=req.backbone_weights,
                seed=req.seed,
                class_names_path=req.class_names_path,
            )
            if self.source.feature_dim != cfg.regions.feature_dim:
                raise DataError(
                    f"backbone {cfg.backbone.name} at {cfg.backbone.output_layer} "
                    f"gives {self.source.feature_dim}-d features, but "
                    f"regions.feature_dim is {cfg.regions.feature_dim}: change one "
                    "of them"
                )
            c = self.source.num_classes
            if c is not None and c != cfg.regions.num_classes:
                raise DataError(
                    f"detector {req.source_paths[0]} has {c} object classes, but "
                    f"regions.num_classes is {cfg.regions.num_classes}: set it to {c}"
                )
            self.class_names = self.source.class_names
        elif self.kind == "bottom_up_tsv":
            from data_prep.regions.bottom_up_features import BottomUpTSV

            self.source = BottomUpTSV(req.source_paths)
            self.class_names = _read_names(req.class_names_path)
        elif self.kind == "bottom_up_npz":
            from data_prep.regions.bottom_up_features import BottomUpNPZ

            if len(req.source_paths) != 1:
                raise DataError("--bottom-up-npz takes one folder")
            self.source = BottomUpNPZ(req.source_paths[0])
            self.class_names = _read_names(req.class_names_path)
        else:
            raise DataError(f"unknown region source {self.kind!r}: {SOURCE_KINDS}")
        if (
            self.class_names is not None
            and len(self.class_names) != cfg.regions.num_classes
        ):
            raise DataError(
                f"{len(self.class_names)} class names, but regions.num_classes is "
                f"{cfg.regions.num_classes}: give the matching names file"
            )

    @property
    def needs_images(self) -> bool:
        return self.kind == "savedmodel"

    def check_ids(self, image_ids: list[str]) -> None:
        """Refuses a feature-file source that lacks any of ``image_ids``."""
        if self.needs_images:
            return
        missing = [i for i in image_ids if i not in self.source]
        if missing:
            raise DataError(
                f"the {self.kind} source lacks {len(missing)} of {len(image_ids)} "
                f"image ids (e.g. {', '.join(missing[:5])}); ids are "
                "'<product id>_<pose index>' with 1-based poses in source row order: "
                "extract features for these images or fix their ids"
            )

    def detections(self, image_id: str, image):
        if self.needs_images:
            return self.source(image)
        return self.source.get(image_id)

    def describe(self, image_ids: list[str]) -> dict:
        if self.kind == "bottom_up_npz":
            entry = self.source.describe(image_ids)
        elif self.kind == "bottom_up_tsv" and self.identity is not None:
            # The files were hashed for build_settings.json: not again.
            entry = {
                "kind": self.kind,
                "path": self.identity["paths"],
                "sha256": self.identity["sha256"],
            }
        else:
            entry = self.source.describe()
        if entry.get("class_names") is None:
            entry["class_names"] = self.class_names
        return entry

    def close(self) -> None:
        if hasattr(self.source, "close"):
            self.source.close()


def prepare_regions(
    req: RegionPrepareRequest, log: Callable[[str], None] | None = None
) -> dict:
    """Runs one region conversion (or this worker's share). See the module docstring.

    Returns:
        A summary: output folder, shards written and skipped, counts, and whether
        the manifest was written.

    Raises:
        DataError, ConfigError, CheckpointError: bad input; a source that lacks
            an image id, or has another D or C, is refused before any shard is
            written.
    """
    from tqdm import tqdm

    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    cfg = req.config
    check_worker_index(req)
    if req.source_kind not in SOURCE_KINDS:
        raise DataError(f"unknown region source {req.source_kind!r}: {SOURCE_KINDS}")
    layout = schema.get_layout(cfg.layout)
    if not isinstance(layout, schema.RegionLayout):
        raise DataError(f"layout {cfg.layout!r} is not a region layout")
    regions = cfg.regions
    fields = schema.record_fields(
        layout,
        cfg.text.max_seq_length,
        regions.feature_dim,
        num_classes=regions.num_classes,
        class_distribution=regions.class_distribution,
    )
    with FashionGenReader(req.h5_path, cfg.text.field) as reader:
        split = req.split or split_name(req.h5_path)
        identity = _source_identity(req)
        req.out_dir.mkdir(parents=True, exist_ok=True)
        settings = _settings(req, reader.num_rows, identity)
        check_settings(req.out_dir, req.overwrite, settings, log)
        texts = encode_split_texts(
            reader, req.out_dir, cfg.text, req.vocab_path, req.categories_path, log
        )
        counts = texts.counts
        plan = plan_request_shards(
            req, split, reader.num_rows, cfg.output.records_per_shard
        )
        names = plan.names
        if plan.pending:
            from data_prep.tfrecord.example_codec import encode_record

            source = _RegionSource(req, log, identity)
            try:
                my_ids = [
                    image_id
                    for i in plan.pending
                    for image_id in map(texts.image_id, range(*plan.rows(i)))
                    if image_id is not None
                ]
                source.check_ids(my_ids)
                if my_ids and not source.needs_images:
                    # Refuse another D or C before anything is written.
                    region_values(
                        source.detections(my_ids[0], None),
                        layout,
                        regions.feature_dim,
                        regions.num_classes,
                        regions.class_distribution,
                        where=f"image {my_ids[0]}",
                    )
                atomic_write_json(
                    req.out_dir / DETECTOR_NAME,
                    source.describe(
                        [i for i in map(texts.image_id, range(reader.num_rows)) if i]
                    ),
                )
                total = sum(b - a for a, b in map(plan.rows, plan.pending))
                bar = tqdm(
                    total=total,
                    unit="img",
                    desc=f"prepare-regions {split}",
                    disable=not req.progress,
                    file=sys.stderr,
                    dynamic_ncols=True,
                )

                def shard_records(start: int, stop: int, shard_counts: dict):
                    if source.needs_images:
                        rows = reader.iter_images(start, stop)
                    else:
                        rows = ((row, None) for row in range(start, stop))
                    for row, image in rows:
                        item = texts.text_values(row)
                        bar.update(1)
                        if item is None:
                            shard_counts["skipped_rows"] += 1
                            continue
                        image_id = item["image_id"].decode()
                        det = source.detections(image_id, image)
                        item.update(
                            region_values(
                                det,
                                layout,
                                regions.feature_dim,
                                regions.num_classes,
                                regions.class_distribution,
                                where=f"image {image_id} (row {row})",
                            )
                        )
                        shard_counts["regions"] += int(item["num_regions"])
                        shard_counts["empty_images"] += int(item["num_regions"]) == 0
                        yield encode_record(item, fields)

                with bar:
                    for i in plan.pending:
                        start, stop = plan.rows(i)
                        shard_counts = {
                            "records": 0,
                            "skipped_rows": 0,
                            "regions": 0,
                            "empty_images": 0,
                        }
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
            finally:
                source.close()

        summary, shards = finish_shards(req.out_dir, plan, req.merge, split, log)
        if shards is None:
            return summary
        detector_path = req.out_dir / DETECTOR_NAME
        if not detector_path.is_file():  # --merge in a folder without it
            source = _RegionSource(req, log, identity)
            try:
                all_ids = [i for i in map(texts.image_id, range(reader.num_rows)) if i]
                atomic_write_json(detector_path, source.describe(all_ids))
            finally:
                source.close()
        detector = json.loads(detector_path.read_text("utf-8"))
        counts["images"] = sum(s["records"] for s in shards)
        counts["products"] = len(texts.products)
        counts["regions"] = sum(s["regions"] for s in shards)
        counts["images_without_regions"] = sum(s["empty_images"] for s in shards)
        head = {
            **manifest_header(
                split, layout, regions.feature_dim, cfg.text.max_seq_length
            ),
            "num_classes": regions.num_classes,
            "class_distribution": regions.class_distribution,
            "max_regions": layout.max_regions,
            "detector": detector,
            "backbone_weights_random": (
                detector["kind"] == "savedmodel"
                and detector["backbone"]["weights"] is None
            ),
            "text": config_to_dict(cfg.text),
        }
        return write_build_manifest(
            req, summary, head, texts, settings, counts, shards, SETTINGS_NAME
        )
