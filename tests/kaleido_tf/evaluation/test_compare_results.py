"""``evaluate compare``: several runs in one Table 2, only on identical lists."""

from __future__ import annotations

import json

from kaleido_tf.cli.main import main
from kaleido_tf.evaluation import paper_tables


def _results(folder, system, rank1, sha="a" * 64, seed=0):
    folder.mkdir(parents=True)
    metrics = {f"rank@{k}": rank1 * k for k in (1, 5, 10)}
    body = {
        "system": system,
        "label": "ours",
        "checkpoint": f"{folder}/ckpt-1",
        "lists": "lists.json",
        "lists_sha256": sha,
        "lists_seed": seed,
        "products_fingerprint": "f",
        "itr": metrics,
        "tir": {k: v / 2 for k, v in metrics.items()},
        "sum_r": 100 * 1.5 * sum(metrics.values()),
    }
    (folder / "results.json").write_text(json.dumps(body))
    return folder


def test_one_column_per_run_beside_the_paper(tmp_path):
    a = _results(tmp_path / "kaleido", "kaleido_bert", 0.02)
    b = _results(tmp_path / "image", "image_bert", 0.01)
    out = tmp_path / "table"
    assert main(["evaluate", "compare", str(a), str(b), "--out", str(out)]) == 0
    md = (out / "results.md").read_text()
    header = md.splitlines()[4]
    assert header.endswith("| kaleido_bert (kaleido) | image_bert (image) |")
    itr_rank1 = md.splitlines()[6]
    # Rank@1 of ITR: the paper's Kaleido-BERT, then ours (fractions shown as %).
    cells = [c.strip() for c in itr_rank1.split("|")[1:-1]]
    assert cells[:2] == ["1.ITR", "Rank@1"]
    assert cells[-3:] == ["27.99%", "2.00%", "1.00%"]
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["runs"]) == {"kaleido_bert (kaleido)", "image_bert (image)"}


def test_runs_on_other_lists_are_refused(tmp_path):
    a = _results(tmp_path / "a", "kaleido_bert", 0.02)
    b = _results(tmp_path / "b", "image_bert", 0.01, sha="b" * 64)
    argv = ["evaluate", "compare", str(a), str(b), "--out", str(tmp_path / "t")]
    assert main(argv) != 0
    assert not (tmp_path / "t").exists()
    # Without hashes (older results), seed and products decide.
    c = _results(tmp_path / "c", "kaleido_bert", 0.02, sha="")
    d = _results(tmp_path / "d", "image_bert", 0.01, sha="", seed=1)
    argv = ["evaluate", "compare", str(c), str(d), "--out", str(tmp_path / "u")]
    assert main(argv) != 0
    argv = ["evaluate", "compare", str(a), str(c), "--labels", "x"]
    assert main([*argv, "--out", str(tmp_path / "v")]) != 0  # 1 label, 2 runs


def test_table_rows_take_several_columns():
    cells = paper_tables.table_rows(
        paper_tables.TABLE2_ROWS,
        paper_tables.TABLE2_METHODS,
        {"x": {"sum_r": 12.5}, "y": {}},
    )
    assert cells[0][-2:] == ["x", "y"]
    assert cells[-1][-2:] == ["12.50", "-"]
