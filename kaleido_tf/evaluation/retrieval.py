"""Scores retrieval candidate lists with a model's ITM head, streaming and batched.

Reference: kaleido_fashionbert.md §2.3, §7.1-7.3; K-Q18 (clean inputs), K-Q21
(zero-shot ITM as the primary number).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaleido_tf.atomic_files import atomic_write_text
from kaleido_tf.errors import ConfigError, DataError
from kaleido_tf.evaluation.ranking_metrics import match_probability
from kaleido_tf.evaluation.retrieval_lists import DIRECTIONS, RetrievalLists

# Columns of the per-pair score file, one row per (query, candidate) pair, in list
# order. ``label`` 1 = match (constants.ITM_MATCH); logits are the raw ITM logits.
TSV_COLUMNS = (
    "direction",
    "query_id",
    "candidate_id",
    "text_product_id",
    "image_id",
    "label",
    "logit0",
    "logit1",
    "match_probability",
)
# Batch keys the encoder reads; every other key the model reads (head positions)
# is filled with zeros, as in ``kaleido_tf.dummy_batch``.
_ENCODER_KEYS = (
    "input_ids",
    "input_mask",
    "segment_ids",
    "patch_features",
    "patch_boxes",
    "patch_mask",
)


def score_retrieval_lists(
    model,
    config,
    data_dir: str | Path,
    lists: RetrievalLists,
    batch_size: int = 64,
    directions: Sequence[str] = DIRECTIONS,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """The ITM logits of every (query, candidate) pair of the lists.

    Each pair is the text of one product (from ``products.jsonl``) with one image
    record, clean (K-Q18): all P visual tokens, no masking, no corruption;
    ``segment_ids`` 0; ``patch_mask`` from ``visual_inputs`` (all ones for patch
    layouts, the real regions of a region folder), so a region folder (ImageBERT)
    is scored on the same list file as a kaleido or grid8 folder: lists name
    products and image ids, not features. The records of the
    folder are read once, in file order, and every pair is scored when its image
    arrives, ``batch_size`` pairs per forward pass (the last batch may be
    smaller; nothing is dropped). Both directions share the one pass.

    Memory: the records are streamed; a record no list names is skipped before
    its features are decoded. At most ``batch_size`` + 1 images' features (P × D
    float32 each) are held, plus one batch (``batch_size`` × P × D float32, about
    115 MB for 256 pairs at P = 55, D = 2048) and the pair index (a few dozen
    bytes per pair). Never all 101,000 pairs' features.

    Args:
        model: A model whose outputs include ``itm_logits`` float32 [B, 2]
            (class 1 = match, ``constants.ITM_MATCH``).
        config: Its ExperimentConfig (layout, D, the keys the heads read).
        data_dir: The prepared folder the lists were built from.
        lists: The candidate lists (``RetrievalLists.load(path, data_dir)``).
        batch_size: Pairs per forward pass.
        directions: Which of "itr", "tir" to score.
        progress: Show a tqdm bar on stderr.

    Returns:
        Direction -> float32 [Q, C, 2], the logits of query q's candidate c
        (candidates in list order).

    Raises:
        DataError: A folder whose layout or D does not fit the model, or that lacks
            a listed product or image.
        ConfigError: A model without an ITM head.
        ValueError: ``batch_size`` < 1 or an unknown direction.
    """
    import tensorflow as tf
    from tqdm import tqdm

    import kaleido_tf
    from kaleido_tf.inputs.product_table import ProductTable
    from kaleido_tf.manifest import read_manifest

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    unknown = sorted(set(directions) - set(DIRECTIONS))
    if unknown:
        raise ValueError(f"unknown directions {unknown}: valid are {DIRECTIONS}")
    lists.check()
    manifest = read_manifest(
        data_dir,
        layout=config.model.layout,
        feature_dim=config.model.patch_feature_dim,
    )
    table = ProductTable.load(data_dir, manifest)
    max_length = config.model.encoder.max_sequence_length
    if table.max_seq_length > max_length:
        raise DataError(
            f"{data_dir}: texts are {table.max_seq_length} tokens, the model takes "
            f"at most {max_length}: prepare the data with text.max_seq_length <= "
            f"{max_length}"
        )
    row_of = {int(p): i for i, p in enumerate(table.product_ids)}

    # The pair index: text row of each pair, and the pairs of each image.
    text_rows: list[int] = []
    pairs_of_image: dict[str, list[int]] = defaultdict(list)
    for d in directions:
        for pair in lists.pairs(d):
            row = row_of.get(pair.text_product)
            if row is None:
                raise DataError(
                    f"{data_dir}: product {pair.text_product} of the lists is not in "
                    "products.jsonl: score with the folder the lists were built from"
                )
            pairs_of_image[pair.image_id].append(len(text_rows))
            text_rows.append(row)
    rows = np.asarray(text_rows, np.int64)
    logits = np.full([len(rows), 2], np.nan, np.float32)

    extra = {
        k: (tuple(v.shape[1:]), v.dtype)
        for k, v in kaleido_tf.dummy_batch(config, batch_size=1).items()
        if k not in _ENCODER_KEYS
    }

    @tf.function(reduce_retracing=True)  # the last batch may be smaller
    def forward(batch):
        outputs = model(batch, training=False)
        if "itm_logits" not in outputs:
            raise ConfigError(
                f"the {config.system} model has no ITM head (outputs: "
                f"{sorted(outputs)}): retrieval needs `tasks.itm: true`"
            )
        return outputs["itm_logits"]

    pending: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []

    def flush(n: int) -> None:
        chunk, pending[:n] = pending[:n], []
        index = np.asarray([c[0] for c in chunk], np.int64)
        input_ids = table.input_ids[rows[index]]
        batch = {
            "input_ids": tf.constant(input_ids),
            "input_mask": tf.constant((input_ids != table.pad_id).astype(np.int32)),
            "segment_ids": tf.zeros(input_ids.shape, tf.int32),
            "patch_features": tf.constant(np.stack([c[1] for c in chunk])),
            "patch_boxes": tf.constant(np.stack([c[2] for c in chunk])),
            "patch_mask": tf.constant(np.stack([c[3] for c in chunk])),
        }
        for key, (shape, dtype) in extra.items():
            batch[key] = tf.zeros([n, *shape], dtype)
        logits[index] = forward(batch).numpy()
        bar.update(n)

    bar = tqdm(
        total=len(rows),
        unit="pair",
        desc="score " + "+".join(directions),
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    with bar:
        for record in listed_visual_records(data_dir, manifest, list(pairs_of_image)):
            image = record["image_id"].decode("utf-8")
            for index in pairs_of_image.pop(image, ()):
                pending.append(
                    (
                        index,
                        record["patch_features"],
                        record["patch_boxes"],
                        record["patch_mask"],
                    )
                )
            while len(pending) >= batch_size:
                flush(batch_size)
        if pending:
            flush(len(pending))
    if pairs_of_image:
        missing = sorted(pairs_of_image)
        raise DataError(
            f"{data_dir} lacks {len(missing)} image records the lists name (e.g. "
            f"{missing[:3]}): score with the folder the lists were built from"
        )
    if np.isnan(logits).any():  # pitfall 7: every pair scored, exactly once
        raise DataError("some retrieval pairs were not scored")
    out, start = {}, 0
    q, c = lists.num_queries, lists.num_candidates
    for d in directions:
        out[d] = logits[start : start + q * c].reshape(q, c, 2)
        start += q * c
    return out


def listed_visual_records(
    data_dir: str | Path, manifest: dict[str, Any], image_ids: Sequence[str]
):
    """The records whose ``image_id`` is in ``image_ids``, in file order, as numpy.

    Patch and region folders alike (``inputs/visual_tokens.visual_inputs``): each
    item has ``image_id`` bytes, ``patch_features`` float32 [P, D],
    ``patch_boxes`` float32 [P, 5] and ``patch_mask`` int32 [P] (1 = a real token;
    all ones for patch layouts, the first ``num_regions`` for region layouts).
    Other records are dropped after parsing their id only.

    Args:
        data_dir: A prepared folder.
        manifest: Its manifest (``read_manifest``).
        image_ids: The ids to keep.

    Raises:
        DataError: A shard the manifest lists is missing.
    """
    import tensorflow as tf

    from kaleido_tf import schema
    from kaleido_tf.inputs.parse import parse_record
    from kaleido_tf.inputs.visual_tokens import record_visual_keys, visual_inputs
    from kaleido_tf.manifest import manifest_fields

    files = [str(Path(data_dir) / s["file"]) for s in manifest["shards"]]
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise DataError(
            f"{data_dir}: shard {missing[0]} listed in manifest.json is missing: "
            "rerun `kaleido-tf prepare`"
        )
    layout = schema.get_layout(manifest["layout"])
    keys = ("image_id", *record_visual_keys(layout))
    fields = {k: v for k, v in manifest_fields(manifest).items() if k in keys}
    ids = tf.constant(list(image_ids) or [""], tf.string)
    wanted = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(ids, tf.ones_like(ids, tf.int32)), 0
    )
    id_only = {"image_id": tf.io.FixedLenFeature([], tf.string)}

    def listed(serialized):
        parsed = tf.io.parse_single_example(serialized, id_only)
        return wanted.lookup(parsed["image_id"]) > 0

    def parse(serialized):
        record = parse_record(serialized, fields)
        return {"image_id": record["image_id"], **visual_inputs(record, layout)}

    ds = tf.data.TFRecordDataset(files).filter(listed)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(2).as_numpy_iterator()


def write_pair_scores(
    path: str | Path, lists: RetrievalLists, logits: dict[str, np.ndarray]
) -> Path:
    """Writes one TSV row per scored pair (``TSV_COLUMNS``), atomically.

    Logits are written with 9 significant digits, so float32 values read back
    exactly. ``easytransfer_scorer.read_pair_scores`` reads the file.

    Args:
        path: The output file.
        lists: The lists that were scored.
        logits: ``score_retrieval_lists`` output.

    Returns:
        The path.
    """
    lines = ["\t".join(TSV_COLUMNS)]
    for d in DIRECTIONS:
        if d not in logits:
            continue
        flat = logits[d].reshape(-1, 2)
        probability = match_probability(flat)
        c = lists.num_candidates
        for pair in lists.pairs(d):
            i = pair.query_index * c + pair.candidate_index
            query = lists.queries[d][pair.query_index]
            lines.append(
                "\t".join(
                    (
                        d,
                        query.query_id,
                        query.candidate_ids[pair.candidate_index],
                        str(pair.text_product),
                        pair.image_id,
                        str(pair.label),
                        f"{flat[i, 0]:.9g}",
                        f"{flat[i, 1]:.9g}",
                        f"{probability[i]:.9g}",
                    )
                )
            )
    path = Path(path)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
