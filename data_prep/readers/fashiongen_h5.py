"""Streaming reader of the Fashion-Gen HDF5 files (prior_art.md §3).

``fashiongen_256_256_{train,validation}.h5`` hold one row per image: ``input_image``
(N, 256, 256, 3) uint8 and (N, 1) byte-string columns in latin-1, with the rows of a
product contiguous. The train file is ~51 GB of pixels, so images are only ever read
in row ranges; the small metadata columns are read once, in chunks.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from kaleido_tf.errors import DataError

IMAGE_KEY = "input_image"
PRODUCT_KEY = "input_productID"
CATEGORY_KEY = "input_category"
SUBCATEGORY_KEY = "input_subcategory"
TEXT_KEYS = {
    "description": "input_description",
    "concat_description": "input_concat_description",
    "name": "input_name",
}
METADATA_CHUNK = 8192

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"\s+")


def decode_text(raw: bytes) -> tuple[str, bool]:
    """Decodes one Fashion-Gen byte string.

    The files store latin-1 (ISO-8859-1). Two kinds of damage are repaired: byte
    sequences that are valid multi-byte UTF-8 (text that was stored as UTF-8) are
    decoded as UTF-8, and control characters are replaced by spaces. Whitespace runs
    collapse to one space.

    Args:
        raw: The stored bytes (fixed-length fields are NUL-padded).

    Returns:
        The text and whether it needed a repair.
    """
    raw = raw.rstrip(b"\x00")
    repaired = False
    text = raw.decode("latin-1")
    if any(b >= 0x80 for b in raw):
        try:
            utf8 = raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            text, repaired = utf8, True
    cleaned = _CONTROL.sub(" ", text)
    repaired = repaired or cleaned != text
    cleaned = unicodedata.normalize("NFC", _SPACES.sub(" ", cleaned)).strip()
    return cleaned, repaired


@dataclasses.dataclass(frozen=True)
class Product:
    """One product: its rows and text.

    Attributes:
        product_id: ``input_productID``.
        rows: Source rows of its images, in file order (pose 1, 2, ...).
        text: The decoded text of the configured field (first row of the product).
        category: Decoded ``input_category``.
        subcategory: Decoded ``input_subcategory``.
        text_repaired: Whether decode_text repaired the text.
    """

    product_id: int
    rows: tuple[int, ...]
    text: str
    category: str
    subcategory: str
    text_repaired: bool


class FashionGenReader:
    """Reads a Fashion-Gen-layout HDF5 file without loading its images.

    The layout is checked when the file is opened, so a bad file fails before any
    output is written: a missing key, an image dataset that is not (N, H, W, 3)
    uint8, or a column whose length is not N raise DataError naming file and key.

    Args:
        path: The ``.h5`` file.
        text_field: ``description``, ``concat_description`` or ``name``.

    Example:
        >>> with FashionGenReader("fashiongen_256_256_train.h5") as reader:
        ...     products = reader.products()
        ...     for row, image in reader.iter_images(0, 100):
        ...         ...
    """

    def __init__(self, path: str | Path, text_field: str = "description") -> None:
        self.path = Path(path)
        if text_field not in TEXT_KEYS:
            raise DataError(f"unknown text field {text_field!r}: use {list(TEXT_KEYS)}")
        self.text_field = text_field
        self.text_key = TEXT_KEYS[text_field]
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such file")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as e:
            raise DataError(
                f"{self.path}: cannot be read as HDF5 ({e}); is it a Fashion-Gen "
                ".h5 file and complete?"
            ) from None
        try:
            self._check_layout()
        except DataError:
            self._file.close()
            raise

    def _check_layout(self) -> None:
        f = self._file
        for key in (IMAGE_KEY, PRODUCT_KEY, CATEGORY_KEY, SUBCATEGORY_KEY):
            if key not in f:
                raise DataError(
                    f"{self.path}: missing key {key!r} (found {sorted(f.keys())}); "
                    "the file does not have the Fashion-Gen layout"
                )
        if self.text_key not in f:
            raise DataError(
                f"{self.path}: missing key {self.text_key!r} needed for "
                f"text.field={self.text_field!r}"
            )
        images = f[IMAGE_KEY]
        if not isinstance(images, h5py.Dataset):
            raise DataError(f"{self.path}: {IMAGE_KEY!r} is a group, not a dataset")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise DataError(
                f"{self.path}: key {IMAGE_KEY!r} has shape {images.shape}, expected "
                "(N, H, W, 3) RGB images"
            )
        if images.dtype != np.uint8:
            raise DataError(
                f"{self.path}: key {IMAGE_KEY!r} has dtype {images.dtype}, expected "
                "uint8"
            )
        self.num_rows = int(images.shape[0])
        self.image_shape = tuple(int(d) for d in images.shape[1:])
        for key in (PRODUCT_KEY, CATEGORY_KEY, SUBCATEGORY_KEY, self.text_key):
            ds = f[key]
            if not isinstance(ds, h5py.Dataset) or ds.shape[:1] != (self.num_rows,):
                raise DataError(
                    f"{self.path}: key {key!r} has shape "
                    f"{getattr(ds, 'shape', None)}, expected ({self.num_rows}, 1)"
                )
            if ds.ndim > 2 or (ds.ndim == 2 and ds.shape[1] != 1):
                raise DataError(
                    f"{self.path}: key {key!r} has shape {ds.shape}, expected "
                    f"({self.num_rows}, 1)"
                )
        for key in (CATEGORY_KEY, SUBCATEGORY_KEY, self.text_key):
            if f[key].dtype.kind not in "SO":
                raise DataError(
                    f"{self.path}: key {key!r} has dtype {f[key].dtype}, expected "
                    "byte strings"
                )
        if f[PRODUCT_KEY].dtype.kind not in "iu":
            raise DataError(
                f"{self.path}: key {PRODUCT_KEY!r} has dtype {f[PRODUCT_KEY].dtype}, "
                "expected integers"
            )

    def __enter__(self) -> FashionGenReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the file."""
        self._file.close()

    def _column(self, key: str, start: int, stop: int) -> np.ndarray:
        try:
            return np.asarray(self._file[key][start:stop]).reshape(stop - start)
        except OSError as e:
            raise DataError(
                f"{self.path}: cannot read rows {start}-{stop - 1} of key {key!r}: {e}"
            ) from None

    def product_ids(self) -> np.ndarray:
        """``input_productID`` of every row, int64 [N] (small: read at once)."""
        return self._column(PRODUCT_KEY, 0, self.num_rows).astype(np.int64)

    def products(self) -> list[Product]:
        """Groups rows into products, in order of first appearance.

        Text, category and sub-category come from a product's first row; only those
        rows' strings are kept, so memory stays proportional to the product count.
        """
        ids = self.product_ids()
        first_row: dict[int, int] = {}
        rows: dict[int, list[int]] = {}
        for row, pid in enumerate(ids.tolist()):
            if pid not in rows:
                rows[pid] = []
                first_row[pid] = row
            rows[pid].append(row)
        wanted = {row: pid for pid, row in first_row.items()}
        strings: dict[int, tuple[str, bool, str, str]] = {}
        for start in range(0, self.num_rows, METADATA_CHUNK):
            stop = min(start + METADATA_CHUNK, self.num_rows)
            chunk_rows = [r for r in range(start, stop) if r in wanted]
            if not chunk_rows:
                continue
            texts = self._column(self.text_key, start, stop)
            cats = self._column(CATEGORY_KEY, start, stop)
            subs = self._column(SUBCATEGORY_KEY, start, stop)
            for r in chunk_rows:
                text, repaired = decode_text(_as_bytes(texts[r - start]))
                cat, _ = decode_text(_as_bytes(cats[r - start]))
                sub, _ = decode_text(_as_bytes(subs[r - start]))
                strings[wanted[r]] = (text, repaired, cat, sub)
        out = []
        for pid in rows:
            text, repaired, cat, sub = strings[pid]
            out.append(Product(pid, tuple(rows[pid]), text, cat, sub, repaired))
        return out

    def iter_images(
        self, start: int, stop: int, chunk: int = 64
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yields ``(row, image uint8 [H, W, 3])`` for rows in [start, stop).

        Rows are read ``chunk`` at a time, so memory is bounded by the chunk.
        """
        if not 0 <= start <= stop <= self.num_rows:
            raise ValueError(
                f"row range [{start}, {stop}) outside [0, {self.num_rows})"
            )
        ds = self._file[IMAGE_KEY]
        for a in range(start, stop, chunk):
            b = min(a + chunk, stop)
            try:
                block = ds[a:b]
            except OSError as e:
                raise DataError(
                    f"{self.path}: cannot read rows {a}-{b - 1} of key "
                    f"{IMAGE_KEY!r}: {e}"
                ) from None
            for i in range(b - a):
                yield a + i, block[i]


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, np.bytes_):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("latin-1", errors="replace")
    return str(value).encode("latin-1", errors="replace")
