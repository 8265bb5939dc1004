"""``kaleido-tf prepare-omni``: Fashion-Gen multi-view products -> Omni tuples.

CommerceMM's Omni-Retrieval data (imagebert_interbert_commercemm.md §4.5, §4.8
table, §4.11 rows 14 and 22) is internal; the spec's Fashion-Gen substitute pairs
each product with two kinds of source (``schema.OMNI_KINDS``):

* ``view_to_product`` (source 1 of the §4.8 table): an alternate view image,
  text missing (δ^T = 0) -> the product page (main view image + text);
* ``title_to_product`` (source 2, with the title as a pseudo search query): the
  title alone, image missing (δ^I = 0) -> the product page.

The main view is ``omni.main_pose`` (1-based file order within the product, as
``prepare``'s ``pose_index``; default 1: Fashion-Gen marks no main view, its first
view is the front shot); every other view is an alternate. A missing image is
stored as mid-grey pixels (128) and a missing text as ``[CLS] [SEP]`` (spec §4.2);
``*_has_image`` / ``*_has_text`` carry δ. Images are prepared as in
``prepare-pixels`` (KPG crop or full image, S x S JPEG); target texts are
``prepare``'s (``encode_split_texts``, ``text.field``), titles are encoded with the
same vocabulary. Products with an empty target text are skipped, as in
``prepare``.

Shard i holds the tuples of products [i*S, (i+1)*S) in ``products.jsonl`` order
(S = ``output.records_per_shard`` products), so the ``rows`` of a shard marker are
product indices. Resume, workers, ``--merge`` and atomic writes are
``data_prep.pipeline``'s.
"""

from __future__ import annotations

import dataclasses
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
from data_prep.pixels.jpeg_images import JpegImageMaker, grey_jpeg
from data_prep.readers.fashiongen_h5 import FashionGenReader
from kaleido_tf import schema
from kaleido_tf.config.data_prep import PixelPrepareConfig
from kaleido_tf.config.loader import config_to_dict
from kaleido_tf.manifest import manifest_header

OMNI_LAYOUT = "omni_tuples224"


@dataclasses.dataclass(frozen=True)
class OmniPrepareRequest:
    """One Omni-tuple conversion.

    Attributes:
        h5_path: Source Fashion-Gen ``.h5`` file.
        out_dir: Output folder.
        config: The resolved PixelPrepareConfig (``crop``, ``jpeg_quality``,
            ``omni``, ``text``, ``output``).
        vocab_path, categories_path, split, num_workers, worker_index,
        overwrite, progress, command, config_source, merge: As in
            ``data_prep.pipeline.PrepareRequest``.
    """

    h5_path: Path
    out_dir: Path
    config: PixelPrepareConfig
    vocab_path: Path | None = None
    categories_path: Path | None = None
    split: str | None = None
    num_workers: int = 1
    worker_index: int = 0
    overwrite: bool = False
    progress: bool = True
    command: str = ""
    config_source: str = ""
    merge: bool = False


def _settings(req: OmniPrepareRequest, num_rows: int) -> dict[str, Any]:
    src = req.h5_path.resolve()
    cfg = config_to_dict(req.config)
    cfg.pop("teacher")  # not used here
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "kind": "omni_tuples",
        "config": cfg,
        "source": {"path": str(src), "bytes": src.stat().st_size, "rows": num_rows},
        "vocab_sha256": sha256_file(req.vocab_path) if req.vocab_path else None,
        "categories_sha256": (
            sha256_file(req.categories_path) if req.categories_path else None
        ),
        "split": req.split or split_name(req.h5_path),
    }


def _query_texts(h5_path: Path, field: str) -> dict[int, str]:
    with FashionGenReader(h5_path, field) as reader:
        return {p.product_id: p.text for p in reader.products()}


def _product_images(reader, maker, rows: list[int]) -> dict[int, tuple[bytes, bool]]:
    """JPEG and found-foreground flag of each wanted row (read in row ranges)."""
    wanted = set(rows)
    out: dict[int, tuple[bytes, bool]] = {}
    for row, image in reader.iter_images(min(rows), max(rows) + 1):
        if row in wanted:
            jpeg, box = maker(image)
            out[row] = (jpeg, box.found_foreground)
    return out


