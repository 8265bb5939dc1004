"""Offline TF-IDF hard-negative pools for ITM, InterBERT §3.3 (ITM-hn).

For every product of a prepared folder, the pool holds the ``top_k`` (30) other
products' captions with the highest TF-IDF cosine similarity to the product's own
caption among those *below* ``max_similarity`` (0.5): lexically close but not
paraphrases. ``kaleido_tf/inputs/hard_negative_sampler.py`` draws 20 % of the ITM
negatives from these pools during training.

Mining is per product, not per image: in Fashion-Gen a caption belongs to a product
and every view (image record ``<product id>_<pose>``) of the product shares it, so
the views share one pool. ``products.jsonl`` holds one caption per product; the
product's "own captions" are that one caption, and the similarity between an
image and a caption is the cosine between its product's caption and that caption.

The similarity matrix is never materialised. The captions' TF-IDF matrix X
(sparse, [N, V]) is multiplied by X^T one query chunk at a time (scipy sparse
product, [chunk, N]); the chunk's candidates are laid out in a padded
[rows, longest row] array and each row keeps its top-k with one
``numpy.argpartition`` over the chunk (no per-row Python loop). Time is
O(sum over terms of df^2), the number of multiply-adds of the product, so it is
quadratic in N with a constant set by the most frequent terms; memory is linear in
N. ``num_workers`` processes (fork, sharing X) split the query chunks, and
``num_shards`` / ``shard_index`` split the query rows between machines
(``hard_negatives.shard-<i>-of-<K>.npz``, merged into ``hard_negatives.npz`` by
the run that finishes last or by ``merge=True``). Every row's pool is computed the
same way whatever the chunk, worker or shard, so all splits give identical files.
``bench/tfidf_mining.py`` measures the speed.

Decisions ([D] in the spec unless noted):

- TF-IDF is fitted on all captions of the folder (the training split), with
  ``vectorizer_settings()``: scikit-learn's defaults (raw term counts, smooth idf
  ``ln((1 + n) / (1 + df)) + 1``, l2 row norm, no sublinear tf, unigrams) and a
  token pattern that approximates BERT's basic tokenisation (lower case, accents
  stripped, split at whitespace and punctuation). Similarity is the cosine, i.e.
  the dot product of the l2-normalised rows.
- Stop words are kept by default, as the spec's §3.4 [D] says (the paper says only
  "TF-IDF similarities"). That is exact but quadratic: 75-91 % of caption pairs
  share a word ("a", "the", "of"), so the sparse product is nearly dense and
  mining 3.3M Conceptual Captions takes days on one core
  (``bench/tfidf_mining.py``). For corpora that large, ``stop_words="english"``
  (scikit-learn's 318-word list, applied after lower-casing and accent
  stripping; it also holds a few content words: "front", "top", "fire") with a
  ``max_df`` such as 0.05, plus ``num_workers`` / shards, brings it to hours; the
  header records the choice and readers refuse a file built otherwise.
- ``max_df`` (default 1.0: keep every term) drops the terms present in more than
  that fraction of the captions before the idf and the norms are computed; with
  ``max_df < 1`` the similarity is the cosine over the remaining terms.
- Candidates need ``0 < similarity < max_similarity``: a caption sharing no term
  with the query is no "hard" negative (the sampler falls back to the ordinary
  negatives for a short or empty pool). Ties are broken by the lower product index,
  so the pools do not depend on the chunk size, the workers or the shards.
- The product's own caption is excluded. Another product with the identical text
  has similarity 1 (>= 0.5) and is excluded by the threshold; no separate rule.

Deviation: BERT's basic tokeniser keeps punctuation marks as tokens and splits CJK
characters one by one; the token pattern here drops punctuation (it carries no
lexical overlap) and keeps runs of letters and digits together. Fashion-Gen is
English, so only punctuation differs.

Reference: InterBERT §3.3 ("captions whose TF-IDF similarities with the image's
original caption are lower than 0.5. The top 30 among them ... are selected as the
hard negative captions"); spec imagebert_interbert_commercemm.md §3.4 and §3.11
row 14.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.alignment.trainer import sha256_file
from kaleido_tf.atomic_files import remove_stale_temporaries, temporary_path
from kaleido_tf.errors import ConfigError, DataError
from kaleido_tf.manifest import read_manifest

HARD_NEGATIVES_NAME = "hard_negatives.npz"
FORMAT = "kaleido_tf.hard_negatives"
FORMAT_VERSION = 1
# InterBERT §3.3: "top 30", "lower than 0.5".
DEFAULT_TOP_K = 30
DEFAULT_MAX_SIMILARITY = 0.5
# [D] English stop words removed, every other term kept (module docstring).
DEFAULT_STOP_WORDS: str | None = None
DEFAULT_MAX_DF = 1.0
# The settings of the exact similarity over every term (the spec's §3.4 default).
EXACT_ALL_TERMS: dict[str, Any] = {"stop_words": None, "max_df": 1.0}
# Default query rows per sparse product: at most 256 (128-256 were fastest on 10k
# synthetic captions, bench/tfidf_mining.py), fewer where the chunk's product
# would exceed DEFAULT_MAX_CHUNK_ENTRIES multiply-adds (the mean over the rows of
# sum_t df_t; 2**24 keep a chunk's product and padded candidates under ~0.5 GB).
DEFAULT_CHUNK_ROWS = 256
DEFAULT_MAX_CHUNK_ENTRIES = 1 << 24

# TfidfVectorizer arguments (scikit-learn defaults except the accent stripping
# and the token pattern, see the module docstring); ``stop_words`` and ``max_df``
# are set by ``vectorizer_settings``.
VECTORIZER_SETTINGS: dict[str, Any] = {
    "lowercase": True,
    "strip_accents": "unicode",
    "token_pattern": r"(?u)[^\W_]+",
    "stop_words": DEFAULT_STOP_WORDS,
    "ngram_range": (1, 1),
    "min_df": 1,
    "max_df": DEFAULT_MAX_DF,
    "norm": "l2",
    "use_idf": True,
    "smooth_idf": True,
    "sublinear_tf": False,
}


def _check_vectorizer(stop_words: str | None, max_df: float) -> None:
    if stop_words not in ("english", None):
        raise ConfigError(
            f"stop_words must be 'english' or None (no removal), got {stop_words!r}"
        )
    if isinstance(max_df, bool) or not isinstance(max_df, (int, float)):
        raise ConfigError(f"max_df must be a fraction in (0, 1], got {max_df!r}")
    if not 0.0 < float(max_df) <= 1.0:
        raise ConfigError(f"max_df must be a fraction in (0, 1], got {max_df}")


def vectorizer_settings(
    stop_words: str | None = DEFAULT_STOP_WORDS, max_df: float = DEFAULT_MAX_DF
) -> dict[str, Any]:
    """``VECTORIZER_SETTINGS`` with these stop words and ``max_df``.

    Args:
        stop_words: ``"english"`` (scikit-learn's list) or None (keep them).
        max_df: Drop the terms present in more than this fraction of the
            captions (1.0 keeps every term).

    Raises:
        ConfigError: Another ``stop_words`` or ``max_df`` outside (0, 1].
    """
    _check_vectorizer(stop_words, max_df)
    return {**VECTORIZER_SETTINGS, "stop_words": stop_words, "max_df": float(max_df)}


def tfidf_vectorizer(
    stop_words: str | None = DEFAULT_STOP_WORDS, max_df: float = DEFAULT_MAX_DF
) -> Any:
    """A fresh ``sklearn.feature_extraction.text.TfidfVectorizer`` with
    ``vectorizer_settings(stop_words, max_df)`` (float64 values)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(**vectorizer_settings(stop_words, max_df), dtype=np.float64)


def _settings_json(stop_words: str | None, max_df: float) -> dict[str, Any]:
    """The vectorizer settings as JSON values, with the class and its version."""
    import sklearn

    settings = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in vectorizer_settings(stop_words, max_df).items()
    }
    return {
        "class": "sklearn.feature_extraction.text.TfidfVectorizer",
        "sklearn_version": sklearn.__version__,
        **settings,
    }


