"""Readers and a writer of the bottom-up-attention region-feature files.

Visual-Genome Faster R-CNN pipelines (peteanderson80/bottom-up-attention and the
LXMERT / UNITER / py-bottom-up-attention forks) store, per image, the image id and
size, the box count, and base64-encoded float32 ``boxes`` [N, 4] (x1, y1, x2, y2,
pixels) and ``features`` [N, D], plus class information:

* TSV, one image per line, tab-separated, no header. Column layouts read here:
  6 columns ``image_id, image_w, image_h, num_boxes, boxes, features``
  (generate_tsv.py); 7 columns, the same + ``cls_prob`` [N, 1601] (background
  column 0); 10 columns, LXMERT's ``img_id, img_h, img_w, objects_id,
  objects_conf, attrs_id, attrs_conf, num_boxes, boxes, features`` (``*_id``
  base64 int64). A file may instead start with a header line naming its columns
  (any of the names above); ``write_bottom_up_tsv`` writes one when it adds
  ``cls_prob`` to the LXMERT columns.
* NPZ, one ``<image_id>.npz`` per image (py-bottom-up-attention /
  bottom-up-attention.pytorch): ``x`` or ``features`` [N, D], ``bbox`` [N, 4],
  ``num_bbox``, ``image_w``, ``image_h`` and optionally ``cls_prob``,
  ``objects_id``, ``objects_conf`` or an ``info`` dict holding the last two
  (a pickled object: only read for files you trust).

Scores: ``objects_conf`` if present, else the largest object-class ``cls_prob``
(the bottom-up confidence ``max_conf``), else 1.0 (file order is kept). Labels:
``objects_id`` if present, else the argmax of ``cls_prob`` without background.

Files are streamed: a TSV is indexed once (image id -> byte offset, reading only
each line's first field) and each image is decoded when asked for.

Reference: imagebert_interbert_commercemm.md §2.2, §2.10 item 1; Anderson et al.
2018 "Bottom-Up and Top-Down Attention" (the feature files' origin).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from data_prep.regions.region_records import Detections
from kaleido_tf.atomic_files import atomic_write_bytes, temporary_path
from kaleido_tf.errors import DataError

TSV_LAYOUTS: dict[int, tuple[str, ...]] = {
    6: ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features"),
    7: ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features", "cls_prob"),
    10: (
        "img_id",
        "img_h",
        "img_w",
        "objects_id",
        "objects_conf",
        "attrs_id",
        "attrs_conf",
        "num_boxes",
        "boxes",
        "features",
    ),
}
# Column-name synonyms of the forks.
_SYNONYMS = {"img_id": "image_id", "img_w": "image_w", "img_h": "image_h"}
_KNOWN = {
    "image_id",
    "image_w",
    "image_h",
    "num_boxes",
    "boxes",
    "features",
    "cls_prob",
    "objects_id",
    "objects_conf",
    "attrs_id",
    "attrs_conf",
}
_INT_COLUMNS = ("objects_id", "attrs_id")


def _decode(text: str, dtype, count: int, width: int | None, where: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DataError(f"{where}: not valid base64") from None
    item = np.dtype(dtype).itemsize
    if len(raw) % item:
        raise DataError(f"{where}: {len(raw)} bytes is not a whole number of {dtype}")
    array = np.frombuffer(raw, dtype=dtype)
    if width is None:
        if array.size != count:
            raise DataError(f"{where}: {array.size} values for {count} boxes")
        return array.copy()
    if count == 0:
        return np.zeros((0, width or 0), dtype)
    if width == -1:
        if array.size % count:
            raise DataError(
                f"{where}: {array.size} values do not split into {count} rows"
            )
        width = array.size // count
    if array.size != count * width:
        raise DataError(f"{where}: {array.size} values, expected {count} x {width}")
    return array.reshape(count, width).copy()


def _detections(
    values: dict, num_boxes: int, width: int, height: int, where: str
) -> Detections:
    """Builds Detections from decoded columns (features, boxes, optional classes)."""
    boxes = values["boxes"]
    features = values["features"]
    class_probs = values.get("cls_prob")
    classes = values.get("objects_id")
    scores = values.get("objects_conf")
    if scores is None:
        if class_probs is not None and class_probs.shape[1] > 1 and num_boxes:
            scores = class_probs[:, 1:].max(axis=1)
        else:
            scores = np.ones((num_boxes,), np.float32)
    return Detections(
        boxes=np.asarray(boxes, np.float32),
        scores=np.asarray(scores, np.float32),
        features=np.asarray(features, np.float32),
        image_width=width,
        image_height=height,
        class_probs=None
        if class_probs is None
        else np.asarray(class_probs, np.float32),
        classes=None if classes is None else np.asarray(classes, np.int64),
    )


def parse_tsv_line(
    line: str, columns: tuple[str, ...], where: str
) -> tuple[str, Detections]:
    """Decodes one bottom-up TSV line.

    Args:
        line: The line, without its newline.
        columns: Its column names (``TSV_LAYOUTS`` or a header).
        where: File and line, for error messages.

    Returns:
        ``(image_id, detections)``.

    Raises:
        DataError: Wrong column count, bad numbers, malformed base64, sizes that
            disagree with ``num_boxes``.
    """
    cells = line.split("\t")
    if len(cells) != len(columns):
        raise DataError(
            f"{where}: {len(cells)} tab-separated columns, expected {len(columns)} "
            f"({', '.join(columns)})"
        )
    row = {_SYNONYMS.get(c, c): v for c, v in zip(columns, cells)}
    image_id = row["image_id"]
    where = f"{where} (image {image_id})"
    try:
        width, height = int(row["image_w"]), int(row["image_h"])
        n = int(row["num_boxes"])
    except ValueError:
        raise DataError(
            f"{where}: image_w, image_h and num_boxes must be integers"
        ) from None
    values = {
        "boxes": _decode(row["boxes"], np.float32, n, 4, f"{where} boxes"),
        "features": _decode(row["features"], np.float32, n, -1, f"{where} features"),
    }
    if "cls_prob" in row:
        values["cls_prob"] = _decode(
            row["cls_prob"], np.float32, n, -1, f"{where} cls_prob"
        )
    if "objects_id" in row:
        values["objects_id"] = _decode(
            row["objects_id"], np.int64, n, None, f"{where} objects_id"
        )
    if "objects_conf" in row:
        values["objects_conf"] = _decode(
            row["objects_conf"], np.float32, n, None, f"{where} objects_conf"
        )
    return image_id, _detections(values, n, width, height, where)


class BottomUpTSV:
    """Random access by image id to one or more bottom-up TSV files.

    Opening indexes every file (image id -> byte offset); ``get`` decodes one
    line. Memory holds only the index.

    Args:
        paths: The TSV files.

    Raises:
        DataError: A missing file, an unknown column layout, a duplicate id.
    """

    kind = "bottom_up_tsv"

    def __init__(self, paths: Iterable[str | Path]) -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise DataError("no bottom-up TSV file given")
        self._index: dict[str, tuple[int, int]] = {}
        self._columns: list[tuple[str, ...]] = []
        for f, path in enumerate(self.paths):
            if not path.is_file():
                raise DataError(f"bottom-up TSV {path} not found")
            self._columns.append(self._index_file(f, path))
        self._handles: dict[int, object] = {}

    def _index_file(self, f: int, path: Path) -> tuple[str, ...]:
        columns: tuple[str, ...] | None = None
        with open(path, "rb") as fh:
            offset = 0
            for number, raw in enumerate(fh, start=1):
                start, offset = offset, offset + len(raw)
                if not raw.strip():
                    continue
                first, _, rest = raw.partition(b"\t")
                if columns is None:
                    names = raw.decode("utf-8", "replace").rstrip("\r\n").split("\t")
                    if {_SYNONYMS.get(n, n) for n in names} <= _KNOWN and (
                        "boxes" in names
                    ):
                        columns = tuple(names)
                        continue
                    count = raw.count(b"\t") + 1
                    if count not in TSV_LAYOUTS:
                        raise DataError(
                            f"{path}:{number}: {count} columns; a bottom-up TSV has "
                            f"{sorted(TSV_LAYOUTS)} columns or a header line naming "
                            f"its columns ({sorted(_KNOWN)})"
                        )
                    columns = TSV_LAYOUTS[count]
                key_column = [_SYNONYMS.get(c, c) for c in columns].index("image_id")
                key = (
                    first if key_column == 0 else raw.split(b"\t")[key_column]
                ).decode("utf-8")
                if key in self._index:
                    raise DataError(
                        f"{path}:{number}: image id {key} appears twice in the "
                        "bottom-up files: remove the duplicate"
                    )
                self._index[key] = (f, start)
        if columns is None:
            raise DataError(f"{path}: empty bottom-up TSV")
        return columns

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def ids(self) -> list[str]:
        """Every image id, in file order."""
        return list(self._index)

    def get(self, image_id: str) -> Detections:
        """Decodes the detections of ``image_id``.

        Raises:
            DataError: Unknown id or malformed line.
        """
        if image_id not in self._index:
            raise DataError(f"image {image_id} is not in the bottom-up TSV files")
        f, offset = self._index[image_id]
        fh = self._handles.get(f)
        if fh is None:
            fh = self._handles[f] = open(self.paths[f], "rb")
        fh.seek(offset)
        line = fh.readline().decode("utf-8").rstrip("\r\n")
        _, det = parse_tsv_line(line, self._columns[f], f"{self.paths[f]}@{offset}")
        return det

    def close(self) -> None:
        """Closes the open files."""
        for fh in self._handles.values():
            fh.close()
        self._handles.clear()

    def __enter__(self) -> BottomUpTSV:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict:
        """The manifest's ``detector`` entry: kind, paths, SHA-256 of each file."""
        return {
            "kind": self.kind,
            "path": [str(p.resolve()) for p in self.paths],
            "sha256": [_sha256(p) for p in self.paths],
        }


