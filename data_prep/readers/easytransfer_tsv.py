"""Reads the TSV files of the EasyTransfer releases (FashionBERT, Kaleido-BERT).

One example per line; columns separated by tabs, in schema order; a multi-valued
column is a comma-separated list whose length must equal the declared width
(EasyTransfer ``BundleCSVReader``). ``--train_input_fp`` and its siblings name a
``.list_csv`` file: data-file paths, one per line, optionally after a first line
holding the total example count.

Widths are declared as in the released scripts with D = 2048, T = 64 and M = 10;
here they are symbols fixed by the first row (so files with other feature sizes or
text lengths read too) and checked on every later row.

Reference: prior_art.md §1.4 and §2.4; released_checkpoints.md §7.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from kaleido_tf.errors import DataError


@dataclasses.dataclass(frozen=True)
class Column:
    """One TSV column.

    Attributes:
        name: The released schema's column name.
        kind: ``int``, ``float`` or ``str``.
        width: Values in the column: a number, a symbol (``T`` text length,
            ``M`` masked-LM slots, ``K`` masked patches), a multiple of the
            feature size ``D`` (``"64D"``), or alternatives ``"35|45"``.
    """

    name: str
    kind: str
    width: str = "1"


def _text(masked: bool) -> tuple[Column, ...]:
    cols = (
        Column("input_ids", "int", "T"),
        Column("input_mask", "int", "T"),
        Column("segment_ids", "int", "T"),
    )
    if masked:
        cols += (
            Column("masked_lm_positions", "int", "M"),
            Column("masked_lm_ids", "int", "M"),
            Column("masked_lm_weights", "float", "M"),
        )
    return cols


# Kaleido-BERT's five levels: feature and location columns (KB run_*.sh). The
# camouflage location column is declared 35 wide although 9 cells need 45
# (released_checkpoints.md §8 item 2): both are read, see ``KALEIDO_BOX_ALTERNATIVES``.
_LEVELS = (
    ("rotation", 1),
    ("jigsaw", 4),
    ("camouflage", 9),
    ("grey_mask", 16),
    ("blank_mask", 25),
)
KALEIDO_BOX_ALTERNATIVES = {"camouflage": (35, 45)}


def _kaleido_images() -> tuple[Column, ...]:
    feats = tuple(
        Column(f"img_feature_convert_{name}", "float", f"{n}D") for name, n in _LEVELS
    )
    boxes = tuple(
        Column(
            f"img_loc_position_{name}",
            "int",
            "35|45" if name == "camouflage" else str(5 * n),
        )
        for name, n in _LEVELS
    )
    return (*feats, Column("image_mask", "int", "55"), *boxes)


SCHEMAS: dict[str, tuple[Column, ...]] = {
    # ET scripts/fashion_bert/README.md, run_train.sh.
    "fashionbert-pretrain": (
        Column("image_feature", "float", "64D"),
        Column("image_mask", "int", "64"),
        Column("masked_patch_positions", "int", "K"),
        *_text(masked=True),
        Column("nx_sent_labels", "int"),
    ),
    # ET run_eval.sh.
    "fashionbert-eval": (
        Column("image_feature", "float", "64D"),
        Column("image_mask", "int", "64"),
        *_text(masked=False),
        Column("nx_sent_labels", "int"),
        Column("prod_desc", "str"),
        Column("text_prod_id", "str"),
        Column("image_prod_id", "str"),
        Column("prod_img_id", "str"),
    ),
    # KB run_pretrain.sh.
    "kaleido-pretrain": (
        *_text(masked=True),
        *_kaleido_images(),
        Column("img_subtasks_flag", "int"),
        Column("img_grey_lm_ids", "int", "2"),
        Column("img_blank_lm_ids", "int", "3"),
        Column("img_rotate_gt", "int"),
        Column("img_jigsaw_gt", "int"),
        Column("img_camouflage_gt", "int"),
        Column("img_grey_mask_gt", "float", "2D"),
        Column("nx_sent_labels", "int"),
    ),
    # KB run_i2t.sh / run_t2i.sh.
    "kaleido-retrieve": (
        Column("text_prod_id", "str"),
        *_text(masked=False),
        Column("prod_desc", "str"),
        Column("nx_sent_labels", "int"),
        Column("image_prod_id", "str"),
        Column("prod_img_id", "str"),
        *_kaleido_images(),
    ),
    # KB run_cat.sh / run_subcat.sh.
    "kaleido-finetune": (
        Column("text_prod_id", "str"),
        *_text(masked=False),
        Column("prod_desc", "str"),
        Column("image_prod_id", "str"),
        Column("prod_img_id", "str"),
        *_kaleido_images(),
        Column("img_category", "str"),
        Column("img_category_id", "int"),
        Column("img_subcategory", "str"),
        Column("img_subcategory_id", "int"),
    ),
}


def data_files(path: str | Path) -> list[Path]:
    """The data files named by ``path``: itself, or the lines of a ``.list_csv``.

    A list's relative paths are relative to the list's folder; an optional first
    line that is a bare number (the total example count) is skipped.

    Raises:
        DataError: The path, or a file a list names, does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found: give a TSV file or a .list_csv of them")
    if path.suffix != ".list_csv":
        return [path]
    lines = [x.strip() for x in path.read_text("utf-8").splitlines() if x.strip()]
    if lines and lines[0].isdigit():
        lines = lines[1:]
    files = []
    for i, line in enumerate(lines):
        file = Path(line) if Path(line).is_absolute() else path.parent / line
        if not file.is_file():
            raise DataError(
                f"{path}: line {i + 1} names {line}, which does not exist: copy every "
                "shard the list names"
            )
        files.append(file)
    if not files:
        raise DataError(f"{path} lists no data files")
    return files


