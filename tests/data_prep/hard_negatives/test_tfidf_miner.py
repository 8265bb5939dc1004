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
# Words of scikit-learn's English stop list (typed here, not imported).
STOP = ["a", "The", "with", "of", "and"]
STOP_LIST = {"a", "the", "with", "of", "and"}


def _corpus(seed: int = 0, n: int = 41) -> list[str]:
    """Random captions over a small vocabulary, plus duplicates, an accent
    variant, punctuation and a caption without any token."""
    rng = np.random.default_rng(seed)
    texts = [
        " ".join(rng.choice(WORDS + STOP, size=int(rng.integers(1, 8)))) + "."
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


def _brute_force_similarity(
    texts: list[str], stop: bool = False, max_df: float = 1.0
) -> np.ndarray:
    """Cosine of smooth-idf TF-IDF rows: idf = ln((1 + n) / (1 + df)) + 1, over
    the terms left after the stop words and those in > max_df * n captions."""
    docs = [_tokens(t) for t in texts]
    if stop:
        docs = [[w for w in d if w not in STOP_LIST] for d in docs]
    n = len(texts)
    frequent = {
        w
        for w in {w for d in docs for w in d}
        if sum(w in d for d in docs) > max_df * n
    }
    docs = [[w for w in d if w not in frequent] for d in docs]
    vocab = sorted({w for d in docs for w in d})
    col = {w: i for i, w in enumerate(vocab)}
    counts = np.zeros((len(texts), len(vocab)))
    for i, d in enumerate(docs):
        for w in d:
            counts[i, col[w]] += 1
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


@pytest.mark.parametrize(
    "k, threshold, stop, max_df",
    [
        (4, 0.5, False, 1.0),
        (30, 0.5, False, 1.0),
        (3, 0.3, False, 1.0),
        (4, 0.5, True, 1.0),
        (5, 0.5, True, 0.3),
    ],
)
def test_pools_equal_brute_force(k, threshold, stop, max_df):
    texts = _corpus()
    sim = _brute_force_similarity(texts, stop, max_df)
    mined = mine_hard_negatives(
        texts,
        top_k=k,
        max_similarity=threshold,
        stop_words="english" if stop else None,
        max_df=max_df,
    )
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
    # The settings matter: the stop words / max_df change the similarities.
    if stop or max_df < 1:
        assert not np.allclose(sim, _brute_force_similarity(texts))


def test_chunking_does_not_change_the_pools():
    texts = _corpus(seed=1, n=37)
    ref = mine_hard_negatives(texts, top_k=5, chunk_size=len(texts))
    for chunk in (1, 3, 7):
        got = mine_hard_negatives(texts, top_k=5, chunk_size=chunk)
        assert got.chunk_size == chunk
        np.testing.assert_array_equal(got.pool, ref.pool)
        np.testing.assert_array_equal(got.similarity, ref.similarity)
        np.testing.assert_array_equal(got.pool_size, ref.pool_size)
    # Tiny budgets: automatic chunks of a few rows, top-k blocks of one row.
    auto = mine_hard_negatives(texts, top_k=5, max_chunk_entries=80)
    assert auto.chunk_size < len(texts)
    np.testing.assert_array_equal(auto.pool, ref.pool)
    np.testing.assert_array_equal(auto.similarity, ref.similarity)


def test_workers_and_row_ranges_equal_one_process():
    texts = _corpus(seed=3, n=53)
    for stop_words in ("english", None):
        ref = mine_hard_negatives(texts, top_k=4, stop_words=stop_words)
        got = mine_hard_negatives(
            texts, top_k=4, stop_words=stop_words, chunk_size=5, num_workers=2
        )
        np.testing.assert_array_equal(got.pool, ref.pool)
        np.testing.assert_array_equal(got.similarity, ref.similarity)
        np.testing.assert_array_equal(got.pool_size, ref.pool_size)
        part = mine_hard_negatives(texts, top_k=4, stop_words=stop_words, rows=(10, 30))
        assert part.row_start == 10
        np.testing.assert_array_equal(part.pool, ref.pool[10:30])
        np.testing.assert_array_equal(part.similarity, ref.similarity[10:30])


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="top_k"):
        mine_hard_negatives(["a b", "a c"], top_k=0)
    with pytest.raises(ConfigError, match="max_similarity"):
        mine_hard_negatives(["a b", "a c"], max_similarity=1.5)
    with pytest.raises(DataError, match="TF-IDF"):
        mine_hard_negatives(["!!", "..."])
    with pytest.raises(DataError, match="TF-IDF"):  # only stop words
        mine_hard_negatives(["the a", "of the"], stop_words="english")
    with pytest.raises(ConfigError, match="stop_words"):
        mine_hard_negatives(["a b", "a c"], stop_words="french")
    with pytest.raises(ConfigError, match="max_df"):
        mine_hard_negatives(["a b", "a c"], max_df=0.0)
    with pytest.raises(ConfigError, match="num_workers"):
        mine_hard_negatives(["a b", "a c"], num_workers=0)


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
    assert header["vectorizer"]["stop_words"] is None  # spec §3.4: every term
    assert header["vectorizer"]["max_df"] == 1.0
    assert not list(data.glob(f"{HARD_NEGATIVES_NAME}.tmp-*"))
    # Same products and settings: kept. Other settings: refused without overwrite.
    assert mine_data_dir(data, top_k=6)[1] is False
    with pytest.raises(DataError, match="--overwrite"):
        mine_data_dir(data, top_k=5)
    with pytest.raises(DataError, match="--overwrite"):
        mine_data_dir(data, top_k=6, stop_words="english")
    with pytest.raises(DataError, match="--overwrite"):
        mine_data_dir(data, top_k=6, max_df=0.5)
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


def test_shards_merge_into_the_one_machine_file(tmp_path):
    texts = _corpus(seed=4, n=29)
    one = _prepared(tmp_path / "one", texts)
    header, _ = mine_data_dir(one, top_k=5, stop_words=None, max_df=0.5)
    assert header["vectorizer"]["stop_words"] is None
    assert header["vectorizer"]["max_df"] == 0.5
    ref = load_hard_negatives(one)
    data = _prepared(tmp_path / "three", texts)
    kw = {"top_k": 5, "stop_words": None, "max_df": 0.5, "num_shards": 3}
    with pytest.raises(DataError, match="--shard-index 0"):
        mine_data_dir(data, merge=True, **kw)
    for i in (2, 0):
        assert mine_data_dir(data, shard_index=i, **kw)[0]["shard"]["index"] == i
        assert not (data / HARD_NEGATIVES_NAME).exists()
    header, written = mine_data_dir(data, shard_index=1, num_workers=2, **kw)
    assert written and header["num_shards"] == 3  # the last shard merged
    got = load_hard_negatives(data)
    for name in ("product_ids", "pool", "similarity", "pool_size"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name))
    assert got.header["counts"] == ref.header["counts"]
    with pytest.raises(ConfigError, match="shard-index"):
        mine_data_dir(data, num_shards=2, shard_index=2)
