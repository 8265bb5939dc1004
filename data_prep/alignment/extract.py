"""``kaleido-tf align extract``: token-patch pairs into the records of a prepared set.

For each shard: caption every image with the trained SAT captioner (beam search,
keeping each word's attention), turn the attention into pairs
(``AlignmentGenerator``), set the record's ``align_word_index``,
``align_patch_index`` and ``align_score`` (every other field is kept byte for byte),
and write the shard again under a temporary name, renamed over the old one when
complete. A marker ``<shard>.align.json`` records the checkpoint fingerprint, the
settings, the counts and the SHA-256 of the written shard, so a rerun skips shards
that are done and redoes any other. ``manifest.json`` gets an ``alignment`` entry
when every shard is done (and loses a stale one when a run starts).
``--num-workers K --worker-index w`` extracts only the shards i with i % K == w (in
the manifest's order), so several machines share a folder; the worker that finds
every shard done writes the entry (rerunning any worker afterwards does too).

Reference: Kaleido-BERT §3.3; kaleido_fashionbert.md §4.2 steps 2-6.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.alignment.alignment_generator import AlignmentGenerator, AlignmentPair
from data_prep.alignment.caption_vocab import basic_words
from data_prep.alignment.prepared_images import (
    ImageEntry,
    PreparedImages,
    entry_of,
    read_example,
)
from data_prep.alignment.trainer import LoadedCaptioner, load_captioner, sha256_file
from kaleido_tf import schema
from kaleido_tf.atomic_files import atomic_write_json
from kaleido_tf.config.alignment import AlignmentConfig
from kaleido_tf.config.loader import config_to_dict
from kaleido_tf.errors import ConfigError, DataError
from kaleido_tf.manifest import MANIFEST_NAME, write_manifest

MARKER_SUFFIX = ".align.json"


@dataclasses.dataclass(frozen=True)
class ExtractRequest:
    """One extraction.

    Attributes:
        data_dir: A prepared folder; its shards are rewritten in place.
        model_dir: A captioner folder written by ``kaleido-tf align train``.
        config: The resolved AlignmentConfig (``decode`` and ``pairs`` are used).
        checkpoint: A checkpoint prefix; default: the latest in ``model_dir``.
        source_h5: The Fashion-Gen file the data was prepared from (default: the
            manifest's).
        progress: Show a tqdm progress bar.
        command: The command line, recorded in the manifest.
        config_source: Where the config came from.
        num_workers: Processes sharing the shards.
        worker_index: This process's index in [0, num_workers).
    """

    data_dir: Path
    model_dir: Path
    config: AlignmentConfig
    checkpoint: Path | None = None
    source_h5: Path | None = None
    progress: bool = True
    command: str = ""
    config_source: str = ""
    num_workers: int = 1
    worker_index: int = 0


@dataclasses.dataclass
class ImageAlignment:
    """The captioner's output for one image and the pairs it gives.

    Attributes:
        entry: The record's ImageEntry.
        caption: The generated words.
        attention: float32 [n, h, w]: α_t of each generated word.
        raw_words: BERT basic tokens of the product text.
        pairs: The kept AlignmentPairs, best first.
        matched_words: How many generated words equal an alignable raw word.
        foreground: bool [S, S] product mask the regions were limited to, or None.
    """

    entry: ImageEntry
    caption: list[str]
    attention: np.ndarray
    raw_words: list[str]
    pairs: list[AlignmentPair]
    matched_words: int
    foreground: np.ndarray | None = None


def make_generator(config: AlignmentConfig, manifest: dict) -> AlignmentGenerator:
    """The AlignmentGenerator of a prepared folder, with the config's thresholds.

    Raises:
        ConfigError: ``pairs.levels`` names grids the folder's layout lacks.
    """
    layout = schema.get_layout(manifest["layout"])
    pairs = config.pairs
    missing = [n for n in pairs.levels if n not in layout.grids]
    if missing:
        raise ConfigError(
            f"pairs.levels {list(pairs.levels)}: the {layout.name} layout has no "
            f"{missing[0]}x{missing[0]} level (its grids are {list(layout.grids)}); "
            "set pairs.levels to grids of the layout"
        )
    return AlignmentGenerator(
        crop_size=int(manifest["crop"]["output_size"]),
        levels=pairs.levels,
        region_threshold=pairs.region_threshold,
        overlap_threshold=pairs.overlap_threshold,
        max_pairs=pairs.max_pairs,
        skip_stop_words=pairs.skip_stop_words,
        layout=layout,
    )


class AlignmentExtractor:
    """Captions images of a prepared folder and aligns their words with patches.

    Args:
        captioner: A LoadedCaptioner.
        images: The PreparedImages of the folder.
        generator: The AlignmentGenerator (``make_generator``).
        beam_size: K (K-Q10: 3).
        max_words: Longest caption (§4.2: 30).
        foreground_only: Limit regions to the product mask
            (``pairs.foreground_only``).

    Example:
        >>> extractor = AlignmentExtractor(load_captioner("sat"), images, generator)
        >>> results = extractor(images.entries()[:8])

    Reference: Kaleido-BERT §3.3; kaleido_fashionbert.md §4.2 steps 2-6.
    """

    def __init__(
        self,
        captioner: LoadedCaptioner,
        images: PreparedImages,
        generator: AlignmentGenerator,
        beam_size: int = 3,
        max_words: int = 30,
        foreground_only: bool = False,
    ) -> None:
        import tensorflow as tf

        self.foreground_only = foreground_only
        self.captioner = captioner
        self.images = images
        self.generator = generator
        self.beam_size = beam_size
        self.max_words = max_words
        model = captioner.model
        self._encode = tf.function(lambda x: model.encoder(x), reduce_retracing=True)

    def __call__(self, entries: Sequence[ImageEntry]) -> list[ImageAlignment]:
        """Captions and aligns a batch of images (one encoder/beam-search pass)."""
        from data_prep.alignment.beam_search import generate_captions

        if not entries:
            return []
        model, vocab = self.captioner.model, self.captioner.vocab
        crops = self.images.crops(list(entries), model.image_size)
        grid = self._encode(crops)
        result = generate_captions(model, grid, self.beam_size, self.max_words)
        texts = [self.images.text(e.product_id) for e in entries]
        raw = basic_words(texts, self.images.lower_case)
        h, w = model.grid_shape
        out = []
        for i, entry in enumerate(entries):
            words = [vocab.words[t] for t in result.tokens[i]]
            attention = result.attention[i].reshape(len(words), h, w)
            valid = set(entry.word_index[entry.word_index >= 0].tolist())
            fg = None
            if self.foreground_only:
                fg = self.images.foreground(entry, self.generator.crop_size)
            pairs = self.generator.align(words, attention, raw[i], valid, fg)
            alignable = {
                raw[i][r].lower()
                for r in valid
                if r < len(raw[i]) and self._alignable(raw[i][r])
            }
            matched = sum(word in alignable for word in words)
            out.append(
                ImageAlignment(entry, words, attention, raw[i], pairs, matched, fg)
            )
        return out

    def _alignable(self, word: str) -> bool:
        from data_prep.alignment.alignment_generator import is_alignable

        return is_alignable(word, self.generator.skip_stop_words)


def _settings(req: ExtractRequest, captioner: LoadedCaptioner) -> dict[str, Any]:
    return {
        "checkpoint_fingerprint": captioner.fingerprint,
        "decode": config_to_dict(req.config.decode),
        "pairs": config_to_dict(req.config.pairs),
    }


def _marker(data_dir: Path, shard: str) -> Path:
    return data_dir / f"{shard}{MARKER_SUFFIX}"


def _is_done(data_dir: Path, shard: str, settings: dict[str, Any]) -> bool:
    marker = _marker(data_dir, shard)
    if not marker.is_file() or not (data_dir / shard).is_file():
        return False
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return done.get("settings") == settings and done.get("sha256") == sha256_file(
        data_dir / shard
    )


def _set_alignment(example, fields: dict[str, np.ndarray]) -> bytes:
    import tensorflow as tf

    feature = example.features.feature
    for key, value in fields.items():
        if value.dtype == np.float32:
            new = tf.train.Feature(float_list=tf.train.FloatList(value=value.tolist()))
        else:
            new = tf.train.Feature(int64_list=tf.train.Int64List(value=value.tolist()))
        feature[key].CopyFrom(new)
    return example.SerializeToString(deterministic=True)


def _shard_counts(results: list[ImageAlignment], levels: dict[int, int]) -> dict:
    per_level = {str(n): 0 for n in sorted(set(levels.values()))}
    for r in results:
        for a in r.pairs:
            per_level[str(levels[a.patch_index])] += 1
    return {
        "images": len(results),
        "images_with_pairs": sum(bool(r.pairs) for r in results),
        "pairs": sum(len(r.pairs) for r in results),
        "pairs_per_level": per_level,
        "caption_words": sum(len(r.caption) for r in results),
        "matched_words": sum(r.matched_words for r in results),
    }


def extract_alignments(
    req: ExtractRequest, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Fills the alignment fields of every record. See the module docstring.

    Returns:
        A summary: shards written and skipped, the counts of the ``alignment``
        manifest entry.

    Raises:
        DataError, ConfigError, CheckpointError: bad input, before any shard is
            rewritten.
    """
    from tqdm import tqdm

    from data_prep.tfrecord.shard_writer import ShardWriter

    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    if not 0 <= req.worker_index < req.num_workers:
        raise DataError(
            f"--worker-index {req.worker_index} must be in [0, {req.num_workers})"
        )
    images = PreparedImages(req.data_dir, req.source_h5)
    manifest = images.manifest
    generator = make_generator(req.config, manifest)
    captioner = load_captioner(req.model_dir, req.checkpoint)
    settings = _settings(req, captioner)
    shards = images.shard_files
    mine = [s for i, s in enumerate(shards) if i % req.num_workers == req.worker_index]
    pending = [s for s in mine if not _is_done(req.data_dir, s, settings)]
    levels = dict(zip(generator.patch_index.tolist(), generator.patch_level.tolist()))
    if pending and "alignment" in manifest:
        # The folder is about to change: drop the entry until every shard agrees.
        manifest = {k: v for k, v in manifest.items() if k != "alignment"}
        write_manifest(req.data_dir, manifest)
    extractor = AlignmentExtractor(
        captioner,
        images,
        generator,
        req.config.decode.beam_size,
        req.config.decode.max_words,
        req.config.pairs.foreground_only,
    )
    records_of = {s["file"]: s["records"] for s in manifest["shards"]}
    bar = tqdm(
        total=sum(records_of[s] for s in pending),
        desc=f"align extract {manifest.get('split', '')}".strip(),
        unit="img",
        disable=not req.progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    batch_size = req.config.decode.batch_size
    with bar:
        for shard in pending:
            path = req.data_dir / shard
            raw_records = images.shard_records(shard)
            results: list[ImageAlignment] = []
            with ShardWriter(path) as writer:
                for a in range(0, len(raw_records), batch_size):
                    examples = [
                        read_example(r) for r in raw_records[a : a + batch_size]
                    ]
                    batch = extractor([entry_of(ex, shard) for ex in examples])
                    for ex, res in zip(examples, batch):
                        writer.write(
                            _set_alignment(ex, generator.record_fields(res.pairs))
                        )
                    results.extend(batch)
                    bar.update(len(examples))
                writer.commit()
            counts = _shard_counts(results, levels)
            atomic_write_json(
                _marker(req.data_dir, shard),
                {
                    "file": shard,
                    "sha256": sha256_file(path),
                    "settings": settings,
                    "counts": counts,
                },
            )
            log(
                f"shard {shard}: {counts['pairs']} pairs, "
                f"{counts['images_with_pairs']}/{counts['images']} images with pairs"
            )
    images.close()

    missing = [s for s in shards if not _is_done(req.data_dir, s, settings)]
    if missing:
        log(
            f"{len(missing)} of {len(shards)} shards are not extracted yet (other "
            "workers): the manifest entry is written by the run that finds all done"
        )
        return {
            "data_dir": str(req.data_dir),
            "shards_written": len(pending),
            "shards_skipped_done": len(mine) - len(pending),
            "shards_missing": len(missing),
            "manifest": None,
        }
    per_shard = [
        json.loads(_marker(req.data_dir, s).read_text(encoding="utf-8"))["counts"]
        for s in shards
    ]
    total: dict[str, Any] = {
        k: sum(c[k] for c in per_shard)
        for k in ("images", "images_with_pairs", "pairs", "caption_words")
    }
    total["matched_words"] = sum(c["matched_words"] for c in per_shard)
    total["pairs_per_level"] = {
        n: sum(c["pairs_per_level"].get(n, 0) for c in per_shard)
        for n in sorted({n for c in per_shard for n in c["pairs_per_level"]})
    }
    n = max(1, total["images"])
    total["mean_pairs_per_image"] = round(total["pairs"] / n, 4)
    total["mean_caption_words"] = round(total["caption_words"] / n, 4)
    total["mean_matched_words"] = round(total["matched_words"] / n, 4)
    summary = {
        "data_dir": str(req.data_dir),
        "shards_written": len(pending),
        "shards_skipped_done": len(mine) - len(pending),
        "counts": total,
    }
    manifest_path = req.data_dir / MANIFEST_NAME
    current = json.loads(manifest_path.read_text(encoding="utf-8"))
    entry = {
        "captioner": {
            "model_dir": str(req.model_dir.resolve()),
            "checkpoint": str(Path(captioner.checkpoint).resolve()),
            "fingerprint": captioner.fingerprint,
            "step": captioner.step,
            "encoder": captioner.info.get("encoder"),
        },
        "decode": settings["decode"],
        "pairs": settings["pairs"],
        "counts": total,
        "config_source": req.config_source,
        "command": req.command,
    }
    old = current.get("alignment") or {}
    same = all(
        old.get(k) == entry[k] for k in ("captioner", "decode", "pairs", "counts")
    )
    if pending or not same:
        entry["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        )
        current["alignment"] = entry
        write_manifest(req.data_dir, current)
    summary["manifest"] = str(manifest_path)
    return summary
