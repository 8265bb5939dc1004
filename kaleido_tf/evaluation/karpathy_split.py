"""Karpathy split files of Flickr30k and MSCOCO: images, their captions, COCO-1K folds.

``dataset_flickr30k.json`` / ``dataset_coco.json`` (Karpathy & Fei-Fei, 2015) hold
``{"images": [{"filename", "imgid", "split", "sentences": [{"raw", "tokens",
"sentid"}], "cocoid"?}]}``; ``split`` is ``train``, ``val``, ``test`` or (COCO)
``restval``. The file's image order is kept, so the COCO 1K folds are the standard
consecutive blocks of 1,000 test images.

Reference: imagebert_interbert_commercemm.md §2.8 (Karpathy splits, 5-fold COCO-1K,
§2.11 row 19), §5.2 (protocol P-FULL).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from kaleido_tf.errors import DataError

SPLITS = ("train", "val", "test", "restval")
COCO_FOLD_SIZE = 1000  # images per fold of the MSCOCO "1K test" protocol


@dataclasses.dataclass(frozen=True)
class KarpathyImage:
    """One image of a split and its captions.

    Attributes:
        key: The filename stem (``COCO_val2014_000000391895``, ``1000092795``),
            the image id a prepared folder is matched on.
        filename: The file name as written in the split file.
        alternate_keys: Other ids the image goes by: ``cocoid`` and ``imgid``,
            as strings (a prepared folder may use either).
        captions: The raw captions, in file order (5 for both datasets).
    """

    key: str
    filename: str
    alternate_keys: tuple[str, ...]
    captions: tuple[str, ...]


def read_karpathy_split(path: str | Path, split: str = "test") -> list[KarpathyImage]:
    """The images of one split of a Karpathy split file, in file order.

    Args:
        path: ``dataset_coco.json`` or ``dataset_flickr30k.json``.
        split: One of ``SPLITS``.

    Returns:
        One KarpathyImage per image of the split.

    Raises:
        DataError: An unreadable file, a missing field, an image without captions,
            a repeated image key, or a split with no image.
        ValueError: An unknown split.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: valid splits are {SPLITS}")
    path = Path(path)
    try:
        data = json.loads(path.read_text("utf-8"))
        images = data["images"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read the Karpathy split file {path} ({e})") from None
    except (KeyError, TypeError):
        raise DataError(
            f"{path} has no 'images' list: give a Karpathy split file "
            "(dataset_coco.json / dataset_flickr30k.json)"
        ) from None
    out: list[KarpathyImage] = []
    seen: set[str] = set()
    for i, image in enumerate(images):
        try:
            if image["split"] != split:
                continue
            filename = str(image["filename"])
            captions = tuple(str(s["raw"]) for s in image["sentences"])
        except (KeyError, TypeError) as e:
            raise DataError(
                f"{path}: image {i} lacks {e} (each image needs filename, split and "
                "sentences with raw captions)"
            ) from None
        if not captions:
            raise DataError(f"{path}: image {filename} has no captions")
        key = Path(filename).stem
        if key in seen:
            raise DataError(f"{path}: image {key} appears twice in split {split!r}")
        seen.add(key)
        alternates = tuple(
            str(image[k]) for k in ("cocoid", "imgid") if image.get(k) is not None
        )
        out.append(KarpathyImage(key, filename, alternates, captions))
    if not out:
        raise DataError(f"{path}: split {split!r} has no images")
    return out


def coco_folds(
    num_images: int, folds: int = 5, fold_size: int = COCO_FOLD_SIZE
) -> list[range]:
    """Image index ranges of the COCO-1K protocol: consecutive blocks in file order.

    Args:
        num_images: Images of the test split (5,000 for MSCOCO).
        folds: How many folds (5).
        fold_size: Images per fold (1,000).

    Returns:
        ``folds`` ranges, fold k = images ``[k * fold_size, (k + 1) * fold_size)``.

    Raises:
        DataError: Fewer than ``folds * fold_size`` images.
    """
    if folds < 1 or fold_size < 1:
        raise ValueError(f"folds and fold_size must be >= 1, got {folds}, {fold_size}")
    if num_images < folds * fold_size:
        raise DataError(
            f"{folds} folds of {fold_size} images need {folds * fold_size} test "
            f"images, the split has {num_images}: use --folds 1 or the full split"
        )
    return [range(k * fold_size, (k + 1) * fold_size) for k in range(folds)]
