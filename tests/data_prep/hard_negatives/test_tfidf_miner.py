"""TF-IDF hard-negative pools against a brute-force numpy TF-IDF."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from data_prep.hard_negatives.tfidf_miner import (
    HARD_NEGATIVES_NAME,
    load_hard_negatives,
    mine_data_dir,
    mine_hard_negatives,
)
from kaleido_tf import schema
from kaleido_tf.errors import ConfigError, DataError

WORDS = ["red", "wool", "Sweater", "café", "black", "leather", "bag", "tote", "t-shirt"]


def _corpus(seed: int = 0, n: int = 41) -> list[str]:
    """Random captions over a small vocabulary, plus duplicates, an accent
    variant, punctuation and a caption without any token."""
    rng = np.random.default_rng(seed)
    texts = [
        " ".join(rng.choice(WORDS, size=int(rng.integers(1, 7)))) + "."
        for _ in range(n)
    ]
    texts[5] = texts[3]  # identical captions of two products
    texts[7] = "CAFE, red!"  # accents and case fold onto "café red"
    texts[11] = "!!! ..."  # no token at all
    return texts


def _tokens(text: str) -> list[str]:
    # Lower case, accents stripped (NFKD minus combining marks), runs of letters
    # and digits (punctuation and underscores split and are dropped).
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.findall(r"[^\W_]+", text)


def _brute_force_similarity(texts: list[str]) -> np.ndarray:
    """Cosine of smooth-idf TF-IDF rows: idf = ln((1 + n) / (1 + df)) + 1."""
    docs = [_tokens(t) for t in texts]
    vocab = sorted({w for d in docs for w in d})
    col = {w: i for i, w in enumerate(vocab)}
    counts = np.zeros((len(texts), len(vocab)))
    for i, d in enumerate(docs):
        for w in d:
            counts[i, col[w]] += 1
    n = len(texts)
    df = (counts > 0).sum(0)
    idf = np.asarray([math.log((1 + n) / (1 + f)) + 1 for f in df])
    x = counts * idf
    norm = np.sqrt((x * x).sum(1, keepdims=True))
    x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    return x @ x.T


def _expected_pools(sim: np.ndarray, k: int, threshold: float) -> list[list[int]]:
    """Top-k of 0 < sim < threshold, own caption excluded; ties: lower index."""
    pools = []
    for i in range(len(sim)):
        cand = [
            j for j in range(len(sim)) if j != i and 0 < sim[i, j] < threshold - 1e-9
        ]
        # No candidate may sit on the threshold, or float rounding would decide.
        assert not any(abs(sim[i, j] - threshold) < 1e-9 for j in range(len(sim)))
        cand.sort(key=lambda j: (-round(sim[i, j], 10), j))
        pools.append(cand[:k])
    return pools


@pytest.mark.parametrize("k, threshold", [(4, 0.5), (30, 0.5), (3, 0.3)])
def test_pools_equal_brute_force(k, threshold):
    texts = _corpus()
    sim = _brute_force_similarity(texts)
    mined = mine_hard_negatives(texts, top_k=k, max_similarity=threshold)
    expected = _expected_pools(sim, k, threshold)
    assert mined.pool.shape == (len(texts), k)
    for i, pool in enumerate(expected):
        size = mined.pool_size[i]
        assert mined.pool[i, :size].tolist() == pool, i
        assert (mined.pool[i, size:] == -1).all()
        assert i not in mined.pool[i, :size]
        got = mined.similarity[i, :size]
        np.testing.assert_allclose(got, sim[i, pool], rtol=1e-6, atol=1e-7)
        assert (got < threshold).all() and (got > 0).all()
    # The duplicate captions (similarity 1) never enter each other's pools, and
    # the token-less caption has an empty pool and is in no pool.
    assert 5 not in mined.pool[3] and 3 not in mined.pool[5]
    assert mined.pool_size[11] == 0 and 11 not in mined.pool
    # The corpus makes the test meaningful: truncated pools and short ones.
    sizes = np.asarray([len(p) for p in expected])
    if k == 4:
        assert (sizes == k).sum() > 10 and (sizes < k).sum() >= 1


def test_chunking_does_not_change_the_pools():
    texts = _corpus(seed=1, n=37)
    ref = mine_hard_negatives(texts, top_k=5, chunk_size=len(texts))
    for chunk in (1, 3, 7):
        got = mine_hard_negatives(texts, top_k=5, chunk_size=chunk)
        assert got.chunk_size == chunk
        np.testing.assert_array_equal(got.pool, ref.pool)
        np.testing.assert_array_equal(got.similarity, ref.similarity)
        np.testing.assert_array_equal(got.pool_size, ref.pool_size)
    auto = mine_hard_negatives(texts, top_k=5, max_chunk_entries=80)
    assert auto.chunk_size == 80 // len(texts)
    np.testing.assert_array_equal(auto.pool, ref.pool)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="top_k"):
        mine_hard_negatives(["a b", "a c"], top_k=0)
    with pytest.raises(ConfigError, match="max_similarity"):
        mine_hard_negatives(["a b", "a c"], max_similarity=1.5)
    with pytest.raises(DataError, match="TF-IDF"):
        mine_hard_negatives(["!!", "..."])


def _prepared(folder: Path, texts: list[str]) -> Path:
    """The two files the miner reads: manifest.json and products.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "schema_version": schema.SCHEMA_VERSION,
        "products_file": "products.jsonl",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    rows = [{"product_id": 1000 + 7 * i, "text": t} for i, t in enumerate(texts)]
    (folder / "products.jsonl").write_text(
        "\n".join(json.dumps(r) for r in rows) + "\n"
    )
    return folder


