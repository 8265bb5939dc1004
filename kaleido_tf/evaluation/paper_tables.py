"""Our results beside the paper's: Kaleido-BERT Table 2 (retrieval) and Table 3.

The paper's numbers are copied verbatim from kaleido_fashionbert.md §4.8 (rows are
metrics, columns are methods; the "(+x%)" gains are left out). Ours are passed in
as fractions (Rank@K, ACC, macro-F) or on the paper's scale (SumR, Sum CLS and the
captioning scores, already ×100), and printed as the paper prints them.

Reference: Kaleido-BERT Table 2, Table 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kaleido_tf.atomic_files import atomic_write_json, atomic_write_text

TABLE2_METHODS = (
    "VSE",
    "VSE++",
    "SCAN",
    "PFAN",
    "ViLBERT",
    "VLBERT",
    "FashionBERT",
    "ImageBERT",
    "OSCAR",
    "Kaleido-BERT",
)
# (task, metric, key of ours, paper values in TABLE2_METHODS order). Rank@K in %.
TABLE2_ROWS = (
    ("1.ITR", "Rank@1", "itr.rank@1",
     (4.010, 4.590, 4.590, 4.290, 20.97, 19.26, 23.96, 22.76, 23.39, 27.99)),
    ("1.ITR", "Rank@5", "itr.rank@5",
     (11.03, 14.99, 16.50, 14.90, 40.49, 39.90, 46.31, 41.89, 44.67, 60.09)),
    ("1.ITR", "Rank@10", "itr.rank@10",
     (22.14, 24.10, 26.60, 24.20, 48.21, 46.05, 52.12, 50.77, 52.55, 68.37)),
    ("2.TIR", "Rank@1", "tir.rank@1",
     (4.350, 4.600, 4.300, 6.200, 21.12, 22.63, 26.75, 24.78, 25.10, 33.88)),
    ("2.TIR", "Rank@5", "tir.rank@5",
     (12.76, 16.89, 13.00, 20.79, 37.23, 36.48, 46.48, 45.20, 49.14, 60.60)),
    ("2.TIR", "Rank@10", "tir.rank@10",
     (20.91, 28.99, 22.30, 31.52, 50.11, 48.52, 55.74, 55.90, 56.68, 68.59)),
    ("", "SumR", "sum_r",
     (75.20, 94.16, 87.29, 101.90, 218.13, 212.84, 251.36, 241.30, 251.53, 319.52)),
)  # fmt: skip

TABLE3_METHODS = ("FashionBERT", "ImageBERT", "OSCAR", "Kaleido-BERT")
# ACC in %, macro-F in 0..1, captioning on the 0-100 scale; None = "-" (not reported).
TABLE3_ROWS = (
    ("3.CR", "ACC", "category.accuracy", (91.25, 90.77, 91.79, 95.07)),
    ("3.CR", "macro-F", "category.macro_f", (0.705, 0.699, 0.727, 0.714)),
    ("3.SUB", "ACC", "subcategory.accuracy", (85.27, 80.11, 84.23, 88.07)),
    ("3.SUB", "macro-F", "subcategory.macro_f", (0.620, 0.575, 0.591, 0.636)),
    ("", "Sum CLS", "sum_cls", (309.02, 298.28, 307.82, 318.14)),
    ("4.FC", "Bleu-4", "captioning.bleu4", (3.30, None, 4.50, 5.70)),
    ("4.FC", "METEOR", "captioning.meteor", (9.80, None, 10.9, 12.8)),
    ("4.FC", "ROUGE-L", "captioning.rouge_l", (29.7, None, 30.1, 32.9)),
    ("4.FC", "CIDEr", "captioning.cider", (30.1, None, 30.7, 32.6)),
    ("", "Sum CAP", "captioning.sum_cap", (72.9, None, 76.2, 84.0)),
)
# Paper metrics printed as percentages (ours are fractions, shown ×100).
_PERCENT = {"Rank@1", "Rank@5", "Rank@10", "ACC"}


def _lookup(ours: dict[str, Any], dotted: str) -> float | None:
    value: Any = ours
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return None if value is None else float(value)


def _paper_cell(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric in _PERCENT:
        return f"{value:.2f}%"
    if metric == "macro-F":
        return f"{value:.3f}"
    return f"{value:.2f}"


def _ours_cell(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric in _PERCENT:
        return f"{100.0 * value:.2f}%"
    if metric == "macro-F":
        return f"{value:.3f}"
    return f"{value:.2f}"


def table_rows(
    rows: tuple, methods: tuple[str, ...], columns: dict[str, dict[str, Any]]
) -> list[list[str]]:
    """The cells of a table: a header, then one row per metric.

    Args:
        rows: ``TABLE2_ROWS`` or ``TABLE3_ROWS``.
        methods: ``TABLE2_METHODS`` or ``TABLE3_METHODS``.
        columns: Our column headers -> our results, nested dicts addressed by the
            rows' dotted keys (e.g. ``{"itr": {"rank@1": 0.25}, "sum_r": 190.0}``);
            missing keys print "-". Several columns put several of our models
            (e.g. Kaleido-BERT and ImageBERT on the same lists) beside the paper.

    Returns:
        Rows of strings, header first.
    """
    out = [["Task", "Metric", *methods, *columns]]
    for task, metric, key, paper in rows:
        out.append(
            [
                task,
                metric,
                *(_paper_cell(metric, v) for v in paper),
                *(_ours_cell(metric, _lookup(ours, key)) for ours in columns.values()),
            ]
        )
    return out


def markdown(cells: list[list[str]]) -> str:
    """A GitHub Markdown table of ``table_rows`` output."""
    lines = ["| " + " | ".join(cells[0]) + " |"]
    lines.append("|" + "---|" * len(cells[0]))
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    return "\n".join(lines) + "\n"


def plain_text(cells: list[list[str]]) -> str:
    """A fixed-width table of ``table_rows`` output for the terminal."""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def table2(ours: dict[str, Any], label: str = "ours") -> list[list[str]]:
    """Kaleido-BERT Table 2 ("Retrieval performances on Fashion-Gen") with ours.

    Args:
        ours: ``{"itr": {"rank@1": ...}, "tir": {...}, "sum_r": ...}`` (Rank@K as
            fractions, SumR ×100).
        label: Header of our column.
    """
    return table_rows(TABLE2_ROWS, TABLE2_METHODS, {label: ours})


def table3(ours: dict[str, Any], label: str = "ours") -> list[list[str]]:
    """Kaleido-BERT Table 3 (CR, SUB, FC) with ours.

    Args:
        ours: ``{"category": classification_metrics.score(...), "subcategory":
            ..., "sum_cls": ..., "captioning": captioning_metrics.score(...)}``;
            any part may be missing.
        label: Header of our column.
    """
    return table_rows(TABLE3_ROWS, TABLE3_METHODS, {label: ours})


def paper_values() -> dict[str, Any]:
    """The paper's Table 2 and Table 3 as plain data (for results.json)."""

    def as_dict(rows: tuple, methods: tuple[str, ...]) -> dict[str, Any]:
        return {key: dict(zip(methods, paper)) for _task, _metric, key, paper in rows}

    return {
        "units": "Rank@K and ACC in %, macro-F in 0..1, the rest as printed",
        "table2": as_dict(TABLE2_ROWS, TABLE2_METHODS),
        "table3": as_dict(TABLE3_ROWS, TABLE3_METHODS),
    }


def write_results(
    out_dir: str | Path,
    results: dict[str, Any],
    tables: dict[str, list[list[str]]],
    title: str,
    notes: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Writes ``results.json`` and ``results.md`` (atomically) into ``out_dir``.

    Args:
        out_dir: The output folder (created).
        results: Everything measured, JSON-serialisable; the paper's numbers are
            added under ``paper``.
        tables: Table caption -> ``table_rows`` output, written in order.
        title: The Markdown heading.
        notes: Paragraphs written after the tables.

    Returns:
        The two paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    atomic_write_json(json_path, {**results, "paper": paper_values()})
    parts = [f"# {title}\n"]
    for caption, cells in tables.items():
        parts.append(f"## {caption}\n\n{markdown(cells)}")
    parts += [f"{note}\n" for note in notes]
    atomic_write_text(md_path, "\n".join(parts))
    return json_path, md_path