@dataclasses.dataclass(frozen=True, eq=False)
class MinedPools:
    """Hard-negative pools of query captions ``row_start ..`` (row r: caption
    ``row_start + r``).

    Attributes:
        pool: int32 [R, k]. Caption indices, most similar first (ties: lower index
            first); -1 after the first ``pool_size[r]`` entries.
        similarity: float32 [R, k]. TF-IDF cosine of each pool entry to its query;
            0 where ``pool`` is -1.
        pool_size: int32 [R]. Valid entries per row (< k when fewer captions have
            ``0 < similarity < max_similarity``).
        num_terms: V, the size of the fitted TF-IDF vocabulary.
        chunk_size: Query rows per sparse product that were used.
        row_start: Caption index of row 0 (0 unless ``rows`` was given).
        pair_density: Share of the (query, caption) pairs that share a term.
    """

    pool: np.ndarray
    similarity: np.ndarray
    pool_size: np.ndarray
    num_terms: int
    chunk_size: int
    row_start: int = 0
    pair_density: float = 0.0


def _check_settings(top_k: int, max_similarity: float, chunk_size: int | None) -> None:
    if top_k < 1:
        raise ConfigError(f"top_k must be >= 1, got {top_k}")
    if not 0.0 < max_similarity <= 1.0:
        raise ConfigError(f"max_similarity must be in (0, 1], got {max_similarity}")
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")