def test_file_round_trip_and_stale_file_refused(tmp_path):
    texts = _corpus(seed=2, n=23)
    data = _prepared(tmp_path / "train", texts)
    header, written = mine_data_dir(data, top_k=6, chunk_size=4)
    assert written
    loaded = load_hard_negatives(data)
    mined = mine_hard_negatives(texts, top_k=6)
    np.testing.assert_array_equal(loaded.pool, mined.pool)
    np.testing.assert_array_equal(loaded.similarity, mined.similarity)
    np.testing.assert_array_equal(loaded.pool_size, mined.pool_size)
    np.testing.assert_array_equal(loaded.product_ids, 1000 + 7 * np.arange(23))
    assert loaded.top_k == 6 and loaded.max_similarity == 0.5
    assert loaded.header == header
    counts = header["counts"]
    assert counts["rows_with_fewer_than_k"] == int((mined.pool_size < 6).sum())
    assert counts["pairs"] == int(mined.pool_size.sum())
    assert (
        header["vectorizer"]["smooth_idf"] and not header["vectorizer"]["sublinear_tf"]
    )
    assert not list(data.glob(f"{HARD_NEGATIVES_NAME}.tmp-*"))
    # Same products and settings: kept. Other settings: refused without overwrite.
    assert mine_data_dir(data, top_k=6)[1] is False
    with pytest.raises(DataError, match="--overwrite"):
        mine_data_dir(data, top_k=5)
    # products.jsonl changed after mining: the loader refuses the stale file.
    _prepared(data, ["red wool", *texts[1:]])
    with pytest.raises(DataError, match="another products.jsonl"):
        load_hard_negatives(data)
    header, written = mine_data_dir(data, top_k=6, overwrite=True)
    assert written and load_hard_negatives(data).header == header


def test_missing_file_and_missing_text(tmp_path):
    data = _prepared(tmp_path / "a", ["red wool", "red bag"])
    with pytest.raises(DataError, match="kaleido-tf mine-negatives"):
        load_hard_negatives(data)
    (data / "products.jsonl").write_text(json.dumps({"product_id": 1}) + "\n")
    with pytest.raises(DataError, match="'text'"):
        mine_data_dir(data)
