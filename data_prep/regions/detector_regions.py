"""Regions from any TF2 detection SavedModel, with RoIAlign features of our backbone.

The detector is any SavedModel with the TF2 Object Detection API signature
(``serving_default``: input ``input_tensor`` uint8 [1, H, W, 3]; outputs
``detection_boxes`` [1, N, 4] normalised ``ymin, xmin, ymax, xmax``,
``detection_scores`` [1, N], ``detection_classes`` [1, N] 1-based label ids as
float, ``num_detections`` [1] and optionally ``detection_multiclass_scores``
[1, N, C + 1] with background column 0). It gives boxes, scores and classes; the
pooled feature of each box comes from the project's frozen backbone
(``truncated_backbone``; D = its channels at ``output_layer``) by RoIAlign.

RoIAlign here (``roi_align``): the whole image is resized to S x S, the backbone
gives an h x w map; each box is cut into ``roi_size x roi_size`` bins and the map
is sampled bilinearly at each bin's centre (one sample per bin, the pixel-centre
"aligned" convention of Detectron2, map borders clamped), then the samples are
averaged into one D-vector. ``tf.image.crop_and_resize`` does the sampling on the
edge-padded map, batched over the boxes of one image. The bottom-up detector
instead runs ResNet's res5 stage on 14 x 14 RoIAlign crops before pooling; with a
stride-32 map (``conv5_block3_out``) our features come from the same stage but
are pooled after it (documented deviation, imagebert_interbert_commercemm.md
§2.11 item 1).

Reference: imagebert_interbert_commercemm.md §2.2, §2.10 item 1; He et al. 2017
"Mask R-CNN" (RoIAlign).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import kaleido_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from data_prep.regions.region_records import Detections, clip_boxes, top_regions
from kaleido_tf.errors import CheckpointError, DataError

CLASS_NAMES_FILE = "class_names.txt"


def roi_align(feature_map, boxes, roi_size: int):
    """Average of ``roi_size x roi_size`` bilinear samples per box (bin centres).

    Args:
        feature_map: float32 [1, h, w, D] (h, w >= 1).
        boxes: float32 [n, 4] normalised ``y1, x1, y2, x2`` in [0, 1] of the image
            the map was computed from.
        roi_size: Bins per side.

    Returns:
        float32 [n, D].
    """
    import tensorflow as tf

    fmap = tf.convert_to_tensor(feature_map, tf.float32)
    h = tf.cast(tf.shape(fmap)[1], tf.float32)
    w = tf.cast(tf.shape(fmap)[2], tf.float32)
    padded = tf.pad(fmap, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    y1, x1, y2, x2 = tf.unstack(boxes, axis=1)
    # Map coordinates (cell centres at integers): u = y * h - 0.5; bin centres.
    by = (y2 - y1) * h / roi_size
    bx = (x2 - x1) * w / roi_size
    top = y1 * h - 0.5 + 0.5 * by
    bottom = y2 * h - 0.5 - 0.5 * by
    left = x1 * w - 0.5 + 0.5 * bx
    right = x2 * w - 0.5 - 0.5 * bx
    # Samples lie in [-0.5, h - 0.5]; the 1-cell edge pad makes those beyond the
    # border read the border cell (Detectron2 clamps the same way). Shift by the
    # pad; crop_and_resize maps a box coordinate b to b * (padded size - 1).
    norm = tf.stack(
        [
            (top + 1.0) / (h + 1.0),
            (left + 1.0) / (w + 1.0),
            (bottom + 1.0) / (h + 1.0),
            (right + 1.0) / (w + 1.0),
        ],
        axis=1,
    )
    crops = tf.image.crop_and_resize(
        padded,
        norm,
        tf.zeros([tf.shape(boxes)[0]], tf.int32),
        [roi_size, roi_size],
        method="bilinear",
    )
    return tf.reduce_mean(crops, axis=[1, 2])


class DetectorRegionSource:
    """Runs a detection SavedModel and pools backbone features for its boxes.

    Args:
        savedmodel_dir: The exported detector (folder with ``saved_model.pb``).
        max_regions: R; features are computed for the R best boxes only.
        backbone: Backbone name (``patch_feature_extractor.BACKBONE_NAMES``).
        image_size: S, the side the image is resized to for the backbone.
        output_layer: The backbone layer whose map is pooled.
        roi_size: RoIAlign bins per side.
        weights: Keras-applications "notop" ``.h5`` of the backbone, or None for
            seeded random weights (demo and tests only).
        seed: Seed of random weights.
        class_names_path: One class name per line (object classes, no
            background); default ``<savedmodel_dir>/class_names.txt`` if present.

    Raises:
        DataError: No SavedModel, or one without the OD API signature.
        CheckpointError: Unusable backbone weights or layer.
    """

    kind = "savedmodel"

    def __init__(
        self,
        savedmodel_dir: str | Path,
        max_regions: int,
        backbone: str,
        image_size: int,
        output_layer: str,
        roi_size: int = 14,
        weights: str | Path | None = None,
        seed: int = 0,
        class_names_path: str | Path | None = None,
    ) -> None:
        import tensorflow as tf

        from data_prep.backbones.patch_feature_extractor import truncated_backbone

        self.path = Path(savedmodel_dir)
        if not (self.path / "saved_model.pb").is_file():
            raise DataError(
                f"{self.path} is not a SavedModel folder (no saved_model.pb): give "
                "an exported TF2 detection model, or export the reference detector "
                "with --export-reference-detector"
            )
        loaded = tf.saved_model.load(str(self.path))
        if "serving_default" not in loaded.signatures:
            raise DataError(
                f"{self.path} has no serving_default signature (has "
                f"{sorted(loaded.signatures)}): export it with the Object Detection "
                "API exporter"
            )
        self._loaded = loaded  # keeps the signature's variables alive
        self._detect = loaded.signatures["serving_default"]
        inputs = self._detect.structured_input_signature[1]
        if "input_tensor" not in inputs:
            raise DataError(
                f"{self.path}: serving_default takes {sorted(inputs)}, not "
                "input_tensor (the TF2 Object Detection API signature)"
            )
        self._input_dtype = inputs["input_tensor"].dtype
        outputs = set(self._detect.structured_outputs)
        needed = {"detection_boxes", "detection_scores", "detection_classes"}
        if not needed <= outputs:
            raise DataError(
                f"{self.path}: serving_default lacks outputs "
                f"{sorted(needed - outputs)} of the Object Detection API signature"
            )
        self.has_multiclass = "detection_multiclass_scores" in outputs
        names = Path(class_names_path) if class_names_path else None
        if names is None and (self.path / CLASS_NAMES_FILE).is_file():
            names = self.path / CLASS_NAMES_FILE
        self.class_names = (
            [n for n in names.read_text(encoding="utf-8").splitlines() if n.strip()]
            if names is not None
            else None
        )
        self.max_regions = max_regions
        self.roi_size = roi_size
        self.image_size = image_size
        self.backbone_name = backbone
        self.output_layer = output_layer
        self.weights = str(weights) if weights is not None else None
        self.seed = seed if weights is None else None
        self.model, self._preprocess = truncated_backbone(
            backbone, image_size, output_layer, weights, seed
        )
        shape = self.model.output_shape
        if len(shape) != 4:
            raise CheckpointError(
                f"backbone layer {output_layer} gives shape {shape}, not a feature "
                "map [n, h, w, D]"
            )
        self.feature_dim = int(shape[-1])
        self._features = tf.function(
            self._pool,
            input_signature=[
                tf.TensorSpec([None, None, 3], tf.uint8),
                tf.TensorSpec([None, 4], tf.float32),
            ],
        )

    def _pool(self, image, boxes):
        import tensorflow as tf

        s = self.image_size
        x = tf.image.resize(tf.cast(image, tf.float32)[None], [s, s], method="bilinear")
        fmap = self.model(self._preprocess(x), training=False)
        return roi_align(fmap, boxes, self.roi_size)

    def feature_map(self, image: np.ndarray) -> np.ndarray:
        """float32 [1, h, w, D] backbone map of one uint8 [H, W, 3] image."""
        import tensorflow as tf

        s = self.image_size
        x = tf.image.resize(tf.cast(image, tf.float32)[None], [s, s], method="bilinear")
        return self.model(self._preprocess(x), training=False).numpy()

    def detect(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """The detector's raw outputs for one uint8 [H, W, 3] image (batch removed,
        cut to ``num_detections``)."""
        import tensorflow as tf

        x = tf.cast(tf.constant(image[None]), self._input_dtype)
        out = {k: v.numpy()[0] for k, v in self._detect(input_tensor=x).items()}
        n = len(out["detection_scores"])
        if "num_detections" in out:
            n = min(n, int(np.asarray(out["num_detections"]).reshape(-1)[0]))
        return {k: v[:n] for k, v in out.items() if k != "num_detections"}

    def __call__(self, image: np.ndarray) -> Detections:
        """The top-R detections of one uint8 [H, W, 3] image, with features.

        Boxes are converted to source pixels and clipped; classes become 0-based.
        """
        if image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"image has shape {image.shape}, expected [H, W, 3]")
        h, w = image.shape[:2]
        out = self.detect(image)
        keep = top_regions(out["detection_scores"], self.max_regions)
        norm = np.clip(np.asarray(out["detection_boxes"], np.float32)[keep], 0.0, 1.0)
        ymin, xmin, ymax, xmax = norm.T
        boxes = clip_boxes(np.stack([xmin * w, ymin * h, xmax * w, ymax * h], 1), w, h)
        classes = np.asarray(out["detection_classes"])[keep]
        if not np.all(classes == np.round(classes)) or (
            len(classes) and classes.min() < 1
        ):
            raise DataError(
                f"{self.path}: detection_classes must be 1-based label ids, got "
                f"{classes[:5]}"
            )
        if len(keep):
            rel = np.stack(
                [boxes[:, 1] / h, boxes[:, 0] / w, boxes[:, 3] / h, boxes[:, 2] / w], 1
            ).astype(np.float32)
            features = self._features(image, rel).numpy()
        else:
            features = np.zeros((0, self.feature_dim), np.float32)
        multi = out.get("detection_multiclass_scores")
        return Detections(
            boxes=boxes,
            scores=np.asarray(out["detection_scores"], np.float32)[keep],
            features=features,
            image_width=w,
            image_height=h,
            class_probs=None if multi is None else np.asarray(multi, np.float32)[keep],
            classes=classes.astype(np.int64) - 1,
        )

    @property
    def num_classes(self) -> int | None:
        """C from the class names, else from the multiclass scores; else None."""
        if self.class_names is not None:
            return len(self.class_names)
        if self.has_multiclass:
            shape = self._detect.structured_outputs["detection_multiclass_scores"].shape
            if shape[-1] is not None:
                return int(shape[-1]) - 1
        return None

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of the backbone weights."""
        from data_prep.backbones.patch_feature_extractor import PatchFeatureExtractor

        return PatchFeatureExtractor.fingerprint(self)

    def describe(self) -> dict:
        """The manifest's ``detector`` entry."""
        from data_prep.pipeline import sha256_file

        return {
            "kind": self.kind,
            "path": str(self.path.resolve()),
            "sha256": sha256_file(self.path / "saved_model.pb"),
            "sha256_of": "saved_model.pb",
            "class_names": self.class_names,
            "multiclass_scores": self.has_multiclass,
            "backbone": {
                "name": self.backbone_name,
                "image_size": self.image_size,
                "output_layer": self.output_layer,
                "feature_dim": self.feature_dim,
                "roi_align": {
                    "roi_size": self.roi_size,
                    "samples_per_bin": 1,
                    "pooling": "average",
                    "op": "tf.image.crop_and_resize",
                },
                "weights": self.weights,
                "random_init_seed": self.seed,
                "fingerprint": self.fingerprint(),
            },
        }
