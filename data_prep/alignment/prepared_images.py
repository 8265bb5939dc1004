"""Access to a prepared folder's images for the captioner: records, texts, crops.

Records hold features, not pixels; each keeps its ``source_row`` in the Fashion-Gen
file named by the manifest and its square ``crop_box``, so the KPG crop is cut again
from the source image (same box, same background fill) at the captioner's size.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

import kaleido_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from data_prep.kpg.foreground import (
    BackgroundDifferenceCropper,
    CropBox,
    border_background,
    extract_crop,
)
from kaleido_tf.errors import DataError
from kaleido_tf.manifest import read_manifest

IMAGE_KEY = "input_image"


@dataclasses.dataclass(frozen=True)
class ImageEntry:
    """The metadata of one image record that the captioner needs.

    Attributes:
        image_id: ``'<product id>_<pose index>'``.
        product_id: Fashion-Gen product id (key of ``products.jsonl``).
        source_row: Row of the image in the source ``.h5`` file.
        crop_box: int64 [4]: x1, y1, x2, y2 of the square crop in source pixels.
        word_index: int64 [T]: source word of each token, -1 for special/pad.
        shard: File name of the record's shard.
    """

    image_id: str
    product_id: int
    source_row: int
    crop_box: np.ndarray
    word_index: np.ndarray
    shard: str


def read_example(raw: bytes):
    """Parses a serialised record into a ``tf.train.Example`` proto."""
    import tensorflow as tf

    return tf.train.Example.FromString(raw)


def entry_of(example: Any, shard: str) -> ImageEntry:
    """The ImageEntry of a parsed record."""
    f = example.features.feature
    return ImageEntry(
        image_id=f["image_id"].bytes_list.value[0].decode("utf-8"),
        product_id=int(f["product_id"].int64_list.value[0]),
        source_row=int(f["source_row"].int64_list.value[0]),
        crop_box=np.asarray(f["crop_box"].int64_list.value, np.int64),
        word_index=np.asarray(f["word_index"].int64_list.value, np.int64),
        shard=shard,
    )


class PreparedImages:
    """A ``kaleido-tf prepare`` folder seen as (crop, text) pairs.

    Args:
        data_dir: The prepared folder (``manifest.json``, shards, products.jsonl).
        source_h5: The Fashion-Gen ``.h5`` the folder was built from; default: the
            path recorded in the manifest.

    Raises:
        DataError: Unfinished folder, missing products file or source file.

    Example:
        >>> images = PreparedImages("data/kaleido/train")
        >>> entries = images.entries()
        >>> crops = images.crops(entries[:8], 224)      # uint8 [8, 224, 224, 3]
    """

    def __init__(self, data_dir: str | Path, source_h5: str | Path | None = None):
        self.data_dir = Path(data_dir)
        self.manifest = read_manifest(self.data_dir)
        self.lower_case = bool(self.manifest["text"]["lower_case"])
        self.crop_size = int(self.manifest["crop"]["output_size"])
        products = self.data_dir / self.manifest["products_file"]
        try:
            lines = products.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise DataError(f"cannot read {products}: {e.strerror}") from None
        self.texts: dict[int, str] = {}
        for line in lines:
            if line.strip():
                row = json.loads(line)
                self.texts[int(row["product_id"])] = row["text"]
        path = Path(source_h5 or self.manifest["source"]["path"])
        if not path.is_file():
            raise DataError(
                f"source images {path} (from {self.data_dir}/manifest.json) not "
                "found: pass the Fashion-Gen .h5 it was prepared from with "
                "--source-h5"
            )
        self.source_path = path
        self._h5 = None

    @property
    def shard_files(self) -> list[str]:
        """Shard file names, in manifest order."""
        return [s["file"] for s in self.manifest["shards"]]

    def shard_records(self, shard: str) -> list[bytes]:
        """The serialised records of one shard, in file order."""
        import tensorflow as tf

        path = self.data_dir / shard
        if not path.is_file():
            raise DataError(
                f"{self.data_dir}: shard {shard} listed in manifest.json is missing: "
                "rerun `kaleido-tf prepare`"
            )
        return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]

    def entries(self) -> list[ImageEntry]:
        """Every record's ImageEntry, in shard order."""
        out = []
        for shard in self.shard_files:
            out.extend(
                entry_of(read_example(r), shard) for r in self.shard_records(shard)
            )
        return out

    def text(self, product_id: int) -> str:
        """The product's text (as tokenised by prepare)."""
        try:
            return self.texts[product_id]
        except KeyError:
            raise DataError(
                f"{self.data_dir}: product {product_id} of a record is not in "
                f"{self.manifest['products_file']}: rerun `kaleido-tf prepare`"
            ) from None

    def _images(self):
        if self._h5 is None:
            import h5py

            try:
                self._h5 = h5py.File(self.source_path, "r")
            except OSError as e:
                raise DataError(f"{self.source_path}: cannot be read ({e})") from None
            if IMAGE_KEY not in self._h5:
                raise DataError(f"{self.source_path}: missing key {IMAGE_KEY!r}")
        return self._h5[IMAGE_KEY]

    def source_image(self, row: int) -> np.ndarray:
        """uint8 [H, W, 3]: the source image of ``row``."""
        return np.asarray(self._images()[row])

    def crop(self, entry: ImageEntry, size: int) -> np.ndarray:
        """uint8 [size, size, 3]: the KPG crop of one record, resized to ``size``.

        The fill colour of the padding is the border median, as in ``prepare``.
        """
        image = self.source_image(entry.source_row)
        fill = tuple(int(round(c * 255)) for c in border_background(image))
        x1, y1, x2, y2 = (int(v) for v in entry.crop_box)
        return extract_crop(image, CropBox(x1, y1, x2, y2, fill), size)

    def foreground(self, entry: ImageEntry, size: int) -> np.ndarray:
        """bool [size, size]: the product mask of one record, in crop pixels.

        The training-free segmentation of ``prepare`` (kaleido_fashionbert.md
        §4.1) with the manifest's crop settings, on the source image, mapped
        through the record's ``crop_box`` (padding is background).
        """
        import cv2

        crop = self.manifest["crop"]
        segmenter = BackgroundDifferenceCropper(
            crop["threshold"],
            crop["morph_kernel"],
            crop["min_component_fraction"],
            crop["margin"],
        )
        mask = segmenter.foreground_mask(self.source_image(entry.source_row))
        x1, y1, x2, y2 = (int(v) for v in entry.crop_box)
        h, w = mask.shape
        canvas = np.zeros((y2 - y1, x2 - x1), np.float32)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx2 > sx1 and sy2 > sy1:
            canvas[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = mask[sy1:sy2, sx1:sx2]
        if canvas.shape != (size, size):
            canvas = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
        return canvas >= 0.5

    def crops(self, entries: list[ImageEntry], size: int) -> np.ndarray:
        """uint8 [n, size, size, 3]: ``crop`` of each entry."""
        if not entries:
            return np.zeros((0, size, size, 3), np.uint8)
        return np.stack([self.crop(e, size) for e in entries])

    def close(self) -> None:
        """Closes the source file."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None
