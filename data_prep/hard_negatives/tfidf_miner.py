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
product, [chunk, N], ``chunk * N`` bounded by ``max_chunk_entries``), and each row
keeps its top-k candidates with ``numpy.partition``; a tqdm bar counts captions.
Time is O(number of caption pairs sharing a term), i.e. quadratic in N on corpora
without stop-word removal (``bench/tfidf_mining.py`` measures it); memory is
linear in N.

Decisions ([D] in the spec unless noted):

- TF-IDF is fitted on all captions of the folder (the training split), with
  ``VECTORIZER_SETTINGS``: scikit-learn's defaults (raw term counts, smooth idf
  ``ln((1 + n) / (1 + df)) + 1``, l2 row norm, no sublinear tf, no stop-word
  removal, unigrams) and a token pattern that approximates BERT's basic
  tokenisation (lower case, accents stripped, split at whitespace and punctuation).
  Similarity is the cosine, i.e. the dot product of the l2-normalised rows.
- Candidates need ``0 < similarity < max_similarity``: a caption sharing no term
  with the query is no "hard" negative (the sampler falls back to the ordinary
  negatives for a short or empty pool). Ties are broken by the lower product index,
  so the pools do not depend on the chunk size.
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
import os
import time
from collections.abc import Sequence
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
# Default query rows per sparse product: 128-256 rows were fastest on 10k synthetic
# captions (bench/tfidf_mining.py); fewer where chunk rows x N would exceed
# DEFAULT_MAX_CHUNK_ENTRIES similarity entries (2**24 keep a chunk's sparse
# product and masks under ~0.5 GB).
DEFAULT_CHUNK_ROWS = 256
DEFAULT_MAX_CHUNK_ENTRIES = 1 << 24

# TfidfVectorizer arguments (scikit-learn defaults except the accent stripping
# and the token pattern, see the module docstring).
VECTORIZER_SETTINGS: dict[str, Any] = {
    "lowercase": True,
    "strip_accents": "unicode",
    "token_pattern": r"(?u)[^\W_]+",
    "stop_words": None,
    "ngram_range": (1, 1),
    "min_df": 1,
    "max_df": 1.0,
    "norm": "l2",
    "use_idf": True,
    "smooth_idf": True,
    "sublinear_tf": False,
}