def prepare_omni_tuples(
    req: OmniPrepareRequest, log: Callable[[str], None] | None = None
) -> dict:
    """Runs one Omni-tuple conversion (or this worker's share); see the module
    docstring.

    Returns:
        A summary: output folder, shards written and skipped, counts per kind,
        and whether the manifest was written.

    Raises:
        DataError, ConfigError: bad input, before any output is written where
            the check allows it.
    """
    from tqdm import tqdm

    from data_prep.text.wordpiece import WordPieceEncoder

    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    cfg = req.config
    omni = cfg.omni
    check_worker_index(req)
    layout = schema.get_layout(OMNI_LAYOUT)
    size = cfg.crop.output_size
    if size != layout.image_size:
        log(
            f"deviation: images are {size} x {size} (crop.output_size), not the "
            f"layout's {layout.image_size}; the manifest records image_size={size}"
        )
    fields = schema.record_fields(layout, cfg.text.max_seq_length, 0)
    with FashionGenReader(req.h5_path, cfg.text.field) as reader:
        split = req.split or split_name(req.h5_path)
        req.out_dir.mkdir(parents=True, exist_ok=True)
        settings = _settings(req, reader.num_rows)
        check_settings(req.out_dir, req.overwrite, settings, log)
        texts = encode_split_texts(
            reader, req.out_dir, cfg.text, req.vocab_path, req.categories_path, log
        )
        products = texts.products
        queries = _query_texts(req.h5_path, omni.query_field)
        encoder = WordPieceEncoder(
            texts.vocab, cfg.text.max_seq_length, cfg.text.lower_case
        )
        title_ids, _, title_truncated = encoder.encode(
            [queries[p.product_id] for p in products]
        )
        empty_ids = encoder.encode([""])[0][0]
        counts = texts.counts
        counts["truncated_titles"] = title_truncated
        plan = plan_request_shards(
            req, split, len(products), cfg.output.records_per_shard
        )
        if plan.pending:
            from data_prep.tfrecord.example_codec import encode_record

            maker = JpegImageMaker(cfg.crop, cfg.jpeg_quality)
            grey = grey_jpeg(size, cfg.jpeg_quality)
            bar = tqdm(
                total=sum(b - a for a, b in map(plan.rows, plan.pending)),
                unit="product",
                desc=f"prepare-omni {split}",
                disable=not req.progress,
                file=sys.stderr,
                dynamic_ncols=True,
            )

            def tuple_records(start: int, stop: int, shard_counts: dict):
                rows = [r for p in products[start:stop] for r in p.rows]
                images = _product_images(reader, maker, rows) if rows else {}
                for k in range(start, stop):
                    p = products[k]
                    main = min(omni.main_pose, len(p.rows))
                    tgt_jpeg, found = images[p.rows[main - 1]]
                    shard_counts["crop_fallback"] += int(not found)
                    target = {
                        "product_id": p.product_id,
                        "tgt_image_jpeg": tgt_jpeg,
                        "tgt_pose_index": main,
                        "tgt_input_ids": texts.input_ids[k],
                        "tgt_has_image": 1,
                        "tgt_has_text": 1,
                    }
                    if omni.view_tuples:
                        shard_counts["single_view_products"] += len(p.rows) == 1
                        for pose, row in enumerate(p.rows, start=1):
                            if pose == main:
                                continue
                            jpeg, found = images[row]
                            shard_counts["crop_fallback"] += int(not found)
                            shard_counts["view_to_product"] += 1
                            yield encode_record(
                                {
                                    **target,
                                    "kind": schema.OMNI_KINDS.index("view_to_product"),
                                    "src_image_jpeg": jpeg,
                                    "src_pose_index": pose,
                                    "src_input_ids": empty_ids,
                                    "src_has_image": 1,
                                    "src_has_text": 0,
                                },
                                fields,
                            )
                    if omni.title_tuples:
                        if not queries[p.product_id]:
                            shard_counts["skipped_empty_title"] += 1
                        else:
                            shard_counts["title_to_product"] += 1
                            yield encode_record(
                                {
                                    **target,
                                    "kind": schema.OMNI_KINDS.index("title_to_product"),
                                    "src_image_jpeg": grey,
                                    "src_pose_index": 0,
                                    "src_input_ids": title_ids[k],
                                    "src_has_image": 0,
                                    "src_has_text": 1,
                                },
                                fields,
                            )
                    bar.update(1)

            with bar:
                for i in plan.pending:
                    start, stop = plan.rows(i)
                    shard_counts = {
                        "records": 0,
                        "view_to_product": 0,
                        "title_to_product": 0,
                        "single_view_products": 0,
                        "skipped_empty_title": 0,
                        "crop_fallback": 0,
                    }
                    write_shard(
                        req.out_dir,
                        plan.names[i],
                        (start, stop),
                        tuple_records(start, stop, shard_counts),
                        shard_counts,
                    )
                    log(
                        f"shard {plan.names[i]}: {shard_counts['records']} tuples "
                        f"from products {start}-{stop - 1}"
                    )

        summary, shards = finish_shards(req.out_dir, plan, req.merge, split, log)
        if shards is None:
            return summary
        for key in (
            "view_to_product",
            "title_to_product",
            "single_view_products",
            "skipped_empty_title",
            "crop_fallback",
        ):
            counts[key] = sum(s[key] for s in shards)
        counts["tuples"] = sum(s["records"] for s in shards)
        counts["products"] = len(products)
        head = {
            **manifest_header(split, layout, 0, cfg.text.max_seq_length),
            "image_size": size,
            "image_source": "kpg_crop" if cfg.crop.method != "none" else "full_image",
            "jpeg_quality": cfg.jpeg_quality,
            "kinds": list(schema.OMNI_KINDS),
            "grey_pixel": schema.GREY_PIXEL,
            "main_view": (
                f"pose_index {omni.main_pose} (1-based file order within the "
                "product; the first view when a product has fewer)"
            ),
            "omni": config_to_dict(omni),
            "crop": config_to_dict(cfg.crop),
            "text": config_to_dict(cfg.text),
        }
        return write_build_manifest(
            req,
            summary,
            head,
            texts,
            settings,
            counts,
            shards,
            SETTINGS_NAME,
            rows_key="products",
        )
