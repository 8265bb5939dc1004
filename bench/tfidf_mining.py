"""Speed of the TF-IDF hard-negative miner: default settings vs exact all terms.

One run mines the pools (top 30 below 0.5, InterBERT §3.3) of N synthetic
captions with ``data_prep/hard_negatives/tfidf_miner.py`` twice per setting (N/2
and N captions), for the default settings (English stop words removed, every
other term kept) and for the exact all-terms similarity (no stop-word removal),
and prints seconds, captions/s per worker, the share of caption pairs sharing a
term, the peak traced memory (``tracemalloc``, numpy/scipy buffers, at the chunk
the default rule picks) and the projection to Conceptual Captions' 3.3M captions
with the exponent measured between N/2 and N.

Corpus ``captions`` (default): caption lengths 1 + Poisson(9.3) tokens (CC's mean
is ~10); ~35 % of the tokens are English function words drawn from a fixed table
of 38 words at approximate caption frequencies ("a" 6 %, "the" 5.5 %, "of" 4 %,
"in" 3.2 %, "and" 2.6 %, ...), the rest are content words drawn from a Zipf(1)
law over ``--vocab`` (20000) words. It is a synthetic stand-in for real caption
statistics, not a measurement on Conceptual Captions. ``fashion``: synthetic
Fashion-Gen descriptions (``data_prep/synthetic``, V ~ 200).

Usage:
    python bench/tfidf_mining.py [--captions 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kaleido_tf  # noqa: E402,F401
from data_prep.hard_negatives.tfidf_miner import (  # noqa: E402
    DEFAULT_MAX_DF,
    DEFAULT_STOP_WORDS,
    EXACT_ALL_TERMS,
    mine_hard_negatives,
)

CC_CAPTIONS = 3_300_000  # Conceptual Captions (spec §3.4)
# Approximate per-token frequencies of English function words in captions.
FUNCTION_WORDS = {
    "a": 0.060, "the": 0.055, "of": 0.040, "in": 0.032, "and": 0.026,
    "on": 0.018, "with": 0.014, "for": 0.011, "to": 0.011, "at": 0.009,
    "is": 0.008, "an": 0.006, "from": 0.006, "this": 0.005, "by": 0.005,
    "his": 0.004, "her": 0.004, "as": 0.003, "during": 0.003, "are": 0.003,
    "up": 0.002, "its": 0.002, "their": 0.002, "over": 0.002, "into": 0.002,
    "it": 0.002, "out": 0.002, "be": 0.0015, "that": 0.0015, "was": 0.001,
    "has": 0.001, "some": 0.001, "two": 0.002, "one": 0.002, "front": 0.001,
    "top": 0.001, "next": 0.001, "under": 0.001,
}  # fmt: skip


def caption_corpus(n: int, vocab: int, seed: int) -> list[str]:
    """``n`` captions: function words at the table's rates, Zipf(1) content."""
    rng = np.random.default_rng(seed)
    fw = list(FUNCTION_WORDS)
    fp = np.asarray([FUNCTION_WORDS[w] for w in fw])
    zipf = 1.0 / np.arange(1, vocab + 1)
    p = np.concatenate([fp, (1.0 - fp.sum()) * zipf / zipf.sum()])
    words = fw + [f"w{i}" for i in range(vocab)]
    lengths = rng.poisson(9.3, size=n) + 1
    tokens = rng.choice(len(p), size=int(lengths.sum()), p=p)
    cuts = np.cumsum(lengths)[:-1]
    return [" ".join(words[t] for t in c) for c in np.split(tokens, cuts)]


def fashion_corpus(n: int, seed: int) -> list[str]:
    from data_prep.synthetic.product_sampler import sample_product

    rng = np.random.default_rng(seed)
    return [sample_product(rng, i).description for i in range(n)]


def fmt_bytes(b: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(b) < 1024 or unit == "TB":
            return f"{b:.1f} {unit}"
        b /= 1024
    return ""


def fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 2 * 3600:
        return f"{s / 60:.1f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def run(texts: list[str], workers: int, **settings) -> tuple[float, object]:
    start = time.perf_counter()
    mined = mine_hard_negatives(texts, num_workers=workers, **settings)
    return time.perf_counter() - start, mined


def peak(texts: list[str], **settings) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    mine_hard_negatives(texts, **settings)
    result = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=10000, help="N")
    parser.add_argument("--corpus", choices=("captions", "fashion"), default="captions")
    parser.add_argument("--vocab", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n, w = args.captions, args.workers
    texts = (
        caption_corpus(n, args.vocab, args.seed)
        if args.corpus == "captions"
        else fashion_corpus(n, args.seed)
    )
    cpus = os.cpu_count() or 1
    print(
        f"# TF-IDF hard-negative mining, {platform.machine()}, {cpus} CPUs, corpus "
        f"{args.corpus} (N = {n}), {w} worker(s)"
    )
    print(
        "| settings | N | seconds | captions/s per worker | pairs sharing a term "
        "| peak memory |"
    )
    print("|---|---|---|---|---|---|")
    cases = {
        f"default (stop words {DEFAULT_STOP_WORDS}, max_df {DEFAULT_MAX_DF})": {
            "stop_words": DEFAULT_STOP_WORDS,
            "max_df": DEFAULT_MAX_DF,
        },
        "exact all terms": dict(EXACT_ALL_TERMS),
        "stop words english, max_df 0.05": {"stop_words": "english", "max_df": 0.05},
    }
    mine_hard_negatives(texts[:200])  # imports and first-call costs, untimed
    full = {}
    projections = []
    for name, settings in cases.items():
        t_half, _ = run(texts[: n // 2], w, **settings)
        t_full, mined = run(texts, w, **settings)
        mem = peak(texts, **settings)
        full[name] = t_full
        for m, t in ((n // 2, t_half), (n, t_full)):
            print(
                f"| {name} | {m} | {t:.2f} | {m / t / w:.0f} | "
                f"{mined.pair_density:.1%} | {fmt_bytes(mem) if m == n else ''} |"
            )
        exponent = float(np.log(t_full / t_half) / np.log(n / (n // 2)))
        e = max(exponent, 2.0)  # below 2 at small N: fixed costs; O(N^2) asymptote
        t_cc = t_full * w * (CC_CAPTIONS / n) ** e
        projections.append(
            f"- {name}: measured exponent {exponent:.2f} (projected with "
            f"{e:.2f}): {fmt_seconds(t_cc)} on one core, {fmt_seconds(t_cc / 16)} "
            f"on 16 cores, {fmt_seconds(t_cc / 64)} on 64 cores"
        )
    names = list(cases)
    print(
        f"\nexact all terms / default at N = {n}: "
        f"{full[names[1]] / full[names[0]]:.2f}x the time"
    )
    print(
        f"\nProjection to {CC_CAPTIONS:,} captions (time x (3.3M/N)^e, perfect "
        "scaling over cores assumed; same word statistics as this synthetic corpus):"
    )
    print("\n".join(projections))


if __name__ == "__main__":
    main()
