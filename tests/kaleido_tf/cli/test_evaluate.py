"""`kaleido-tf evaluate`: build-lists, retrieval, easytransfer; one-line errors."""

import argparse
import json

import numpy as np
import pytest

from kaleido_tf.cli import evaluate
from kaleido_tf.errors import ConfigError, DataError, KaleidoError
from kaleido_tf.evaluation.easytransfer_scorer import (
    easytransfer_metrics,
    read_pair_scores,
)
from kaleido_tf.evaluation.ranking_metrics import positive_ranks


def run(argv):
    """Parses and runs like ``kaleido-tf`` (main.py adds --quiet/--debug too)."""
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    evaluate.add_parser(sub)
    args = parser.parse_args(["evaluate", *argv])
    args.quiet = True
    return evaluate.run(args)


def one_line_error(argv, kind=KaleidoError):
    with pytest.raises(kind) as err:
        run(argv)
    message = str(err.value)
    assert "\n" not in message and message
    return message


@pytest.fixture(scope="module")
def lists_file(synthetic_prepared, tmp_path_factory):
    path = tmp_path_factory.mktemp("lists") / "lists.json"
    data = str(synthetic_prepared["validation"])
    argv = ["build-lists", "--data", data, "--out", str(path)]
    assert run(argv + ["--queries", "8", "--negatives", "5", "--seed", "2"]) == 0
    return path


def test_build_lists_writes_the_file(lists_file, capsys):
    saved = json.loads(lists_file.read_text())
    assert (saved["seed"], saved["num_queries"], saved["num_negatives"]) == (2, 8, 5)
    assert all(len(saved["queries"][d]) == 8 for d in ("itr", "tir"))


def test_retrieval_writes_results_that_re_score(
    lists_file, synthetic_prepared, tiny_pretrain_run, tmp_path, capsys
):
    out = tmp_path / "results"
    argv = [
        "retrieval",
        "--model-dir",
        str(tiny_pretrain_run),
        "--data",
        str(synthetic_prepared["validation"]),
        "--lists",
        str(lists_file),
        "--out",
        str(out),
        "--batch-size",
        "16",
        "--label",
        "ours (zero-shot)",
    ]
    assert run(argv) == 0
    printed = capsys.readouterr().out
    assert "27.99%" in printed and "ours (zero-shot)" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["step"] == 4 and results["lists_seed"] == 2
    # The metrics agree with a re-computation from the per-pair file.
    pairs = read_pair_scores(out / "retrieval_scores.tsv")
    total = 0.0
    for d in ("itr", "tir"):
        margin = (pairs[d].logits[:, 1] - pairs[d].logits[:, 0]).reshape(8, 6)
        positives = np.argmax(pairs[d].labels.reshape(8, 6), axis=1)
        ranks = positive_ranks(margin, positives)
        for k in (1, 5, 10):
            assert results[d][f"rank@{k}"] == pytest.approx(np.mean(ranks <= k))
            total += 100 * np.mean(ranks <= k)
        assert results["easytransfer"][d] == pytest.approx(
            easytransfer_metrics(pairs[d])
        )
    assert results["sum_r"] == pytest.approx(total)
    md = (out / "results.md").read_text()
    assert "| 1.ITR | Rank@1 | 4.01% |" in md
    ours = 100 * results["itr"]["rank@1"]
    assert f"| 27.99% | {ours:.2f}% |" in md

    assert (
        run(["easytransfer", "--predictions", str(out / "retrieval_scores.tsv")]) == 0
    )
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("img2txt: ACC") and printed[1].startswith("txt2img")

    # Lists scored against another data folder: a one-line DataError.
    wrong = argv.copy()
    wrong[wrong.index("--data") + 1] = str(synthetic_prepared["train"])
    assert "other products" in one_line_error(wrong, DataError)


def test_cli_errors_are_one_line(lists_file, synthetic_prepared, tmp_path):
    data = str(synthetic_prepared["validation"])
    again = ["build-lists", "--data", data, "--out", str(lists_file)]
    assert "--overwrite" in one_line_error(again, ConfigError)
    too_many = ["build-lists", "--data", data, "--out", str(tmp_path / "x.json")]
    assert "--negatives 7" in one_line_error(too_many + ["--negatives", "100"])
    et = tmp_path / "eval_txt2img_results.txt"
    et.write_text("[1,2]\x01[1,1]\x01[1_1,1_1]\x01[1,0]\x01[0,1,1,0]\n")
    assert "--direction" in one_line_error(["easytransfer", "--predictions", str(et)])
    missing = ["easytransfer", "--predictions", str(tmp_path / "nope.tsv")]
    assert "no such file" in one_line_error(missing, DataError)