def _sha256(path: Path) -> str:
    from data_prep.pipeline import sha256_file

    return sha256_file(path)


class BottomUpNPZ:
    """Random access to a folder of per-image ``<image_id>.npz`` files.

    Args:
        folder: The folder.
        allow_pickle: Read the pickled ``info`` dict (objects_id, objects_conf)
            that bottom-up-attention.pytorch writes, when the file has no
            top-level ``objects_id`` / ``cls_prob``. Only for files you trust.
    """

    kind = "bottom_up_npz"

    def __init__(self, folder: str | Path, allow_pickle: bool = True) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"bottom-up NPZ folder {self.folder} not found")
        self.allow_pickle = allow_pickle

    def path(self, image_id: str) -> Path:
        """``<folder>/<image_id>.npz``."""
        return self.folder / f"{image_id}.npz"

    def __contains__(self, image_id: str) -> bool:
        return self.path(image_id).is_file()

    def get(self, image_id: str) -> Detections:
        """Reads the detections of ``image_id``.

        Raises:
            DataError: Missing or unreadable file, missing keys, bad shapes.
        """
        path = self.path(image_id)
        if not path.is_file():
            raise DataError(f"{path} not found: image {image_id} has no NPZ features")
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = set(data.files)
                arrays = {k: data[k] for k in keys if k != "info"}
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: unreadable NPZ ({str(e)[:120]})") from None
        feature_key = "x" if "x" in arrays else "features"
        missing = [
            k for k in (feature_key, "bbox", "image_w", "image_h") if k not in arrays
        ]
        if missing:
            raise DataError(
                f"{path}: missing keys {missing} (a bottom-up NPZ has x or features, "
                "bbox, num_bbox, image_w, image_h)"
            )
        features = np.asarray(arrays[feature_key], np.float32)
        boxes = np.asarray(arrays["bbox"], np.float32)
        n = int(arrays["num_bbox"]) if "num_bbox" in arrays else len(boxes)
        if features.ndim != 2 or boxes.shape != (n, 4) or len(features) != n:
            raise DataError(
                f"{path}: bbox {boxes.shape} and features {features.shape} do not "
                f"match num_bbox {n}"
            )
        values = {"boxes": boxes, "features": features}
        for key in ("cls_prob", "objects_id", "objects_conf"):
            if key in arrays:
                values[key] = np.asarray(arrays[key])
        if "info" in keys and not ({"objects_id", "cls_prob"} & set(values)):
            if not self.allow_pickle:
                raise DataError(
                    f"{path}: classes are only in the pickled 'info' dict; allow "
                    "pickle for files you trust"
                )
            with np.load(path, allow_pickle=True) as data:
                info = data["info"].item()
            for key in ("objects_id", "objects_conf"):
                if key in info:
                    values[key] = np.asarray(info[key])
        if "cls_prob" in values and values["cls_prob"].shape[0] != n:
            raise DataError(
                f"{path}: cls_prob has {values['cls_prob'].shape[0]} rows, not {n}"
            )
        for key in ("objects_id", "objects_conf"):
            if key in values and values[key].shape != (n,):
                raise DataError(
                    f"{path}: {key} has shape {values[key].shape}, not ({n},)"
                )
        return _detections(
            values, n, int(arrays["image_w"]), int(arrays["image_h"]), str(path)
        )

    def describe(self, image_ids: Iterable[str] = ()) -> dict:
        """The manifest's ``detector`` entry.

        ``sha256`` is over the names and sizes of the files of ``image_ids``
        (a listing digest: hashing every file's content would read the whole
        folder once more).
        """
        h = hashlib.sha256()
        for image_id in sorted(image_ids):
            path = self.path(image_id)
            size = path.stat().st_size if path.is_file() else -1
            h.update(f"{path.name}\t{size}\n".encode())
        return {
            "kind": self.kind,
            "path": str(self.folder.resolve()),
            "sha256": h.hexdigest(),
            "sha256_of": "names and sizes of the .npz files used",
        }


