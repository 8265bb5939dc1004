"""FC evaluation: caption every image of a split, score against its description.

One caption per image record (beam search, ``caption_generation.py``); the reference
is the product's description as stored in ``products.jsonl`` (K-Q20), so every
image of a product has the same single reference.

Reference: kaleido_fashionbert.md §4.7 (FC), §7.5, K-Q19.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tensorflow as tf


def generate_split_captions(
    model,
    config,
    data_dir: str | Path,
    batch_size: int = 32,
    max_images: int | None = None,
    progress: bool = True,
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Captions of the images of ``data_dir`` and their references.

    Args:
        model: A captioning VLModel.
        config: Its ExperimentConfig (``finetune.captioning`` decoding values).
        data_dir: A prepared folder.
        batch_size: Images per beam search.
        max_images: Stop after this many images (file order).
        progress: Show a progress bar.

    Returns:
        ``(hypotheses, references)``: image id -> generated text; image id ->
        [description].
    """
    from tqdm import tqdm

    from kaleido_tf.finetuning.caption_generation import (
        SpecialIds,
        generate_captions,
        ids_to_text,
    )
    from kaleido_tf.inputs.pipeline import build_pretrain_dataset
    from kaleido_tf.inputs.product_table import ProductTable
    from kaleido_tf.manifest import read_manifest

    manifest = read_manifest(data_dir)
    table = ProductTable.load(data_dir, manifest)
    texts = _product_texts(Path(data_dir))
    cap = config.finetune.captioning
    vocab_size = config.model.encoder.vocab_size
    special = SpecialIds.from_table(table, vocab_size)

    @tf.function(reduce_retracing=True)
    def decode(features, boxes):
        return generate_captions(
            model,
            features,
            boxes,
            special,
            vocab_size,
            beam_size=cap.beam_size,
            max_tokens=cap.max_caption_tokens,
            alpha=cap.length_penalty,
        )[0]

    dataset = build_pretrain_dataset(
        data_dir,
        batch_size,
        tasks=(),
        training=False,
        corrupt=False,
        feature_dim=config.model.patch_feature_dim,
        extra_keys=("image_id", "product_id"),
    )
    total = sum(int(s["records"]) for s in manifest["shards"])
    if max_images is not None:
        total = min(total, max_images)
    hypotheses: dict[str, str] = {}
    references: dict[str, list[str]] = {}
    with tqdm(
        total=total,
        desc="captioning",
        unit="img",
        disable=not progress,
        file=sys.stderr,
    ) as bar:
        for batch in dataset:
            ids = decode(batch["patch_features"], batch["patch_boxes"]).numpy()
            for row, image_id in enumerate(batch["image_id"].numpy()):
                if len(hypotheses) >= total:
                    break
                key = image_id.decode("utf-8")
                hypotheses[key] = ids_to_text(ids[row], table.vocab, table.sep_id)
                references[key] = [texts[int(batch["product_id"][row])]]
                bar.update(1)
            if len(hypotheses) >= total:
                break
    return hypotheses, references


def _product_texts(data_dir: Path) -> dict[int, str]:
    import json

    out = {}
    with open(data_dir / "products.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            out[int(row["product_id"])] = str(row["text"])
    return out
