"""``kaleido-tf mine-negatives`` (its parser and run, as main.py wires them)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from data_prep.hard_negatives.tfidf_miner import load_hard_negatives
from kaleido_tf import schema
from kaleido_tf.cli import mine_negatives
from kaleido_tf.errors import ConfigError, DataError


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    p = mine_negatives.add_parser(sub)
    p.add_argument("--quiet", action="store_true")
    return parser.parse_args(["mine-negatives", *argv, "--quiet"])


def test_mines_skips_and_refuses_bad_flags(tmp_path, capsys):
    data = tmp_path / "train"
    data.mkdir()
    (data / "manifest.json").write_text(
        json.dumps({"schema_version": schema.SCHEMA_VERSION})
    )
    texts = ["red wool sweater", "red wool scarf", "black leather bag", "red bag"]
    (data / "products.jsonl").write_text(
        "\n".join(json.dumps({"product_id": i, "text": t}) for i, t in enumerate(texts))
    )
    args = _parse(["--data", str(data), "--top-k", "2", "--max-similarity", "0.9"])
    assert mine_negatives.run(args) == 0
    assert "wrote" in capsys.readouterr().err
    loaded = load_hard_negatives(data)
    assert loaded.top_k == 2 and loaded.max_similarity == 0.9
    # "red wool sweater": both "red wool scarf" and "red bag" share terms.
    assert loaded.pool_size[0] == 2 and set(loaded.pool[0]) == {1, 3}
    assert (loaded.similarity[loaded.pool >= 0] < 0.9).all()
    assert np.all(loaded.pool[np.arange(4)] != np.arange(4)[:, None])
    assert mine_negatives.run(args) == 0
    assert "up to date" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="top_k"):
        mine_negatives.run(_parse(["--data", str(data), "--top-k", "0"]))
    assert loaded.header["vectorizer"]["stop_words"] is None
    # Other settings: refused, then rebuilt with --overwrite (two workers, two
    # shards: the second shard merges) into the same pools.
    flags = ["--data", str(data), "--top-k", "2", "--max-similarity", "0.9"]
    exact = [*flags, "--stop-words", "none", "--max-df", "0.9"]
    with pytest.raises(DataError, match="--overwrite"):
        mine_negatives.run(_parse(exact))
    assert mine_negatives.run(_parse([*exact, "--overwrite"])) == 0
    one = load_hard_negatives(data)
    assert one.header["vectorizer"]["stop_words"] is None
    assert one.header["vectorizer"]["max_df"] == 0.9
    shard = [*exact, "--num-shards", "2", "--num-workers", "2", "--overwrite"]
    for i in ("0", "1"):
        assert mine_negatives.run(_parse([*shard, "--shard-index", i])) == 0
    two = load_hard_negatives(data)
    np.testing.assert_array_equal(two.pool, one.pool)
    np.testing.assert_array_equal(two.similarity, one.similarity)
