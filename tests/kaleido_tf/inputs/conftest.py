"""A small prepared folder written directly (real codec, shards and manifest).

``kaleido-tf prepare`` writes no alignment pairs and takes seconds, so the input
tests use this writer: D = 8, T = 16, random features (unique per image and
patch), texts with multi-piece words, and alignment pairs on every level,
including ones AGM must ignore (levels 1-2, -1 padding, words cut off).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kaleido_tf import constants, schema

FEATURE_DIM = 8
SEQ_LEN = 16
WORDS = [f"word{i}" for i in range(40)]
PIECES = ["##ab", "##cd", "##ef"]
VOCAB = list(constants.SPECIAL_TOKENS) + WORDS + PIECES + [".", ","]
# (category, sub-category, images): T-SHIRTS has 4 products; SHIRTS is alone in
# its sub-category (category fallback); BAGS is alone in its category (any).
PRODUCTS = [
    ("TOPS", "T-SHIRTS", 3),
    ("TOPS", "T-SHIRTS", 2),
    ("TOPS", "T-SHIRTS", 1),
    ("TOPS", "SHIRTS", 2),
    ("JEANS", "JEANS", 3),
    ("JEANS", "JEANS", 1),
    ("BAGS", "TOTES", 2),
    ("TOPS", "T-SHIRTS", 2),
]


def _text(rng: np.random.Generator, n_words: int) -> tuple[list[int], list[int]]:
    """Token ids and word index (unpadded, without [CLS]/[SEP]) of random words."""
    ids, words = [], []
    for w in range(n_words):
        ids.append(VOCAB.index(WORDS[rng.integers(len(WORDS))]))
        words.append(w)
        for _ in range(int(rng.integers(0, 3)) if rng.random() < 0.4 else 0):
            ids.append(VOCAB.index(PIECES[rng.integers(len(PIECES))]))
            words.append(w)
    return ids, words


def write_prepared(
    out_dir: Path,
    seed: int = 0,
    products: list[tuple[str, str, int]] = PRODUCTS,
    with_pairs: bool = True,
    records_per_shard: int = 5,
) -> Path:
    """Writes a prepared folder (kaleido layout) and returns it."""
    from data_prep.tfrecord.example_codec import encode_record
    from data_prep.tfrecord.shard_writer import ShardWriter

    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    layout = schema.LAYOUTS["kaleido"]
    fields = schema.record_fields(layout, SEQ_LEN, FEATURE_DIM)
    ids_of = {t: i for i, t in enumerate(VOCAB)}
    cls_id, sep_id, pad_id = (
        ids_of[constants.CLS_TOKEN],
        ids_of[constants.SEP_TOKEN],
        ids_of[constants.PAD_TOKEN],
    )
    cats = sorted({c for c, _, _ in products})
    subs = sorted({s for _, s, _ in products})
    rows, records = [], []
    for k, (cat, sub, images) in enumerate(products):
        product_id = 200_000 + 11 * k
        pieces, words = _text(rng, int(rng.integers(4, 12)))
        pieces, words = pieces[: SEQ_LEN - 2], words[: SEQ_LEN - 2]  # truncation
        input_ids = np.full(SEQ_LEN, pad_id, np.int64)
        word_index = np.full(SEQ_LEN, -1, np.int64)
        input_ids[0], input_ids[len(pieces) + 1] = cls_id, sep_id
        input_ids[1 : len(pieces) + 1] = pieces
        word_index[1 : len(pieces) + 1] = words
        rows.append(
            {
                "product_id": product_id,
                "category": cat,
                "subcategory": sub,
                "category_id": cats.index(cat),
                "subcategory_id": subs.index(sub),
                "num_images": images,
                "text": "synthetic",
                "input_ids": input_ids[: len(pieces) + 2].tolist(),
            }
        )
        n_words = words[-1] + 1
        for pose in range(1, images + 1):
            align = schema.empty_alignment()
            n_pairs = int(rng.integers(0, 9)) if with_pairs and pose != 2 else 0
            for j in range(n_pairs):
                align["align_word_index"][j] = int(rng.integers(0, n_words + 2))
                align["align_patch_index"][j] = int(rng.integers(0, 55))
                align["align_score"][j] = 0.5
            records.append(
                {
                    "image_id": f"{product_id}_{pose}".encode(),
                    "product_id": product_id,
                    "pose_index": pose,
                    "source_row": len(records),
                    "category_id": cats.index(cat),
                    "subcategory_id": subs.index(sub),
                    "input_ids": input_ids,
                    "word_index": word_index,
                    "crop_box": np.asarray([0, 0, 64, 64]),
                    "patch_boxes": rng.random((55, 5)).astype(np.float32),
                    "patch_features": rng.normal(size=(55, FEATURE_DIM)),
                    "rotated_features": rng.normal(size=(3, FEATURE_DIM)),
                    "grey_features": rng.normal(size=(16, FEATURE_DIM)),
                    **align,
                }
            )
    shards = []
    for s in range(0, len(records), records_per_shard):
        name = f"train-{s // records_per_shard:05d}.tfrecord"
        chunk = records[s : s + records_per_shard]
        with ShardWriter(out_dir / name) as writer:
            for r in chunk:
                writer.write(encode_record(r, fields))
            writer.commit()
        shards.append({"file": name, "records": len(chunk)})
    (out_dir / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (out_dir / "products.jsonl").write_text(
        "\n".join(json.dumps(r) for r in rows) + "\n"
    )
    (out_dir / "categories.json").write_text(
        json.dumps({"category": cats, "subcategory": subs})
    )
    manifest = {
        "schema_version": schema.SCHEMA_VERSION,
        "split": "train",
        "layout": "kaleido",
        "grids": list(layout.grids),
        "num_patches": 55,
        "feature_dim": FEATURE_DIM,
        "max_seq_length": SEQ_LEN,
        "vocab_file": "vocab.txt",
        "products_file": "products.jsonl",
        "categories_file": "categories.json",
        "shards": shards,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest))
    return out_dir


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Path:
    """The default small prepared folder (17 images of 8 products)."""
    return write_prepared(tmp_path_factory.mktemp("inputs") / "train")


@pytest.fixture(scope="session")
def prepared_records(prepared) -> list[dict]:
    """Every record of ``prepared``, parsed, as numpy (in file order)."""
    from kaleido_tf.inputs.parse import record_dataset
    from kaleido_tf.manifest import read_manifest

    return list(record_dataset(prepared, read_manifest(prepared)).as_numpy_iterator())
