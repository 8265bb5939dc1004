"""``kaleido-tf mine-negatives``: InterBERT's TF-IDF hard-negative pools, offline.

Writes ``hard_negatives.npz`` beside a prepared folder's ``products.jsonl``: per
product, the top-k captions with TF-IDF similarity below the threshold (InterBERT
§3.3: top 30 below 0.5), excluding its own caption. English stop words are
removed by default ([D], see ``data_prep/hard_negatives/tfidf_miner.py``);
``--stop-words none`` keeps every term. ``--num-workers`` processes split the work
on one machine; ``--num-shards K --shard-index i`` split it between machines (the
run that finishes last, or ``--merge``, writes hard_negatives.npz).
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
        "--stop-words",
        choices=("english", "none"),
        default="none",
        help="'english' removes scikit-learn's English stop words before TF-IDF "
        "(with --max-df 0.05 and --num-workers: hours instead of days at 3.3M "
        "captions); default 'none' keeps every term (spec §3.4)",
    )
    p.add_argument(
        "--max-df",
        type=float,
        default=1.0,
        help="drop terms present in more than this fraction of the captions "
        "(default: 1.0, keep all)",
    )
    p.add_argument(
        "--num-workers",
        type=int,
        default=1,
        help="processes splitting the query captions (default: 1)",
    )
    p.add_argument(
        "--num-shards",
        type=int,
        default=1,
        help="machines splitting the query captions (default: 1)",
    )
    p.add_argument(
        "--shard-index",
        type=int,
        default=0,
        help="this machine's shard in [0, --num-shards) (default: 0)",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="mine nothing: merge the --num-shards shard files",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing hard_negatives.npz",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from data_prep.hard_negatives.tfidf_miner import (
        HARD_NEGATIVES_NAME,
        mine_data_dir,
        shard_file_name,
    )

    header, written = mine_data_dir(
        args.data,
        top_k=args.top_k,
        max_similarity=args.max_similarity,
        stop_words=None if args.stop_words == "none" else args.stop_words,
        max_df=args.max_df,
        chunk_size=args.chunk_size,
        num_workers=args.num_workers,
        num_shards=args.num_shards,
        shard_index=args.shard_index,
        merge=args.merge,
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
    if "shard" in header:
        out = args.data / shard_file_name(args.shard_index, args.num_shards)
        log(f"wrote {out}; the other shards are still missing (merged when all are)")
        return 0
    log(
        f"wrote {out}: {counts['products']} products, {counts['pairs']} pairs "
        f"(top {header['top_k']} below {header['max_similarity']}), "
        f"{counts['rows_with_fewer_than_k']} pools shorter than k "
        f"({counts['empty_pools']} empty), {header['num_terms']} terms "
        f"(stop words: {header['vectorizer']['stop_words']}, max_df "
        f"{header['vectorizer']['max_df']}), {header['pair_density']:.1%} of "
        "pairs share a term, "
        f"{header['seconds']:.1f} s"
    )
    return 0