def _b64(array: np.ndarray, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode(
        "ascii"
    )


def _check_writable(image_id: str, det: Detections) -> None:
    if "\t" in image_id or "\n" in image_id:
        raise DataError(f"image id {image_id!r} holds a tab or newline")
    if det.class_probs is not None and det.classes is not None and det.num_boxes:
        probs = np.asarray(det.class_probs)
        objects = probs[:, 1:] if probs.shape[1] > 1 else probs
        if not np.array_equal(np.argmax(objects, axis=1), np.asarray(det.classes)):
            raise DataError(
                f"image {image_id}: classes differ from the argmax of class_probs "
                "(background column 0); the bottom-up files store one label"
            )


def _tsv_lines(items: Iterable[tuple[str, Detections]]) -> Iterator[tuple[str, str]]:
    """(header or '', line) per item."""
    for image_id, det in items:
        _check_writable(image_id, det)
        n = det.num_boxes
        common = {
            "image_id": image_id,
            "image_w": str(int(det.image_width)),
            "image_h": str(int(det.image_height)),
            "num_boxes": str(n),
            "boxes": _b64(det.boxes, "<f4"),
            "features": _b64(det.features, "<f4"),
        }
        if det.class_probs is None:
            classes = np.asarray(det.classes, np.int64)
            row = {
                **common,
                "objects_id": _b64(classes, "<i8"),
                "objects_conf": _b64(det.scores, "<f4"),
                "attrs_id": _b64(np.zeros(n), "<i8"),
                "attrs_conf": _b64(np.zeros(n), "<f4"),
            }
            columns = tuple(_SYNONYMS.get(c, c) for c in TSV_LAYOUTS[10])
            yield "", "\t".join(row[c] for c in columns)
        else:
            probs = np.asarray(det.class_probs, np.float32)
            objects = probs[:, 1:] if probs.shape[1] > 1 else probs
            classes = np.argmax(objects, axis=1) if n else np.zeros(0, np.int64)
            row = {
                **common,
                "objects_id": _b64(classes, "<i8"),
                "objects_conf": _b64(det.scores, "<f4"),
                "attrs_id": _b64(np.zeros(n), "<i8"),
                "attrs_conf": _b64(np.zeros(n), "<f4"),
                "cls_prob": _b64(probs, "<f4"),
            }
            columns = (*TSV_LAYOUTS[10], "cls_prob")
            header = "\t".join(columns)
            yield header, "\t".join(row[_SYNONYMS.get(c, c)] for c in columns)


def write_bottom_up_tsv(
    path: str | Path, items: Iterable[tuple[str, Detections]]
) -> int:
    """Writes detections as a bottom-up TSV (atomically); returns the line count.

    Without class scores the 10 LXMERT columns are written (readable by LXMERT /
    VisualBERT loaders); with them, a header line and the LXMERT columns plus
    ``cls_prob`` (background column 0 as given). Scores go to ``objects_conf``.

    Args:
        path: Output file.
        items: ``(image_id, Detections)`` pairs; every item must have the same
            kind of class information.

    Raises:
        DataError: Ids with tabs, mixed class information, labels that disagree
            with the class scores.
    """
    path = Path(path)
    tmp = temporary_path(path)
    count, header = 0, None
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            for head, line in _tsv_lines(items):
                if header is None:
                    header = head
                    if head:
                        fh.write(head + "\n")
                elif head != header:
                    raise DataError(
                        f"{path}: items mix detections with and without class scores"
                    )
                fh.write(line + "\n")
                count += 1
        data = tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_bytes(path, data)
    return count


def write_bottom_up_npz(folder: str | Path, image_id: str, det: Detections) -> Path:
    """Writes ``<folder>/<image_id>.npz`` in the py-bottom-up-attention layout.

    Keys: ``x``, ``bbox``, ``num_bbox``, ``image_w``, ``image_h``,
    ``objects_conf`` and ``cls_prob`` and/or ``objects_id`` (no pickled dict).
    """
    import io

    _check_writable(image_id, det)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "x": np.asarray(det.features, np.float32),
        "bbox": np.asarray(det.boxes, np.float32),
        "num_bbox": np.asarray(det.num_boxes),
        "image_w": np.asarray(int(det.image_width)),
        "image_h": np.asarray(int(det.image_height)),
        "objects_conf": np.asarray(det.scores, np.float32),
    }
    if det.class_probs is not None:
        arrays["cls_prob"] = np.asarray(det.class_probs, np.float32)
    if det.classes is not None:
        arrays["objects_id"] = np.asarray(det.classes, np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path = folder / f"{image_id}.npz"
    atomic_write_bytes(path, buffer.getvalue())
    return path