def tfidf_vectorizer() -> Any:
    """A fresh ``sklearn.feature_extraction.text.TfidfVectorizer`` with
    ``VECTORIZER_SETTINGS`` (float64 values)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(**VECTORIZER_SETTINGS, dtype=np.float64)


def _settings_json() -> dict[str, Any]:
    """``VECTORIZER_SETTINGS`` as JSON values, with the class and its version."""
    import sklearn

    settings = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in VECTORIZER_SETTINGS.items()
    }
    return {
        "class": "sklearn.feature_extraction.text.TfidfVectorizer",
        "sklearn_version": sklearn.__version__,
        **settings,
    }


@dataclasses.dataclass(frozen=True, eq=False)
class MinedPools:
    """Hard-negative pools of N captions (row i: caption i's pool).

    Attributes:
        pool: int32 [N, k]. Caption indices, most similar first (ties: lower index
            first); -1 after the first ``pool_size[i]`` entries.
        similarity: float32 [N, k]. TF-IDF cosine of each pool entry to caption i;
            0 where ``pool`` is -1.
        pool_size: int32 [N]. Valid entries per row (< k when fewer captions have
            ``0 < similarity < max_similarity``).
        num_terms: V, the size of the fitted TF-IDF vocabulary.
        chunk_size: Query rows per sparse product that were used.
    """

    pool: np.ndarray
    similarity: np.ndarray
    pool_size: np.ndarray
    num_terms: int
    chunk_size: int


def _check_settings(top_k: int, max_similarity: float, chunk_size: int | None) -> None:
    if top_k < 1:
        raise ConfigError(f"top_k must be >= 1, got {top_k}")
    if not 0.0 < max_similarity <= 1.0:
        raise ConfigError(f"max_similarity must be in (0, 1], got {max_similarity}")
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")


def _chunk_top_k(
    sim: Any,
    offset: int,
    top_k: int,
    max_similarity: float,
    pool: np.ndarray,
    similarity: np.ndarray,
    pool_size: np.ndarray,
) -> None:
    """Writes the pools of query rows ``offset .. offset + sim.shape[0]``.

    Args:
        sim: scipy CSR [c, N]. Similarities of c query captions to every caption.
        offset: Caption index of the chunk's first query row.
        top_k: k.
        max_similarity: Candidates need a similarity strictly below it.
        pool, similarity, pool_size: The outputs (see ``MinedPools``), filled in
            place for the chunk's rows.
    """
    c = sim.shape[0]
    rows = np.repeat(np.arange(c), np.diff(sim.indptr))
    data, cols = sim.data, sim.indices
    keep = (data > 0.0) & (data < max_similarity) & (cols != rows + offset)
    data, cols, rows = data[keep], cols[keep], rows[keep]
    starts = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=c))])
    for i in range(c):
        v = data[starts[i] : starts[i + 1]]
        j = cols[starts[i] : starts[i + 1]]
        if len(v) > top_k:
            kth = np.partition(v, len(v) - top_k)[len(v) - top_k]  # k-th largest
            above = np.flatnonzero(v > kth)
            tied = np.flatnonzero(v == kth)
            tied = tied[np.argsort(j[tied], kind="stable")[: top_k - len(above)]]
            sel = np.concatenate([above, tied])
            v, j = v[sel], j[sel]
        order = np.lexsort((j, -v))  # similarity descending, then index ascending
        n = len(order)
        pool[offset + i, :n] = j[order]
        similarity[offset + i, :n] = v[order]
        pool_size[offset + i] = n


def mine_hard_negatives(
    texts: Sequence[str],
    *,
    top_k: int = DEFAULT_TOP_K,
    max_similarity: float = DEFAULT_MAX_SIMILARITY,
    chunk_size: int | None = None,
    max_chunk_entries: int = DEFAULT_MAX_CHUNK_ENTRIES,
    progress: bool = False,
) -> MinedPools:
    """Mines each caption's hard-negative pool among the other captions.

    Args:
        texts: N captions; caption i is its own query and is never in its pool.
        top_k: k, the pool size (30 in InterBERT).
        max_similarity: Candidates need a TF-IDF cosine strictly below it (0.5).
        chunk_size: Query rows per sparse product; default
            ``min(256, max(1, max_chunk_entries // N))``. The result does not
            depend on it.
        max_chunk_entries: Bound on ``chunk_size * N`` when ``chunk_size`` is None.
        progress: Show a tqdm bar (captions) on stderr.

    Returns:
        The pools (``MinedPools``).

    Raises:
        ConfigError: ``top_k < 1``, ``max_similarity`` outside (0, 1] or
            ``chunk_size < 1``.
        DataError: No caption has a single token.
    """
    from tqdm import tqdm

    _check_settings(top_k, max_similarity, chunk_size)
    n = len(texts)
    vectorizer = tfidf_vectorizer()
    try:
        x = vectorizer.fit_transform(list(texts)).tocsr()  # [N, V]
    except ValueError as e:  # "empty vocabulary"
        raise DataError(f"TF-IDF cannot be fitted on these captions ({e})") from None
    x_t = x.T.tocsr()  # [V, N], the inverted index (term -> captions)
    if chunk_size is None:
        chunk_size = min(DEFAULT_CHUNK_ROWS, max(1, max_chunk_entries // max(n, 1)))
    chunk_size = min(chunk_size, max(n, 1))
    pool = np.full((n, top_k), -1, np.int32)
    similarity = np.zeros((n, top_k), np.float32)
    pool_size = np.zeros(n, np.int32)
    with tqdm(
        total=n, unit="caption", desc="TF-IDF hard negatives", disable=not progress
    ) as bar:
        for a in range(0, n, chunk_size):
            sim = x[a : a + chunk_size] @ x_t  # [c, N] sparse
            _chunk_top_k(sim, a, top_k, max_similarity, pool, similarity, pool_size)
            bar.update(sim.shape[0])
    return MinedPools(
        pool, similarity, pool_size, len(vectorizer.vocabulary_), chunk_size
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
    scikit-learn version and the chunk size do not matter)."""
    keys = ("format_version", "products_sha256", "top_k", "max_similarity")
    if any(header.get(k) != wanted[k] for k in keys):
        return False
    old = {k: v for k, v in header.get("vectorizer", {}).items()}
    new = dict(wanted["vectorizer"])
    old.pop("sklearn_version", None)
    new.pop("sklearn_version", None)
    return old == new


def mine_data_dir(
    data_dir: str | Path,
    *,
    top_k: int = DEFAULT_TOP_K,
    max_similarity: float = DEFAULT_MAX_SIMILARITY,
    chunk_size: int | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> tuple[dict[str, Any], bool]:
    """Mines the pools of a prepared folder into ``<data_dir>/hard_negatives.npz``.

    The file is written under a temporary name and renamed when complete. A file
    already built from the same ``products.jsonl`` with the same settings is kept
    (nothing is mined) unless ``overwrite``.

    Args:
        data_dir: A ``kaleido-tf prepare`` output folder (its training split).
        top_k: k (30).
        max_similarity: The similarity threshold (0.5).
        chunk_size: Query rows per sparse product (default: automatic).
        progress: Show a tqdm bar.
        overwrite: Replace an existing file.

    Returns:
        The header written (or found), and whether a new file was written.

    Raises:
        ConfigError: Bad ``top_k``, ``max_similarity`` or ``chunk_size``.
        DataError: The folder is not prepared, or an existing file was built for
            another ``products.jsonl`` or other settings (and not ``overwrite``).
    """
    _check_settings(top_k, max_similarity, chunk_size)
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
        "vectorizer": _settings_json(),
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
    start = time.perf_counter()
    mined = mine_hard_negatives(
        texts,
        top_k=top_k,
        max_similarity=max_similarity,
        chunk_size=chunk_size,
        progress=progress,
    )
    size = mined.pool_size
    header.update(
        {
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
            "num_terms": mined.num_terms,
            "chunk_size": mined.chunk_size,
            "seconds": round(time.perf_counter() - start, 3),
            "counts": {
                "products": len(texts),
                "pairs": int(size.sum()),
                "full_pools": int((size == top_k).sum()),
                "rows_with_fewer_than_k": int((size < top_k).sum()),
                "empty_pools": int((size == 0).sum()),
                "mean_pool_size": round(float(size.mean()), 3),
            },
        }
    )
    tmp = temporary_path(out)
    try:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                header=np.asarray(json.dumps(header, sort_keys=True)),
                product_ids=product_ids,
                pool=mined.pool,
                similarity=mined.similarity,
                pool_size=mined.pool_size,
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return header, True


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
