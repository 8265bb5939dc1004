"""The paper's tables: transcribed numbers re-add, ours print beside them."""

import json

import pytest

from kaleido_tf.evaluation import paper_tables
from kaleido_tf.evaluation.paper_tables import (
    TABLE2_METHODS,
    TABLE2_ROWS,
    TABLE3_METHODS,
    TABLE3_ROWS,
)


def test_transcribed_sums_re_add():
    # SumR = sum of the six Rank@K of each method (kaleido_fashionbert.md §4.8).
    values = {row[2]: row[3] for row in TABLE2_ROWS}
    for i, method in enumerate(TABLE2_METHODS):
        six = sum(values[k][i] for k in values if k != "sum_r")
        assert six == pytest.approx(values["sum_r"][i], abs=0.011), method
    t3 = {row[2]: row[3] for row in TABLE3_ROWS}
    for i, method in enumerate(TABLE3_METHODS):
        cls = (
            t3["category.accuracy"][i]
            + 100 * t3["category.macro_f"][i]
            + t3["subcategory.accuracy"][i]
            + 100 * t3["subcategory.macro_f"][i]
        )
        assert cls == pytest.approx(t3["sum_cls"][i], abs=0.011), method
        caps = [
            t3[f"captioning.{m}"][i] for m in ("bleu4", "meteor", "rouge_l", "cider")
        ]
        if None not in caps:
            assert sum(caps) == pytest.approx(t3["captioning.sum_cap"][i], abs=0.011)


def ours_retrieval():
    return {
        "itr": {"rank@1": 0.0125, "rank@5": 0.05, "rank@10": 0.1},
        "tir": {"rank@1": 0.02, "rank@5": 0.0525, "rank@10": 0.099},
        "sum_r": 33.4,
    }


def test_table2_cells_and_markdown():
    cells = paper_tables.table2(ours_retrieval(), "ours (zero-shot)")
    assert cells[0] == ["Task", "Metric", *TABLE2_METHODS, "ours (zero-shot)"]
    assert cells[1][:3] == ["1.ITR", "Rank@1", "4.01%"]
    assert cells[1][-2:] == ["27.99%", "1.25%"]
    assert cells[6][-2:] == ["68.59%", "9.90%"]
    assert cells[7][-2:] == ["319.52", "33.40"]
    md = paper_tables.markdown(cells)
    lines = md.splitlines()
    assert len(lines) == 2 + len(TABLE2_ROWS)
    assert all(line.count("|") == len(cells[0]) + 1 for line in lines)
    assert lines[2] == (
        "| 1.ITR | Rank@1 | 4.01% | 4.59% | 4.59% | 4.29% | 20.97% | 19.26% | "
        "23.96% | 22.76% | 23.39% | 27.99% | 1.25% |"
    )
    text = paper_tables.plain_text(cells).splitlines()
    assert len({len(line) for line in text}) == 1  # aligned columns


def test_table3_missing_parts_print_dashes():
    ours = {
        "category": {"accuracy": 0.5, "macro_f": 0.25},
        "captioning": {"bleu4": 1.5, "sum_cap": 20.0},
    }
    rows = {(r[0], r[1]): r for r in paper_tables.table3(ours)[1:]}
    assert rows[("3.CR", "ACC")][-1] == "50.00%"
    assert rows[("3.CR", "macro-F")][-1] == "0.250"
    assert rows[("3.SUB", "ACC")][-1] == "-"
    assert rows[("4.FC", "Bleu-4")][-3:] == ["4.50", "5.70", "1.50"]
    assert rows[("4.FC", "METEOR")][2:4] == ["9.80", "-"]  # ImageBERT: not reported


def test_write_results(tmp_path):
    cells = paper_tables.table2(ours_retrieval())
    json_path, md_path = paper_tables.write_results(
        tmp_path / "r", {"sum_r": 33.4}, {"Table 2": cells}, "Title", ["A note."]
    )
    saved = json.loads(json_path.read_text())
    assert saved["sum_r"] == 33.4
    assert saved["paper"]["table2"]["itr.rank@1"]["Kaleido-BERT"] == 27.99
    assert saved["paper"]["table3"]["captioning.meteor"]["ImageBERT"] is None
    md = md_path.read_text()
    assert md.startswith("# Title\n") and "## Table 2" in md and "A note." in md
    assert paper_tables.markdown(cells) in md