def _chunk_top_k(
    sim: Any, offset: int, top_k: int, max_similarity: float, max_entries: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pools of query rows ``offset .. offset + sim.shape[0]``.

    The candidates (``0 < s < max_similarity``, own caption excluded) of a block
    of rows are scattered into a padded [rows, longest row] array (-inf padding);
    ``argpartition`` finds each row's k-th largest value, every candidate at or
    above it is kept and one ``lexsort`` orders them by (row, -similarity, index),
    so tied candidates go to the lower index. Blocks hold at most ``max_entries``
    padded cells (at least one row).

    Args:
        sim: scipy CSR [c, N]. Similarities of c query captions to every caption.
        offset: Caption index of the chunk's first query row.
        top_k: k.
        max_similarity: Candidates need a similarity strictly below it.
        max_entries: Bound on the padded cells of one block.

    Returns:
        ``(pool int32 [c, k], similarity float32 [c, k], pool_size int32 [c])``.
    """
    c = sim.shape[0]
    pool = np.full((c, top_k), -1, np.int32)
    similarity = np.zeros((c, top_k), np.float32)
    indptr, data, cols = sim.indptr, sim.data, sim.indices
    counts = np.diff(indptr)
    rows = np.repeat(np.arange(c), counts)
    keep = (data > 0.0) & (data < max_similarity)
    keep &= cols != rows + offset
    cum = np.concatenate([[0], np.cumsum(keep)])
    lens = cum[indptr[1:]] - cum[indptr[:-1]]  # candidates per row
    pool_size = np.minimum(lens, top_k).astype(np.int32)
    a = 0
    while a < c:  # blocks of rows whose padded array fits max_entries
        longest = np.maximum.accumulate(counts[a:])
        fits = np.flatnonzero(np.arange(1, c - a + 1) * longest <= max_entries)
        b = a + (int(fits[-1]) + 1 if len(fits) else 1)
        lo, hi = indptr[a], indptr[b]
        sel = keep[lo:hi]
        if lens[a:b].max(initial=0) > top_k:
            width = int(longest[b - a - 1])
            # CSR entry e of row r goes to cell (r - a, e - indptr[r]).
            shift = np.repeat(np.arange(b - a) * width - indptr[a:b], counts[a:b])
            padded = np.full((b - a) * width, -np.inf)
            padded[np.arange(lo, hi) + shift] = np.where(sel, data[lo:hi], -np.inf)
            padded = padded.reshape(b - a, width)
            padded.partition(width - top_k, axis=1)
            kth = padded[:, width - top_k]  # each row's k-th largest candidate
            sel = sel & (data[lo:hi] >= np.repeat(kth, counts[a:b]))
        idx = np.flatnonzero(sel) + lo
        v, j, r = data[idx], cols[idx], rows[idx] - a
        order = np.lexsort((j, -v, r))  # row, similarity descending, index
        v, j, r = v[order], j[order], r[order]
        first = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=b - a))])
        rank = np.arange(len(r)) - first[r]
        ok = rank < top_k
        pool[a + r[ok], rank[ok]] = j[ok]
        similarity[a + r[ok], rank[ok]] = v[ok]
        a = b
    return pool, similarity, pool_size


# Fitted matrices shared with forked workers (copy-on-write), set by
# ``_mine_rows`` for the duration of a pool.
_SHARED: dict[str, Any] = {}


def _mine_chunk(a: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, int]:
    """Pools of query rows ``a .. a + chunk`` (clipped) from ``_SHARED``."""
    s = _SHARED
    b = min(a + s["chunk"], s["stop"])
    sim = s["x"][a:b] @ s["x_t"]  # [c, N] sparse
    out = _chunk_top_k(sim, a, s["top_k"], s["max_similarity"], s["max_entries"])
    return (a, *out, int(sim.nnz))


def _run_chunks(starts: list[int], num_workers: int) -> Iterator[tuple[Any, ...]]:
    if num_workers <= 1 or len(starts) <= 1:
        yield from map(_mine_chunk, starts)
        return
    if "fork" not in multiprocessing.get_all_start_methods():
        raise ConfigError("num_workers > 1 needs the 'fork' start method (POSIX)")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(min(num_workers, len(starts))) as workers:
        yield from workers.imap_unordered(_mine_chunk, starts)


def mine_hard_negatives(
    texts: Sequence[str],
    *,
    top_k: int = DEFAULT_TOP_K,
    max_similarity: float = DEFAULT_MAX_SIMILARITY,
    stop_words: str | None = DEFAULT_STOP_WORDS,
    max_df: float = DEFAULT_MAX_DF,
    chunk_size: int | None = None,
    max_chunk_entries: int = DEFAULT_MAX_CHUNK_ENTRIES,
    num_workers: int = 1,
    rows: tuple[int, int] | None = None,
    progress: bool = False,
) -> MinedPools:
    """Mines each caption's hard-negative pool among the other captions.

    Args:
        texts: N captions; caption i is its own query and is never in its pool.
        top_k: k, the pool size (30 in InterBERT).
        max_similarity: Candidates need a TF-IDF cosine strictly below it (0.5).
        stop_words: None (default, spec §3.4: keep every term) or ``"english"``;
            see the module
            docstring (``EXACT_ALL_TERMS`` for the similarity over every term).
        max_df: Drop terms present in more than this fraction of the captions
            (1.0 keeps all).
        chunk_size: Query rows per sparse product; default
            ``min(256, max(1, max_chunk_entries // m))`` with m the mean number of
            multiply-adds per query row (``sum_t df_t`` over its terms). The
            result does not depend on it.
        max_chunk_entries: Bound on a chunk's multiply-adds when ``chunk_size`` is
            None, and on the padded cells of its top-k step.
        num_workers: Processes splitting the query chunks (fork; the result does
            not depend on it).
        rows: Mine only the queries ``rows[0] .. rows[1]`` (TF-IDF is still fitted
            on every caption); default all.
        progress: Show a tqdm bar (captions) on stderr.

    Returns:
        The pools (``MinedPools``) of the queried rows.

    Raises:
        ConfigError: ``top_k < 1``, ``max_similarity`` outside (0, 1],
            ``chunk_size < 1``, bad ``stop_words`` / ``max_df`` / ``rows`` or
            ``num_workers < 1``.
        DataError: No caption has a single token that is kept.
    """
    from tqdm import tqdm

    _check_settings(top_k, max_similarity, chunk_size)
    if num_workers < 1:
        raise ConfigError(f"num_workers must be >= 1, got {num_workers}")
    n = len(texts)
    start, stop = (0, n) if rows is None else rows
    if not 0 <= start <= stop <= n:
        raise ConfigError(f"rows must satisfy 0 <= start <= stop <= {n}, got {rows}")
    vectorizer = tfidf_vectorizer(stop_words, max_df)
    try:
        x = vectorizer.fit_transform(list(texts)).tocsr()  # [N, V]
    except ValueError as e:  # "empty vocabulary", "no terms remain"
        raise DataError(
            f"TF-IDF cannot be fitted on these captions ({e}): try "
            "--stop-words none or a larger --max-df"
        ) from None
    x_t = x.T.tocsr()  # [V, N], the inverted index (term -> captions)
    if chunk_size is None:
        df = np.diff(x_t.indptr).astype(np.float64)
        per_row = float(((x[start:stop] != 0) @ df).mean()) if stop > start else 1.0
        chunk_size = min(
            DEFAULT_CHUNK_ROWS, max(1, int(max_chunk_entries // max(per_row, 1.0)))
        )
    chunk_size = min(chunk_size, max(stop - start, 1))
    count = stop - start
    pool = np.full((count, top_k), -1, np.int32)
    similarity = np.zeros((count, top_k), np.float32)
    pool_size = np.zeros(count, np.int32)
    pairs = 0
    _SHARED.update(
        x=x,
        x_t=x_t,
        chunk=chunk_size,
        stop=stop,
        top_k=top_k,
        max_similarity=max_similarity,
        max_entries=max(max_chunk_entries, top_k),
    )
    try:
        with tqdm(
            total=count,
            unit="caption",
            desc="TF-IDF hard negatives",
            disable=not progress,
        ) as bar:
            starts = list(range(start, stop, chunk_size))
            for a, p, s, size, nnz in _run_chunks(starts, num_workers):
                pool[a - start : a - start + len(p)] = p
                similarity[a - start : a - start + len(p)] = s
                pool_size[a - start : a - start + len(p)] = size
                pairs += nnz
                bar.update(len(p))
    finally:
        _SHARED.clear()
    density = pairs / (count * n) if count and n else 0.0
    return MinedPools(
        pool,
        similarity,
        pool_size,
        len(vectorizer.vocabulary_),
        chunk_size,
        start,
        density,
    )


# ----------------------------------------------------------------------- files
@dataclasses.dataclass(frozen=True, eq=False)
class HardNegatives:
    """``hard_negatives.npz`` of a prepared folder.

    Row i belongs to the product on line i of ``products.jsonl`` (the dense index
    of ``ProductTable``); pool entries are dense product indices too.

    Attributes:
        product_ids: int64 [N]. ``product_id`` of each row (file order).
        pool: int32 [N, k]. See ``MinedPools``.
        similarity: float32 [N, k]. See ``MinedPools``.
        pool_size: int32 [N]. See ``MinedPools``.
        header: The file's header (settings, products.jsonl SHA-256, counts).
    """

    product_ids: np.ndarray
    pool: np.ndarray
    similarity: np.ndarray
    pool_size: np.ndarray
    header: dict[str, Any]

    @property
    def top_k(self) -> int:
        """k, the pool width."""
        return int(self.header["top_k"])

    @property
    def max_similarity(self) -> float:
        """The similarity every pool entry is below."""
        return float(self.header["max_similarity"])


def products_path(data_dir: str | Path) -> Path:
    """The ``products.jsonl`` of a prepared folder (named by its manifest)."""
    manifest = read_manifest(data_dir)
    return Path(data_dir) / manifest.get("products_file", "products.jsonl")


def read_captions(path: str | Path) -> tuple[np.ndarray, list[str], str]:
    """Reads ``products.jsonl``.

    Returns:
        product_ids: int64 [N], in file order.
        texts: The raw caption of each product.
        sha256: Hex SHA-256 of the file's bytes (the bytes that were parsed).

    Raises:
        DataError: Unreadable file, invalid JSON, or rows without ``text``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        lines = raw.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path} ({e}): rerun `kaleido-tf prepare`")
    try:
        rows = [json.loads(line) for line in lines if line.strip()]
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON lines ({e})") from None
    if not rows:
        raise DataError(f"{path} holds no products")
    if any("text" not in r or "product_id" not in r for r in rows):
        raise DataError(
            f"{path} has rows without 'text' or 'product_id' (an older prepare): "
            "rerun `kaleido-tf prepare`"
        )
    ids = np.asarray([int(r["product_id"]) for r in rows], np.int64)
    return ids, [str(r["text"]) for r in rows], hashlib.sha256(raw).hexdigest()


def _same_build(header: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a header was built from the same products.jsonl and settings (the
    scikit-learn version, the chunk size, the workers and the shards do not
    matter)."""
    keys = ("format_version", "products_sha256", "top_k", "max_similarity")
    if any(header.get(k) != wanted[k] for k in keys):
        return False
    old = {k: v for k, v in header.get("vectorizer", {}).items()}
    new = dict(wanted["vectorizer"])
    old.pop("sklearn_version", None)
    new.pop("sklearn_version", None)
    return old == new


def shard_file_name(shard_index: int, num_shards: int) -> str:
    """``hard_negatives.shard-<i>-of-<K>.npz``: the pools of shard i's rows."""
    return f"hard_negatives.shard-{shard_index:05d}-of-{num_shards:05d}.npz"


def shard_rows(num_rows: int, shard_index: int, num_shards: int) -> tuple[int, int]:
    """Query rows ``[start, stop)`` of shard i: contiguous, sizes differ by <= 1."""
    return (
        num_rows * shard_index // num_shards,
        num_rows * (shard_index + 1) // num_shards,
    )


def _write_npz(out: Path, header: dict[str, Any], arrays: dict[str, Any]) -> None:
    tmp = temporary_path(out)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, header=np.asarray(json.dumps(header, sort_keys=True)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def _counts(size: np.ndarray, top_k: int) -> dict[str, Any]:
    return {
        "products": len(size),
        "pairs": int(size.sum()),
        "full_pools": int((size == top_k).sum()),
        "rows_with_fewer_than_k": int((size < top_k).sum()),
        "empty_pools": int((size == 0).sum()),
        "mean_pool_size": round(float(size.mean()), 3) if len(size) else 0.0,
    }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def mine_data_dir(
    data_dir: str | Path,
    *,
    top_k: int = DEFAULT_TOP_K,
    max_similarity: float = DEFAULT_MAX_SIMILARITY,
    stop_words: str | None = DEFAULT_STOP_WORDS,
    max_df: float = DEFAULT_MAX_DF,
    chunk_size: int | None = None,
    num_workers: int = 1,
    num_shards: int = 1,
    shard_index: int = 0,
    merge: bool = False,
    progress: bool = False,
    overwrite: bool = False,
) -> tuple[dict[str, Any], bool]:
    """Mines the pools of a prepared folder into ``<data_dir>/hard_negatives.npz``.

    Files are written under a temporary name and renamed when complete. A file
    already built from the same ``products.jsonl`` with the same settings is kept
    (nothing is mined) unless ``overwrite``. With ``num_shards`` K > 1, this run
    mines only shard ``shard_index``'s rows (``shard_rows``) into
    ``shard_file_name(i, K)``; the run that finds all K shards of the same build
    present merges them into ``hard_negatives.npz`` (identical to a one-shard
    run), and ``merge=True`` merges without mining (an error if one is missing).

    Args:
        data_dir: A ``kaleido-tf prepare`` output folder (its training split).
        top_k: k (30).
        max_similarity: The similarity threshold (0.5).
        stop_words: None (default) or ``"english"`` (module docstring).
        max_df: Drop terms present in more than this fraction of the captions.
        chunk_size: Query rows per sparse product (default: automatic).
        num_workers: Processes on this machine splitting the query chunks.
        num_shards: K, machines splitting the query rows.
        shard_index: This machine's shard, in [0, K).
        merge: Mine nothing; merge the K shard files.
        progress: Show a tqdm bar.
        overwrite: Replace an existing file (the shard's, or the merged one).

    Returns:
        The header written (or found), and whether a new file was written.

    Raises:
        ConfigError: Bad ``top_k``, ``max_similarity``, ``chunk_size``,
            ``stop_words``, ``max_df``, ``num_workers`` or shard settings.
        DataError: The folder is not prepared, an existing file was built for
            another ``products.jsonl`` or other settings (and not ``overwrite``),
            or ``merge`` and a shard is missing or of another build.
    """
    _check_settings(top_k, max_similarity, chunk_size)
    _check_vectorizer(stop_words, max_df)
    if num_workers < 1:
        raise ConfigError(f"num_workers must be >= 1, got {num_workers}")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ConfigError(
            f"--shard-index {shard_index} must be in [0, --num-shards {num_shards})"
        )
    data_dir = Path(data_dir)
    source = products_path(data_dir)
    product_ids, texts, digest = read_captions(source)
    header: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "products_file": source.name,
        "products_sha256": digest,
        "num_products": len(texts),
        "top_k": top_k,
        "max_similarity": float(max_similarity),
        "min_similarity_exclusive": 0.0,
        "similarity": "cosine of the l2-normalised TF-IDF rows of two captions",
        "excluded": "the product's own caption (one per product)",
        "unit": "product (every image of a product shares its pool)",
        "tie_break": "lower product index first",
        "vectorizer": _settings_json(stop_words, max_df),
    }
    out = data_dir / HARD_NEGATIVES_NAME
    remove_stale_temporaries(out)
    if out.exists() and not overwrite:
        try:
            old = _read_npz(out).header
        except DataError:
            old = {}
        if _same_build(old, header):
            return old, False
        raise DataError(
            f"{out} exists but was built for another products.jsonl or other "
            "settings: pass --overwrite to replace it"
        )
    if merge:
        return _merge_shards(data_dir, header, num_shards, product_ids, strict=True)
    target = (
        out if num_shards == 1 else data_dir / shard_file_name(shard_index, num_shards)
    )
    rows = shard_rows(len(texts), shard_index, num_shards)
    if num_shards > 1:
        remove_stale_temporaries(target)
        if target.exists() and not overwrite:
            try:
                old = _read_npz(target).header
            except DataError:
                old = {}
            if not _same_build(old, header):
                raise DataError(
                    f"{target} exists but was built for another products.jsonl or "
                    "other settings: pass --overwrite to replace it"
                )
            merged = _merge_shards(data_dir, header, num_shards, product_ids)
            return merged if merged[1] else (old, False)
    start = time.perf_counter()
    mined = mine_hard_negatives(
        texts,
        top_k=top_k,
        max_similarity=max_similarity,
        stop_words=stop_words,
        max_df=max_df,
        chunk_size=chunk_size,
        num_workers=num_workers,
        rows=rows,
        progress=progress,
    )
    header.update(
        {
            "created": _now(),
            "num_terms": mined.num_terms,
            "chunk_size": mined.chunk_size,
            "num_workers": num_workers,
            "pair_density": round(mined.pair_density, 6),
            "seconds": round(time.perf_counter() - start, 3),
            "counts": _counts(mined.pool_size, top_k),
        }
    )
    if num_shards > 1:
        header["shard"] = {"index": shard_index, "of": num_shards, "rows": list(rows)}
    _write_npz(
        target,
        header,
        {
            "product_ids": product_ids[rows[0] : rows[1]],
            "pool": mined.pool,
            "similarity": mined.similarity,
            "pool_size": mined.pool_size,
        },
    )
    if num_shards > 1:
        merged = _merge_shards(data_dir, header, num_shards, product_ids)
        if merged[1]:
            return merged
    return header, True


def _merge_shards(
    data_dir: Path,
    header: dict[str, Any],
    num_shards: int,
    product_ids: np.ndarray,
    strict: bool = False,
) -> tuple[dict[str, Any], bool]:
    """Writes ``hard_negatives.npz`` from the K shard files when all are present
    and of this build; else returns ``(header, False)`` (``strict``: raises)."""
    n = len(product_ids)
    parts = []
    for i in range(num_shards):
        path = data_dir / shard_file_name(i, num_shards)
        problem = None
        if not path.is_file():
            problem = "is missing"
        else:
            part = _read_npz(path)
            shard = part.header.get("shard", {})
            if not _same_build(part.header, header) or shard.get("rows") != list(
                shard_rows(n, i, num_shards)
            ):
                problem = "was built for another products.jsonl or other settings"
            parts.append(part)
        if problem is not None:
            if strict:
                raise DataError(
                    f"{path} {problem}: run `kaleido-tf mine-negatives --data "
                    f"{data_dir} --num-shards {num_shards} --shard-index {i}` "
                    "with the same settings, then merge again"
                )
            return header, False
    merged = {
        **header,
        "created": _now(),
        "num_terms": parts[0].header["num_terms"],
        "chunk_size": max(p.header["chunk_size"] for p in parts),
        "num_workers": max(p.header["num_workers"] for p in parts),
        "num_shards": num_shards,
        "pair_density": round(
            sum(p.header["pair_density"] * len(p.pool_size) for p in parts) / n, 6
        ),
        "seconds": round(sum(p.header["seconds"] for p in parts), 3),
    }
    pool_size = np.concatenate([p.pool_size for p in parts])
    merged["counts"] = _counts(pool_size, header["top_k"])
    ids = np.concatenate([p.product_ids for p in parts])
    if not np.array_equal(ids, product_ids):
        raise DataError(f"the shard files of {data_dir} do not cover products.jsonl")
    _write_npz(
        data_dir / HARD_NEGATIVES_NAME,
        merged,
        {
            "product_ids": ids,
            "pool": np.concatenate([p.pool for p in parts]),
            "similarity": np.concatenate([p.similarity for p in parts]),
            "pool_size": pool_size,
        },
    )
    return merged, True


def _read_npz(path: Path) -> HardNegatives:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {
                k: z[k]
                for k in ("header", "product_ids", "pool", "similarity", "pool_size")
            }
        header = json.loads(str(arrays.pop("header")))
    except (OSError, KeyError, ValueError) as e:
        raise DataError(
            f"{path} is unreadable ({e}): rerun `kaleido-tf mine-negatives "
            f"--data {path.parent} --overwrite`"
        ) from None
    if header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path} has format {header.get('format')!r} version "
            f"{header.get('format_version')!r}, this build reads {FORMAT!r} version "
            f"{FORMAT_VERSION}: rerun `kaleido-tf mine-negatives --data "
            f"{path.parent} --overwrite`"
        )
    return HardNegatives(header=header, **arrays)


def load_hard_negatives(data_dir: str | Path) -> HardNegatives:
    """Reads ``<data_dir>/hard_negatives.npz`` and checks it is current.

    Args:
        data_dir: The prepared folder the pools were mined for.

    Returns:
        The pools (``HardNegatives``), row i for line i of ``products.jsonl``.

    Raises:
        DataError: Missing or unreadable file, another format version, or a file
            built for another ``products.jsonl`` (its SHA-256 differs).
    """
    data_dir = Path(data_dir)
    path = data_dir / HARD_NEGATIVES_NAME
    if not path.is_file():
        raise DataError(
            f"{path} not found: mine the hard negatives with `kaleido-tf "
            f"mine-negatives --data {data_dir}`"
        )
    result = _read_npz(path)
    source = products_path(data_dir)
    try:
        digest = sha256_file(source)
    except OSError as e:
        raise DataError(f"cannot read {source} ({e}): rerun `kaleido-tf prepare`")
    if result.header.get("products_sha256") != digest:
        raise DataError(
            f"{path} was built for another {source.name} (SHA-256 differs): rerun "
            f"`kaleido-tf mine-negatives --data {data_dir} --overwrite`"
        )
    n, k = len(result.product_ids), result.top_k
    if result.pool.shape != (n, k) or result.pool_size.shape != (n,):
        raise DataError(
            f"{path} has pools of shape {result.pool.shape} for {n} products and "
            f"k={k}: rerun `kaleido-tf mine-negatives --data {data_dir} --overwrite`"
        )
    return result
