"""Captions/s and peak memory of the TF-IDF hard-negative miner, vs. dense numpy.

One run mines the pools (top 30 below 0.5, InterBERT §3.3) of N synthetic captions
with ``data_prep/hard_negatives/tfidf_miner.py`` (sparse TF-IDF, chunked sparse
products X[chunk] X^T, per-row partial sort) and, as the baseline, with a
brute-force dense numpy cosine on the same TF-IDF matrix (dense X, chunked BLAS
products X[chunk] X^T, ``argpartition``), then prints captions/s, peak memory
(``tracemalloc``: numpy and scipy buffers) and the ratio. Both methods give the
same pool similarities (checked on every run).

Both methods are exact, so both compute a similarity for every pair of captions
that share a term: O(N^2) time. Without stop-word removal (the spec's choice)
nearly every pair of real captions shares a word ("a", "the", "in"), so the
projection to Conceptual Captions' 3.3M captions scales the measured time by
(3.3M / N)^2; the exponent measured between N/2 and N is printed beside it.
Memory is linear in N (X, the pools, one [chunk, N] block) at a fixed chunk: the
peaks are traced with the chunk the default rule picks for 3.3M captions
(``max_chunk_entries // 3.3M`` = 5 rows), so a line through the two measured
peaks projects it (the timed runs use the default chunk of N). The dense baseline
needs N x V x 8 bytes for X alone, which is the projection printed for it.

Corpora: ``fashion`` draws product descriptions with the synthetic Fashion-Gen
generator (``data_prep/synthetic``; a small vocabulary, V ~ 200), ``zipf`` draws
8-16 words from a Zipf(1) law over ``--vocab`` words (a Conceptual-Captions-like
vocabulary; the dense baseline is skipped when dense X would exceed
``--dense-max-gb``).

Usage:
    python bench/tfidf_mining.py [--captions 16000] [--corpus fashion]
    python bench/tfidf_mining.py --corpus zipf --vocab 20000 --captions 16000
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kaleido_tf  # noqa: E402,F401
from data_prep.hard_negatives.tfidf_miner import (  # noqa: E402
    DEFAULT_MAX_CHUNK_ENTRIES,
    DEFAULT_MAX_SIMILARITY,
    DEFAULT_TOP_K,
    mine_hard_negatives,
    tfidf_vectorizer,
)

CC_CAPTIONS = 3_300_000  # Conceptual Captions (spec §3.4)


def fashion_corpus(n: int, seed: int) -> list[str]:
    """``n`` descriptions of synthetic Fashion-Gen products."""
    from data_prep.synthetic.product_sampler import sample_product

    rng = np.random.default_rng(seed)
    return [sample_product(rng, i).description for i in range(n)]


def zipf_corpus(n: int, vocab: int, seed: int) -> list[str]:
    """``n`` captions of 8-16 words drawn from Zipf(1) over ``vocab`` words."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1)
    lengths = rng.integers(8, 17, size=n)
    words = rng.choice(vocab, size=int(lengths.sum()), p=p / p.sum())
    cuts = np.cumsum(lengths)[:-1]
    return [" ".join(f"w{w}" for w in c) for c in np.split(words, cuts)]


