"""Detector output -> the region fields of one record (``schema.region_fields``).

Whatever produced the regions (a TF2 detection SavedModel with RoIAlign features,
or bottom-up-attention feature files), they meet here as ``Detections`` and become
record values the same way: the top-R regions by score (stable order), boxes clipped
to the image, the normalised 5-D location, the hard class label (argmax over the
object classes, background excluded) and, optionally, the class distribution;
zero / -1 padding up to R. Same detections in, same record bytes out.

Reference: imagebert_interbert_commercemm.md §2.2 (top-100 RoIs ordered by
confidence, 5-D location, hard label), §2.4 Task 2 [D] (argmax over the 1600
object classes, excluding background), §2.10 item 1.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kaleido_tf import schema
from kaleido_tf.errors import DataError


@dataclasses.dataclass(frozen=True)
class Detections:
    """The regions of one image, as a detector produced them.

    Attributes:
        boxes: float [N, 4] ``x1, y1, x2, y2`` in source pixels.
        scores: float [N] detector confidence.
        features: float [N, D] pooled RoI features.
        image_width: W of the source image, pixels.
        image_height: H of the source image, pixels.
        class_probs: float [N, C] or [N, C + 1] class scores; with C + 1 columns
            column 0 is background (bottom-up-attention ``cls_prob``, OD API
            ``detection_multiclass_scores``). None if the source has none.
        classes: int [N] 0-based object class (background excluded). When given
            it is the label; otherwise the label is the argmax of
            ``class_probs`` over the object columns.
    """

    boxes: np.ndarray
    scores: np.ndarray
    features: np.ndarray
    image_width: int
    image_height: int
    class_probs: np.ndarray | None = None
    classes: np.ndarray | None = None

    @property
    def num_boxes(self) -> int:
        """N."""
        return int(np.shape(self.boxes)[0])

    def select(self, index: np.ndarray) -> Detections:
        """The detections at ``index`` (in that order)."""
        return dataclasses.replace(
            self,
            boxes=np.asarray(self.boxes)[index],
            scores=np.asarray(self.scores)[index],
            features=np.asarray(self.features)[index],
            class_probs=(
                None
                if self.class_probs is None
                else np.asarray(self.class_probs)[index]
            ),
            classes=None if self.classes is None else np.asarray(self.classes)[index],
        )


def top_regions(scores: np.ndarray, max_regions: int) -> np.ndarray:
    """Indices of the ``max_regions`` best scores, best first; ties keep order."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    return order[:max_regions]


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """float32 [N, 4] ``x1, y1, x2, y2`` clipped to ``[0, W] x [0, H]``."""
    boxes = np.asarray(boxes, np.float32)
    limits = np.asarray([width, height, width, height], np.float32)
    return np.clip(boxes, 0.0, limits).astype(np.float32)


def object_columns(class_probs: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    """The C object-class columns of [N, C] or [N, C + 1] (background first) scores.

    Raises:
        DataError: Another column count.
    """
    probs = np.asarray(class_probs, np.float32)
    if probs.ndim != 2 or probs.shape[1] not in (num_classes, num_classes + 1):
        raise DataError(
            f"{where}: class scores have shape {probs.shape}, expected [N, "
            f"{num_classes}] or [N, {num_classes + 1}] (background column 0): set "
            "regions.num_classes to the detector's class count"
        )
    return probs[:, 1:] if probs.shape[1] == num_classes + 1 else probs


def _check(det: Detections, feature_dim: int, num_classes: int, where: str) -> None:
    n = det.num_boxes
    shapes = {
        "boxes": (np.shape(det.boxes), (n, 4)),
        "scores": (np.shape(det.scores), (n,)),
        "features": (np.shape(det.features), (n, feature_dim)),
    }
    if det.classes is not None:
        shapes["classes"] = (np.shape(det.classes), (n,))
    for key, (got, want) in shapes.items():
        if tuple(got) != want:
            raise DataError(
                f"{where}: {key} have shape {tuple(got)}, expected {want} (D = "
                f"{feature_dim} from regions.feature_dim): use a detector / "
                "feature file with this feature size, or change the config"
            )
    if det.image_width < 1 or det.image_height < 1:
        raise DataError(
            f"{where}: image size {det.image_width}x{det.image_height} is invalid"
        )
    for key in ("boxes", "scores", "features", "class_probs"):
        value = getattr(det, key)
        if value is not None and not np.all(np.isfinite(value)):
            raise DataError(f"{where}: {key} hold NaN or Inf values")
    boxes = np.asarray(det.boxes, np.float32)
    if n and np.any((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])):
        raise DataError(
            f"{where}: a box has x2 < x1 or y2 < y1; boxes must be x1, y1, x2, y2 "
            "in pixels"
        )
    if det.class_probs is None and det.classes is None:
        raise DataError(
            f"{where}: the regions have neither classes nor class scores; MOC needs "
            "the detector's class label"
        )
    if det.classes is not None and n:
        classes = np.asarray(det.classes)
        if classes.min() < 0 or classes.max() >= num_classes:
            raise DataError(
                f"{where}: class ids span {classes.min()}..{classes.max()}, outside "
                f"0..{num_classes - 1}: set regions.num_classes to the detector's "
                "class count"
            )


