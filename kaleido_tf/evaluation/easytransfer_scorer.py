"""The retrieval scorer of EasyTransfer's FashionBERT scripts, reimplemented.

The published FashionBERT (and Kaleido-BERT) retrieval numbers came out of
EasyTransfer's ``fashionbert_utils.prediction_summary``. It differs from our
protocol (``ranking_metrics``) in four ways, all kept here so that its numbers can
be reproduced:

- Pairs are grouped by *query id* as the file gives it (EasyTransfer: the query's
  product id), however many candidates or positives a group ends up with.
- Candidates are ranked by the raw ``logit[1]``, not by P(match); equal scores
  keep file order (a stable sort), so ties are not pessimistic.
- Rank@K (K = 1, 5, 10, 100) is the fraction of query groups with a label-1 pair
  in their top min(K, group size); the denominator is (groups + 1e-5).
- ACC is argmax(logits) == label over all pairs (a tie goes to class 0), divided
  by (pairs + 1e-5); AUC is scikit-learn's ``roc_auc_score(labels, logit[1])``.

It reads our per-pair TSV (``retrieval.TSV_COLUMNS``) or EasyTransfer's predict
output: one line per batch, five ``\\x01``-separated fields, each a bracketed,
comma-separated list: text product ids, image product ids, image ids, labels and
the flattened 2-way logits.

Reference: prior_art.md §1.7; kaleido_fashionbert.md §3.6 ("Scoring caveats").
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from kaleido_tf.errors import DataError
from kaleido_tf.evaluation.retrieval import TSV_COLUMNS

KS = (1, 5, 10, 100)
# EasyTransfer's direction names -> ours. img2txt groups by the image's product,
# txt2img by the text's product.
EASYTRANSFER_DIRECTIONS = {"img2txt": "itr", "txt2img": "tir"}
_EPSILON = 1e-5  # EasyTransfer's denominators


@dataclasses.dataclass(frozen=True)
class ScoredPairs:
    """Scored (query, candidate) pairs of one direction, in file order.

    Attributes:
        query_ids: The group key of each pair.
        labels: int64 [N]. 1 = match (``constants.ITM_MATCH``), 0 = no match.
        logits: float32 [N, 2]. Raw ITM logits.
    """

    query_ids: tuple[str, ...]
    labels: np.ndarray
    logits: np.ndarray


def easytransfer_metrics(pairs: ScoredPairs) -> dict[str, float]:
    """EasyTransfer's ACC, Rank@1/5/10/100 and AUC of one direction.

    Args:
        pairs: The scored pairs.

    Returns:
        ``accuracy``, ``rank@1``, ``rank@5``, ``rank@10``, ``rank@100`` (fractions),
        ``auc`` (None when the labels are all one class), ``pairs`` and ``queries``
        (distinct query ids).

    Raises:
        DataError: No pairs, or arrays of different lengths.
    """
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(pairs.labels, np.int64)
    logits = np.asarray(pairs.logits, np.float32).reshape(-1, 2)
    n = len(pairs.query_ids)
    if n == 0 or labels.shape != (n,) or logits.shape != (n, 2):
        raise DataError(
            f"scored pairs must be non-empty and agree: {n} query ids, labels "
            f"{labels.shape}, logits {logits.shape}"
        )
    accuracy = float(np.sum(np.argmax(logits, axis=1) == labels)) / (n + _EPSILON)
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(pairs.query_ids):
        groups.setdefault(q, []).append(i)
    found = dict.fromkeys(KS, 0)
    for members in groups.values():
        members = np.asarray(members)
        order = members[np.argsort(-logits[members, 1], kind="stable")]
        top_labels = labels[order]
        for k in KS:
            found[k] += int(np.any(top_labels[:k] == 1))
    out = {"accuracy": accuracy}
    for k in KS:
        out[f"rank@{k}"] = found[k] / (len(groups) + _EPSILON)
    out["auc"] = (
        float(roc_auc_score(labels, logits[:, 1]))
        if len(np.unique(labels)) == 2
        else None
    )
    out["pairs"] = n
    out["queries"] = len(groups)
    return out


def read_pair_scores(path: str | Path) -> dict[str, ScoredPairs]:
    """Reads our per-pair TSV (``retrieval.write_pair_scores``) by direction.

    Raises:
        DataError: Missing file, or a header without the needed columns.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t")
            header = reader.fieldnames or []
            needed = ("direction", "query_id", "label", "logit0", "logit1")
            lacking = [c for c in needed if c not in header]
            if lacking:
                raise DataError(
                    f"{path}: no columns {lacking}; expected a score file of "
                    f"`kaleido-tf evaluate retrieval` ({', '.join(TSV_COLUMNS)})"
                )
            rows: dict[str, list[tuple[str, int, float, float]]] = {}
            for line, row in enumerate(reader, start=2):
                try:
                    entry = (
                        row["query_id"],
                        int(row["label"]),
                        float(row["logit0"]),
                        float(row["logit1"]),
                    )
                except (TypeError, ValueError):
                    raise DataError(f"{path}:{line}: malformed row") from None
                rows.setdefault(row["direction"], []).append(entry)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    return {
        d: ScoredPairs(
            query_ids=tuple(r[0] for r in entries),
            labels=np.asarray([r[1] for r in entries], np.int64),
            logits=np.asarray([(r[2], r[3]) for r in entries], np.float32),
        )
        for d, entries in rows.items()
    }


def _split_list(field: str) -> list[str]:
    items = [x.strip() for x in field.strip().strip("[]").split(",")]
    out = []
    for x in items:
        if x[:2] in ("b'", 'b"'):  # a Python bytes repr
            x = x[1:]
        out.append(x.strip("'\""))
    return out


def read_easytransfer_predictions(path: str | Path, direction: str) -> ScoredPairs:
    """Reads EasyTransfer's FashionBERT predict output (see the module docstring).

    Args:
        path: The results file (``eval_img2txt_results.txt`` and the like).
        direction: "img2txt" (groups by the image's product id) or "txt2img"
            (groups by the text's product id).

    Raises:
        DataError: A line without five fields or with lists of unequal lengths.
        ValueError: An unknown direction.
    """
    if direction not in EASYTRANSFER_DIRECTIONS:
        raise ValueError(
            f"direction must be one of {sorted(EASYTRANSFER_DIRECTIONS)}, got "
            f"{direction!r}"
        )
    path = Path(path)
    query_ids: list[str] = []
    labels: list[int] = []
    logits: list[float] = []
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("\x01")
        if len(fields) != 5:
            raise DataError(
                f"{path}:{number}: {len(fields)} fields, EasyTransfer predictions "
                "have 5 separated by \\x01"
            )
        try:
            text_ids, image_ids, _, line_labels, line_logits = (
                _split_list(f) for f in fields
            )
            line_labels = [int(x) for x in line_labels]
            line_logits = [float(x) for x in line_logits]
        except ValueError:
            raise DataError(f"{path}:{number}: malformed numbers") from None
        n = len(text_ids)
        if not (len(image_ids) == len(line_labels) == n and len(line_logits) == 2 * n):
            raise DataError(f"{path}:{number}: lists of unequal lengths")
        query_ids += text_ids if direction == "txt2img" else image_ids
        labels += line_labels
        logits += line_logits
    return ScoredPairs(
        query_ids=tuple(query_ids),
        labels=np.asarray(labels, np.int64),
        logits=np.asarray(logits, np.float32).reshape(-1, 2),
    )


def looks_like_easytransfer(path: str | Path) -> bool:
    """Whether the file's first line is EasyTransfer's (``\\x01``-separated)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return "\x01" in f.readline()
