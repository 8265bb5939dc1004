"""``kaleido-tf prepare-pixels``: Fashion-Gen HDF5 -> JPEG + MIM teacher targets.

CommerceMM's image-text records (imagebert_interbert_commercemm.md §4.2, §4.11
row 6): one record per image with ``prepare``'s text fields, the image as a JPEG
at S x S (the KPG crop, or the full image with ``crop.method: none``), and its
teacher targets r(v) (``teacher_features``) and c(v) (``teacher_clusters``).

Two passes:

1. For each shard, crop, JPEG-encode, decode and embed every image with the frozen
   teacher (``PatchFeatureExtractor`` at S x S, global-average pooled: "pool5");
   the JPEGs, crop boxes and float16 features go to ``teacher_cache/<shard>.npz``.
   When every shard's cache exists, MiniBatchKMeans is fitted on all features and
   T is bisected (``teacher_clusters``); centroids and T go to
   ``teacher_clusters.npz``. A later split reuses the training split's file
   (``--teacher-clusters``), which is copied into its folder.
2. For each shard, the soft assignments are computed from the cached features and
   the records are written; the shard's cache is then deleted.

Shards (source rows [i*S, (i+1)*S)), ``.done.json`` markers, resume,
``--num-workers/--worker-index``, ``--merge``, atomic writes and the text side
(``encode_split_texts``) are ``data_prep.pipeline``'s. With several workers and no
``--teacher-clusters``, every worker runs pass 1 for its shards; worker 0 fits the
clusters once every cache is present in the (shared) folder; each worker is then
rerun for pass 2, and ``--merge`` writes the manifest.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

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
from data_prep.pixels.jpeg_images import JpegImageMaker, decode_jpeg
from data_prep.pixels.teacher_clusters import (
    CLUSTERS_NAME,
    TeacherClusters,
    fit_teacher_clusters,
)
from data_prep.readers.fashiongen_h5 import FashionGenReader
from kaleido_tf import schema
from kaleido_tf.atomic_files import atomic_write_bytes, atomic_write_json
from kaleido_tf.config.data_prep import PixelPrepareConfig
from kaleido_tf.config.loader import config_to_dict
from kaleido_tf.errors import CheckpointError, DataError
from kaleido_tf.manifest import manifest_header

CACHE_DIR = "teacher_cache"
TEACHER_NAME = "teacher_backbone.json"


@dataclasses.dataclass(frozen=True)
class PixelPrepareRequest:
    """One pixel-record conversion.

    Attributes:
        h5_path: Source Fashion-Gen ``.h5`` file.
        out_dir: Output folder.
        config: The resolved PixelPrepareConfig.
        backbone_weights: Local ``.h5`` notop weights of ``teacher.backbone``, or
            None for seeded random weights (only on an explicit
            ``--backbone-weights none``; demo and tests).
        teacher_clusters_path: ``teacher_clusters.npz`` of another build (the
            training split's), reused instead of fitting k-means here.
        vocab_path, categories_path, split, num_workers, worker_index,
        overwrite, seed, progress, command, config_source, merge: As in
            ``data_prep.pipeline.PrepareRequest``.
    """

    h5_path: Path
    out_dir: Path
    config: PixelPrepareConfig
    backbone_weights: Path | None
    teacher_clusters_path: Path | None = None
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


def _check_inputs(req: PixelPrepareRequest) -> None:
    check_worker_index(req)
    if req.backbone_weights is not None and not Path(req.backbone_weights).is_file():
        raise CheckpointError(
            f"backbone weights {req.backbone_weights} not found: give the local .h5 "
            f"file of {req.config.teacher.backbone} (include_top=False), or "
            "`--backbone-weights none`"
        )
    if req.teacher_clusters_path is not None:
        TeacherClusters.load(req.teacher_clusters_path)  # refuse a bad file early
    if not isinstance(schema.get_layout(req.config.layout), schema.PixelLayout):
        raise DataError(f"layout {req.config.layout!r} is not a pixel layout")


def _settings(req: PixelPrepareRequest, num_rows: int) -> dict[str, Any]:
    src = req.h5_path.resolve()
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "config": config_to_dict(req.config),
        "source": {"path": str(src), "bytes": src.stat().st_size, "rows": num_rows},
        "backbone_weights_sha256": (
            sha256_file(req.backbone_weights) if req.backbone_weights else None
        ),
        "random_init_seed": None if req.backbone_weights else req.seed,
        "teacher_clusters_sha256": (
            sha256_file(req.teacher_clusters_path)
            if req.teacher_clusters_path
            else None
        ),
        "vocab_sha256": sha256_file(req.vocab_path) if req.vocab_path else None,
        "categories_sha256": (
            sha256_file(req.categories_path) if req.categories_path else None
        ),
        "split": req.split or split_name(req.h5_path),
    }


def _start_or_resume(out_dir: Path, overwrite: bool, settings: dict, log) -> None:
    """``check_settings``, and on a fresh start also drops pass-1 leftovers."""
    try:
        old = json.loads((out_dir / SETTINGS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    check_settings(out_dir, overwrite, settings, log)
    if old != settings:
        shutil.rmtree(out_dir / CACHE_DIR, ignore_errors=True)
        for name in (CLUSTERS_NAME, TEACHER_NAME):
            (out_dir / name).unlink(missing_ok=True)


def cache_path(out_dir: Path, shard: str) -> Path:
    """The pass-1 cache of one shard: JPEGs, crop boxes and teacher features."""
    return out_dir / CACHE_DIR / f"{shard}.npz"


def _write_cache(path: Path, rows, boxes, found, jpegs, features) -> None:
    offsets = np.cumsum([0] + [len(j) for j in jpegs]).astype(np.int64)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        rows=np.asarray(rows, np.int64),
        crop_boxes=np.asarray(boxes, np.int64).reshape(-1, 4),
        found_foreground=np.asarray(found, bool),
        jpeg_data=np.frombuffer(b"".join(jpegs), np.uint8),
        jpeg_offsets=offsets,
        features=np.asarray(features, np.float16),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def read_cache(path: Path) -> dict[str, Any]:
    """One shard's pass-1 cache: rows, crop_boxes, found_foreground, jpegs (list
    of bytes) and features (float16 [n, D_t])."""
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    raw, off = data.pop("jpeg_data").tobytes(), data.pop("jpeg_offsets")
    data["jpegs"] = [raw[off[i] : off[i + 1]] for i in range(len(off) - 1)]
    return data


def _embed_shard(reader, texts, maker, extractor, start, stop, batch, bar):
    """Pass 1 of one shard: returns the cache arrays."""
    rows, boxes, found, jpegs, features, pending = [], [], [], [], [], []

    def flush():
        if pending:
            features.append(extractor(np.stack(pending)).astype(np.float16))
            bar.update(len(pending))
            pending.clear()

    for row, image in reader.iter_images(start, stop):
        if texts.product_of_row[row] < 0:
            bar.update(1)
            continue
        jpeg, box = maker(image)
        rows.append(row)
        boxes.append([box.x1, box.y1, box.x2, box.y2])
        found.append(box.found_foreground)
        jpegs.append(jpeg)
        pending.append(decode_jpeg(jpeg))
        if len(pending) == batch:
            flush()
    flush()
    d = extractor.feature_dim
    feats = np.concatenate(features) if features else np.zeros((0, d), np.float16)
    return rows, boxes, found, jpegs, feats


def _read_teacher(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(
            f"{path} not found: copy it from a worker beside the shards, or rerun "
            "pass 1 (delete the .done.json markers of the shards)"
        )
    return json.loads(path.read_text("utf-8"))


def _clusters(req, plan, teacher: dict, log) -> TeacherClusters | None:
    """Loads, copies or fits the teacher clusters; None while caches are missing."""
    out_path = req.out_dir / CLUSTERS_NAME
    cfg = req.config.teacher
    if not out_path.is_file():
        if req.teacher_clusters_path is not None:
            given = TeacherClusters.load(req.teacher_clusters_path)
            atomic_write_bytes(out_path, Path(req.teacher_clusters_path).read_bytes())
            log(f"teacher clusters: reusing {req.teacher_clusters_path}")
        else:
            if req.worker_index != 0:
                log(
                    "pass 1 done for this worker; worker 0 fits the k-means clusters "
                    "once every shard's teacher_cache is present: rerun this worker "
                    "afterwards for pass 2"
                )
                return None
            missing = [
                n for n in plan.names if not cache_path(req.out_dir, n).is_file()
            ]
            if missing:
                log(
                    f"{len(missing)} shards have no teacher_cache yet (other "
                    f"workers; first: {missing[0]}): rerun worker 0 when they finish"
                )
                return None
            features = np.concatenate(
                [read_cache(cache_path(req.out_dir, n))["features"] for n in plan.names]
            ).astype(np.float32)
            log(
                f"fitting {cfg.num_clusters} k-means clusters on {len(features)} "
                f"teacher features (D_t = {features.shape[1]})"
            )
            given = fit_teacher_clusters(
                features,
                cfg.num_clusters,
                cfg.target_max_probability,
                cfg.kmeans_seed,
                cfg.kmeans_batch_size,
                cfg.kmeans_max_iter,
                cfg.temperature_images,
                teacher["fingerprint"],
            )
            given.save(out_path)
            log(
                f"teacher clusters: T = {given.temperature:.6g}, mean max-probability "
                f"{given.mean_max_probability:.4f} on {given.temperature_images} images"
            )
    clusters = TeacherClusters.load(out_path)
    if clusters.backbone_fingerprint != teacher["fingerprint"]:
        raise DataError(
            f"{out_path} was fitted on the features of another teacher (fingerprint "
            f"{clusters.backbone_fingerprint}, this one {teacher['fingerprint']}): "
            "use the same backbone, weights and seed as the training split's build"
        )
    if (clusters.num_clusters, clusters.feature_dim) != (
        cfg.num_clusters,
        teacher["feature_dim"],
    ):
        raise DataError(
            f"{out_path} has {clusters.num_clusters} clusters of "
            f"{clusters.feature_dim}-d features, the config needs "
            f"{cfg.num_clusters} of {teacher['feature_dim']}-d: set "
            "teacher.num_clusters to match, or fit new clusters"
        )
    return clusters


def prepare_pixels(
    req: PixelPrepareRequest, log: Callable[[str], None] | None = None
) -> dict:
    """Runs one pixel conversion (or this worker's share). See the module docstring.

    Returns:
        A summary: output folder, shards written and skipped, counts, whether the
        manifest was written, or what pass 1 is waiting for.

    Raises:
        DataError, ConfigError, CheckpointError: bad input, reported before any
            output is written where the check allows it.
    """
    from tqdm import tqdm

    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    cfg = req.config
    _check_inputs(req)
    layout = schema.get_layout(cfg.layout)
    size = cfg.crop.output_size
    if size != layout.image_size:
        log(
            f"deviation: images are {size} x {size} (crop.output_size), not the "
            f"layout's {layout.image_size}; the manifest records image_size={size}"
        )
    with FashionGenReader(req.h5_path, cfg.text.field) as reader:
        split = req.split or split_name(req.h5_path)
        req.out_dir.mkdir(parents=True, exist_ok=True)
        settings = _settings(req, reader.num_rows)
        _start_or_resume(req.out_dir, req.overwrite, settings, log)
        texts = encode_split_texts(
            reader, req.out_dir, cfg.text, req.vocab_path, req.categories_path, log
        )
        counts = texts.counts
        plan = plan_request_shards(
            req, split, reader.num_rows, cfg.output.records_per_shard
        )
        names = plan.names
        teacher_path = req.out_dir / TEACHER_NAME

        # Pass 1: JPEGs and teacher features of this worker's unfinished shards.
        to_embed = [
            i for i in plan.pending if not cache_path(req.out_dir, names[i]).is_file()
        ]
        if to_embed:
            from data_prep.backbones.patch_feature_extractor import (
                PatchFeatureExtractor,
            )

            if req.backbone_weights is None:
                log(
                    f"warning: --backbone-weights none: {cfg.teacher.backbone} has "
                    f"random weights (seed {req.seed}); teacher targets are for "
                    "demos and tests only, and the manifest says so"
                )
            extractor = PatchFeatureExtractor(
                cfg.teacher.backbone,
                size,
                req.backbone_weights,
                seed=req.seed,
                batch_size=cfg.teacher.batch_size,
            )
            teacher = extractor.describe()
            if teacher_path.is_file():
                old = json.loads(teacher_path.read_text("utf-8"))
                if old["fingerprint"] != teacher["fingerprint"]:
                    raise DataError(
                        f"{teacher_path}: other workers embedded with another "
                        "teacher (fingerprint differs): give every worker the same "
                        "--backbone-weights and --seed"
                    )
            atomic_write_json(teacher_path, teacher)
            maker = JpegImageMaker(cfg.crop, cfg.jpeg_quality)
            bar = tqdm(
                total=sum(b - a for a, b in map(plan.rows, to_embed)),
                unit="img",
                desc=f"prepare-pixels {split}: teacher",
                disable=not req.progress,
                file=sys.stderr,
                dynamic_ncols=True,
            )
            with bar:
                for i in to_embed:
                    start, stop = plan.rows(i)
                    arrays = _embed_shard(
                        reader,
                        texts,
                        maker,
                        extractor,
                        start,
                        stop,
                        cfg.teacher.batch_size,
                        bar,
                    )
                    _write_cache(cache_path(req.out_dir, names[i]), *arrays)
        clusters = None
        if plan.pending:
            teacher = _read_teacher(teacher_path)
            clusters = _clusters(req, plan, teacher, log)
            if clusters is None:
                return {
                    "out_dir": str(req.out_dir),
                    "split": split,
                    "shards_embedded": len(to_embed),
                    "shards_written": 0,
                    "manifest": None,
                    "waiting_for": "k-means clusters (see the log)",
                }

        # Pass 2: records.
        if plan.pending:
            from data_prep.tfrecord.example_codec import encode_record

            fields = schema.record_fields(
                layout,
                cfg.text.max_seq_length,
                teacher["feature_dim"],
                num_clusters=clusters.num_clusters,
            )
            bar = tqdm(
                total=sum(b - a for a, b in map(plan.rows, plan.pending)),
                unit="img",
                desc=f"prepare-pixels {split}: records",
                disable=not req.progress,
                file=sys.stderr,
                dynamic_ncols=True,
            )

            def shard_records(cache: dict, shard_counts: dict):
                probs = clusters.probabilities(cache["features"].astype(np.float32))
                for k, row in enumerate(cache["rows"].tolist()):
                    item = texts.text_values(row)
                    item["image_jpeg"] = cache["jpegs"][k]
                    item["crop_box"] = cache["crop_boxes"][k]
                    item["teacher_features"] = cache["features"][k]
                    item["teacher_clusters"] = probs[k]
                    shard_counts["crop_fallback"] += int(
                        not cache["found_foreground"][k]
                    )
                    shard_counts["max_probability_sum"] += float(probs[k].max())
                    bar.update(1)
                    yield encode_record(item, fields)

            with bar:
                for i in plan.pending:
                    start, stop = plan.rows(i)
                    path = cache_path(req.out_dir, names[i])
                    cache = read_cache(path)
                    shard_counts = {
                        "records": 0,
                        "skipped_rows": (stop - start) - len(cache["rows"]),
                        "crop_fallback": 0,
                        "max_probability_sum": 0.0,
                    }
                    bar.update(shard_counts["skipped_rows"])
                    write_shard(
                        req.out_dir,
                        names[i],
                        (start, stop),
                        shard_records(cache, shard_counts),
                        shard_counts,
                    )
                    path.unlink()
                    log(
                        f"shard {names[i]}: {shard_counts['records']} records "
                        f"from rows {start}-{stop - 1}"
                    )

        summary, shards = finish_shards(req.out_dir, plan, req.merge, split, log)
        if shards is None:
            return summary
        clusters_path = req.out_dir / CLUSTERS_NAME
        teacher = _read_teacher(teacher_path)
        if clusters is None:
            clusters = TeacherClusters.load(clusters_path)
        images = sum(s["records"] for s in shards)
        counts["images"] = images
        counts["products"] = len(texts.products)
        counts["crop_fallback_full_image"] = sum(s["crop_fallback"] for s in shards)
        counts["mean_max_probability"] = (
            sum(s["max_probability_sum"] for s in shards) / images if images else None
        )
        head = {
            **manifest_header(
                split, layout, teacher["feature_dim"], cfg.text.max_seq_length
            ),
            "image_size": size,
            "image_source": "kpg_crop" if cfg.crop.method != "none" else "full_image",
            "jpeg_quality": cfg.jpeg_quality,
            "num_clusters": clusters.num_clusters,
            "teacher": {
                "backbone": teacher,
                "pooling": "global average of the last conv block (pool5)",
                "input": "the decoded JPEG of the record, S x S",
                "weights_sha256": settings["backbone_weights_sha256"],
                "random_init_seed": teacher["random_init_seed"],
                "feature_dim": teacher["feature_dim"],
                "num_clusters": clusters.num_clusters,
                "temperature": clusters.temperature,
                "target_max_probability": clusters.target_max_probability,
                "mean_max_probability_fit": clusters.mean_max_probability,
                "kmeans": "sklearn MiniBatchKMeans",
                "kmeans_seed": clusters.kmeans_seed,
                "fit_images": clusters.fit_images,
                "temperature_images": clusters.temperature_images,
                "clusters_file": CLUSTERS_NAME,
                "clusters_sha256": sha256_file(clusters_path),
                "clusters_fitted_on": (
                    str(Path(req.teacher_clusters_path).resolve())
                    if req.teacher_clusters_path
                    else f"this build ({split})"
                ),
            },
            "backbone_weights_random": teacher["weights"] is None,
            "crop": config_to_dict(cfg.crop),
            "text": config_to_dict(cfg.text),
        }
        return write_build_manifest(
            req, summary, head, texts, settings, counts, shards, SETTINGS_NAME
        )