class TSVReader:
    """Parses the rows of one released schema, checking every column's width.

    Args:
        schema: A key of ``SCHEMAS``.

    Example:
        >>> reader = TSVReader("fashionbert-pretrain")
        >>> for where, row in reader.rows(data_files("train.list_csv")):
        ...     row["image_feature"]  # float32 [64 * D]
    """

    def __init__(self, schema: str) -> None:
        if schema not in SCHEMAS:
            raise DataError(
                f"unknown EasyTransfer schema {schema!r}: valid schemas are "
                f"{sorted(SCHEMAS)}"
            )
        self.schema = schema
        self.columns = SCHEMAS[schema]
        self.symbols: dict[str, int] = {}  # T, M, K, D as fixed by the first row

    def _expected(self, width: str, got: int) -> tuple[int, ...] | str:
        """The widths a column may have, fixing a symbol on its first use; a
        description instead when ``got`` cannot fix it."""
        if "|" in width:
            return tuple(int(w) for w in width.split("|"))
        if width.isdigit():
            return (int(width),)
        factor, symbol = width[:-1], width[-1]
        factor = int(factor) if factor else 1
        if symbol not in self.symbols:
            if got % factor or got == 0:
                return f"a positive multiple of {factor}"
            self.symbols[symbol] = got // factor
        return (factor * self.symbols[symbol],)

    def parse(self, line: str, where: str) -> dict[str, object]:
        """One line -> column name -> value (numpy arrays for numbers, str).

        Raises:
            DataError: Wrong column count, a column of the wrong width, or a
                value that is not a number; the message names ``where`` (file and
                row) and the column.
        """
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != len(self.columns):
            raise DataError(
                f"{where}: {len(fields)} tab-separated columns, the {self.schema} "
                f"schema has {len(self.columns)} "
                f"({', '.join(c.name for c in self.columns)}): not a {self.schema} file"
            )
        row: dict[str, object] = {}
        for i, (col, raw) in enumerate(zip(self.columns, fields)):
            label = f"column {i + 1} ({col.name})"
            if col.kind == "str":
                row[col.name] = raw
                continue
            parts = raw.split(",") if raw.strip() else []
            allowed = self._expected(col.width, len(parts))
            if isinstance(allowed, str) or len(parts) not in allowed:
                declared = (
                    allowed
                    if isinstance(allowed, str)
                    else " or ".join(str(a) for a in allowed)
                )
                raise DataError(
                    f"{where}: {label} has {len(parts)} values, the {self.schema} "
                    f"schema declares {declared}"
                )
            dtype = np.int64 if col.kind == "int" else np.float32
            try:
                value = np.asarray(parts, dtype=np.float64)
            except ValueError:
                bad = next(p for p in parts if not _is_number(p))
                raise DataError(
                    f"{where}: {label} holds {bad.strip()[:20]!r}, not a number"
                ) from None
            if not np.all(np.isfinite(value)):
                raise DataError(f"{where}: {label} holds NaN or Inf")
            if col.kind == "int" and np.any(value != np.round(value)):
                raise DataError(f"{where}: {label} holds non-integer values")
            row[col.name] = value.astype(dtype)
        return row

    def rows(self, files: list[Path]) -> Iterator[tuple[str, int, dict[str, object]]]:
        """Yields (``file:row``, bytes read, parsed row) for every non-empty line."""
        for file in files:
            with open(file, encoding="utf-8", newline="") as f:
                for n, line in enumerate(f, start=1):
                    size = len(line.encode("utf-8"))
                    if not line.strip():
                        yield "", size, {}
                        continue
                    where = f"{file.name}:{n}"
                    yield where, size, self.parse(line, where)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
