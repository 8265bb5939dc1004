"""``kaleido-tf mine-negatives``: InterBERT's TF-IDF hard-negative pools, offline.

Writes ``hard_negatives.npz`` beside a prepared folder's ``products.jsonl``: per
product, the top-k captions with TF-IDF similarity below the threshold (InterBERT
§3.3: top 30 below 0.5), excluding its own caption.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kaleido_tf.cli.progress import log, progress_enabled


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "mine-negatives",
        help="mine InterBERT's TF-IDF hard-negative captions of a prepared folder",
        description=(
            "For every product of a prepared folder, store the top-k other "
            "captions whose TF-IDF cosine similarity to its caption is below "
            "--max-similarity (InterBERT §3.3: 30 below 0.5) in "
            "<data>/hard_negatives.npz, for ITM with hard negatives."
        ),
    )
    p.add_argument("--data", required=True, type=Path, help="prepared training split")
    p.add_argument(
        "--top-k", type=int, default=30, help="pool size per product (default: 30)"
    )
    p.add_argument(
        "--max-similarity",
        type=float,
        default=0.5,
        help="pool captions have a similarity strictly below this (default: 0.5)",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="query captions per sparse product (default: automatic, memory-bound; "
        "the result does not depend on it)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing hard_negatives.npz",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from data_prep.hard_negatives.tfidf_miner import HARD_NEGATIVES_NAME, mine_data_dir

    header, written = mine_data_dir(
        args.data,
        top_k=args.top_k,
        max_similarity=args.max_similarity,
        chunk_size=args.chunk_size,
        progress=progress_enabled(args),
        overwrite=args.overwrite,
    )
    out = args.data / HARD_NEGATIVES_NAME
    if not written:
        log(
            f"{out} is up to date (same products.jsonl and settings): skipped; "
            "pass --overwrite to mine again"
        )
        return 0
    counts = header["counts"]
    log(
        f"wrote {out}: {counts['products']} products, {counts['pairs']} pairs "
        f"(top {header['top_k']} below {header['max_similarity']}), "
        f"{counts['rows_with_fewer_than_k']} pools shorter than k "
        f"({counts['empty_pools']} empty), {header['num_terms']} terms, "
        f"{header['seconds']:.1f} s"
    )
    return 0