def dense_baseline(
    texts: list[str], top_k: int, threshold: float, chunk: int | None = None
) -> np.ndarray:
    """Brute force: dense TF-IDF X, X[chunk] @ X.T by BLAS, argpartition.

    Returns:
        float64 [N, k]. Each row's pool similarities, descending, NaN padded.
    """
    x = tfidf_vectorizer().fit_transform(texts).toarray()  # [N, V]
    n = len(texts)
    chunk = chunk or max(1, min(256, (1 << 24) // n))
    out = np.full((n, top_k), np.nan)
    for a in range(0, n, chunk):
        s = x[a : a + chunk] @ x.T  # [c, N]
        c = s.shape[0]
        s[np.arange(c), np.arange(a, a + c)] = -1.0  # own caption
        s[(s >= threshold) | (s <= 0.0)] = -1.0
        kk = min(top_k, n)
        idx = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        v = -np.sort(-np.take_along_axis(s, idx, axis=1), axis=1)
        out[a : a + c, :kk] = np.where(v > 0, v, np.nan)
    return out


def measure(fn: Callable[[], Any], traced: Callable[[], Any]) -> tuple[float, int, Any]:
    """Seconds of ``fn()``, then the peak traced bytes of ``traced()``."""
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    tracemalloc.reset_peak()
    traced()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak, result


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=16000, help="N")
    parser.add_argument("--corpus", choices=("fashion", "zipf"), default="fashion")
    parser.add_argument("--vocab", type=int, default=20000, help="zipf vocabulary")
    parser.add_argument("--dense-max-gb", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n, k, thr = args.captions, DEFAULT_TOP_K, DEFAULT_MAX_SIMILARITY
    if args.corpus == "fashion":
        texts = fashion_corpus(n, args.seed)
    else:
        texts = zipf_corpus(n, args.vocab, args.seed)
    half = texts[: n // 2]

    tfidf_vectorizer()  # imports scikit-learn outside the timed fit
    start = time.perf_counter()
    x = tfidf_vectorizer().fit_transform(texts)
    fit_s = time.perf_counter() - start
    v, nnz = x.shape[1], x.nnz
    sim = x[: min(n, 512)] @ x.T
    pair_density = sim.nnz / (sim.shape[0] * n)  # share of pairs sharing a term

    c = max(1, DEFAULT_MAX_CHUNK_ENTRIES // CC_CAPTIONS)  # the chunk at 3.3M
    t_half, m_half, _ = measure(
        lambda: mine_hard_negatives(half),
        lambda: mine_hard_negatives(half, chunk_size=c),
    )
    t_full, m_full, mined = measure(
        lambda: mine_hard_negatives(texts),
        lambda: mine_hard_negatives(texts, chunk_size=c),
    )
    dense_bytes = n * v * 8
    if dense_bytes <= args.dense_max_gb * 2**30:
        t_dense, m_dense, dense = measure(
            lambda: dense_baseline(texts, k, thr),
            lambda: dense_baseline(texts, k, thr, chunk=c),
        )
        ok = np.where(mined.pool >= 0, mined.similarity, np.nan)
        np.testing.assert_allclose(ok, dense, rtol=1e-5, atol=1e-6)
    else:
        t_dense = m_dense = None

    exponent = np.log(t_full / t_half) / np.log(n / (n // 2))
    t_cc = t_full * (CC_CAPTIONS / n) ** 2
    slope = (m_full - m_half) / (n - n // 2)
    m_cc = m_full + slope * (CC_CAPTIONS - n)
    print(
        f"# TF-IDF hard-negative mining (top {k} below {thr}), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"corpus {args.corpus}: N = {n}, V = {v}, {nnz / n:.1f} terms/caption, "
        f"{pair_density:.0%} of pairs share a term, TF-IDF fit {fit_s:.2f} s"
    )
    print(f"| method | N | seconds | captions/s | peak memory ({c}-row chunks) |")
    print("|---|---|---|---|---|")
    print(
        f"| sparse miner | {n // 2} | {t_half:.2f} | {(n // 2) / t_half:.0f} | "
        f"{fmt_bytes(m_half)} |"
    )
    print(
        f"| sparse miner | {n} | {t_full:.2f} | {n / t_full:.0f} | "
        f"{fmt_bytes(m_full)} |"
    )
    if t_dense is not None:
        print(
            f"| dense numpy (baseline) | {n} | {t_dense:.2f} | {n / t_dense:.0f} | "
            f"{fmt_bytes(m_dense)} |"
        )
        print(
            f"\nsparse vs dense at N = {n}: {t_dense / t_full:.2f}x the speed, "
            f"{m_full / m_dense:.2f}x the peak memory (same pool similarities)"
        )
    else:
        print(
            f"\ndense baseline skipped: dense X would take {fmt_bytes(dense_bytes)} "
            f"(> --dense-max-gb {args.dense_max_gb})"
        )
    print(
        f"\nProjection to {CC_CAPTIONS:,} captions (exact mining is O(N^2): time "
        f"x (3.3M/N)^2, measured exponent N/2 -> N: {exponent:.2f}; memory linear "
        f"in N through the two peaks; assumes the same share of term-sharing pairs "
        f"and terms per caption as this corpus):"
    )
    print(
        f"- sparse miner: {fmt_seconds(t_cc)} on one core of this machine "
        f"({fmt_seconds(t_cc / (os.cpu_count() or 1))} if split over its "
        f"{os.cpu_count()} CPUs by query chunks), peak memory {fmt_bytes(m_cc)}"
    )
    print(
        f"- dense baseline: dense X alone is 3.3M x V x 8 bytes = "
        f"{fmt_bytes(CC_CAPTIONS * v * 8)} at this corpus's V = {v} "
        "(Conceptual Captions' vocabulary is far larger)"
        + (
            f"; time {fmt_seconds(t_dense * (CC_CAPTIONS / n) ** 2)}"
            if t_dense is not None
            else ""
        )
    )


if __name__ == "__main__":
    main()