def region_values(
    det: Detections,
    layout: schema.RegionLayout,
    feature_dim: int,
    num_classes: int,
    class_distribution: bool,
    where: str = "regions",
) -> dict[str, np.ndarray]:
    """The values of ``schema.region_fields`` for one image.

    Args:
        det: The image's detections (any order, any count).
        layout: The region layout (R = ``layout.max_regions``).
        feature_dim: D; features of another size are refused.
        num_classes: C, object classes without background.
        class_distribution: Also return ``region_class_probs``: the object-class
            scores renormalised to sum to 1 per region (uniform when they sum to
            0); needs ``det.class_probs``.
        where: Names the image in error messages.

    Returns:
        ``image_size``, ``num_regions``, ``region_boxes``, ``region_locations``,
        ``region_features``, ``region_scores``, ``region_classes`` (and
        ``region_class_probs``), padded to R with zeros (classes: -1).

    Raises:
        DataError: Wrong shapes, D or C, non-finite values, inverted boxes, no
            class information.
    """
    _check(det, feature_dim, num_classes, where)
    r = layout.max_regions
    w, h = int(det.image_width), int(det.image_height)
    keep = det.select(top_regions(det.scores, r))
    n = keep.num_boxes

    boxes = clip_boxes(keep.boxes, w, h)
    x1, y1, x2, y2 = boxes.T.astype(np.float64)
    locations = np.stack(
        [x1 / w, y1 / h, x2 / w, y2 / h, (x2 - x1) * (y2 - y1) / (w * h)], axis=1
    ).astype(np.float32)

    if keep.class_probs is not None:
        objects = object_columns(keep.class_probs, num_classes, where)
    else:
        objects = None
    if keep.classes is not None:
        classes = np.asarray(keep.classes, np.int64)
    else:
        classes = np.argmax(objects, axis=1).astype(np.int64)

    out = {
        "image_size": np.asarray([w, h], np.int64),
        "num_regions": np.int64(n),
        "region_boxes": np.zeros((r, 4), np.float32),
        "region_locations": np.zeros((r, schema.BOX_DIM), np.float32),
        "region_features": np.zeros((r, feature_dim), np.float32),
        "region_scores": np.zeros((r,), np.float32),
        "region_classes": np.full((r,), -1, np.int64),
    }
    out["region_boxes"][:n] = boxes
    out["region_locations"][:n] = locations
    out["region_features"][:n] = np.asarray(keep.features, np.float32)
    out["region_scores"][:n] = np.asarray(keep.scores, np.float32)
    out["region_classes"][:n] = classes
    if class_distribution:
        if objects is None:
            raise DataError(
                f"{where}: regions.class_distribution is true but the source has no "
                "class scores (cls_prob / detection_multiclass_scores): set it to "
                "false or use a source with them"
            )
        total = objects.sum(axis=1, keepdims=True, dtype=np.float64)
        dist = np.where(
            total > 0, objects / np.maximum(total, 1e-30), 1.0 / num_classes
        )
        out["region_class_probs"] = np.zeros((r, num_classes), np.float32)
        out["region_class_probs"][:n] = dist.astype(np.float32)
    return out
