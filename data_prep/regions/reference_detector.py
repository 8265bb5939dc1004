"""A small, real, training-free detector with the TF2 Object Detection API signature.

No trained Visual-Genome detector can be downloaded here, so the demo and the tests
use this one. It works on product photos with plain backgrounds (Fashion-Gen, the
synthetic set): the background colour is the median of the border pixels and a
pixel is foreground when a channel differs from it by more than ``threshold``
(the training-free segmentation of ``data_prep.kpg.foreground``, without the
morphology). Candidates are fixed multi-scale windows (sides 1, 1/2, 1/3, 1/4 of
the image, half-window stride). Each window's score is its foreground fraction;
its class is the dominant named colour of its foreground pixels (nearest colour of
``data_prep.synthetic.catalog.COLOURS``). Non-maximum suppression
(``tf.image.non_max_suppression``) keeps the best ``max_detections``.

Outputs (``serving_default``, input ``input_tensor`` uint8 [1, H, W, 3]):
``detection_boxes`` [1, N, 4] normalised ymin, xmin, ymax, xmax (window bounds
snapped to whole pixels); ``detection_scores`` [1, N]; ``detection_classes``
[1, N] 1-based colour ids (float); ``num_detections`` [1];
``detection_multiclass_scores`` [1, N, C + 1]: column 0 = background fraction,
column c = foreground fraction x share of colour c (rows sum to 1). Rows past
``num_detections`` are zero. ``class_names.txt`` is written beside the model.

Reference: imagebert_interbert_commercemm.md §2.2 (a detector's boxes, scores and
class labels feed the regions); TF2 Object Detection API exporter signature.
Deviation: a stand-in for the Visual Genome Faster R-CNN, for demos and tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import kaleido_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from data_prep.regions.detector_regions import CLASS_NAMES_FILE


def candidate_windows(scales: tuple[int, ...] = (1, 2, 3, 4)) -> np.ndarray:
    """float32 [M, 4] normalised ``ymin, xmin, ymax, xmax``: for each s, windows of
    side 1/s at stride 1/(2s) ((2s - 1)^2 of them), row-major."""
    boxes = []
    for s in scales:
        side, steps = 1.0 / s, 2 * s - 1
        for i in range(steps):
            for j in range(steps):
                y, x = i * side / 2.0, j * side / 2.0
                boxes.append([y, x, y + side, x + side])
    return np.asarray(boxes, np.float32)


class ReferenceDetector:
    """The detector as a ``tf.Module``; see the module docstring.

    Args:
        class_names: Colour names, in class-id order (1-based ids in outputs).
        palette: RGB uint8 [C, 3] of each class.
        max_detections: N, the padded output count.
        threshold: Foreground threshold on the largest channel difference from
            the background colour (RGB in [0, 1]).
        iou_threshold: NMS overlap threshold.
        min_score: Windows with a lower foreground fraction are dropped.
        scales: Window sizes 1/s of the image.
    """

    def __init__(
        self,
        class_names: list[str],
        palette: np.ndarray,
        max_detections: int = 100,
        threshold: float = 0.08,
        iou_threshold: float = 0.5,
        min_score: float = 0.05,
        scales: tuple[int, ...] = (1, 2, 3, 4),
    ) -> None:
        self.class_names = list(class_names)
        self.palette = np.asarray(palette, np.float32) / 255.0
        self.max_detections = max_detections
        self.threshold = threshold
        self.iou_threshold = iou_threshold
        self.min_score = min_score
        self.windows = candidate_windows(scales)

    def module(self):
        """A ``tf.Module`` whose ``detect`` is the serving function."""
        import tensorflow as tf

        det = self

        class _Module(tf.Module):
            @tf.function(
                input_signature=[
                    tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")
                ]
            )
            def detect(self, input_tensor):
                return det._detect(input_tensor)

        return _Module()

    def _detect(self, input_tensor):
        import tensorflow as tf

        k = len(self.class_names)
        n_out = self.max_detections
        image = tf.cast(input_tensor[0], tf.float32) / 255.0  # [H, W, 3]
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        border = tf.concat(
            [image[0], image[-1], image[1:-1, 0], image[1:-1, -1]], axis=0
        )  # [B, 3]
        ordered = tf.sort(border, axis=0)
        m = tf.shape(border)[0]
        background = (ordered[(m - 1) // 2] + ordered[m // 2]) / 2.0
        diff = tf.reduce_max(tf.abs(image - background), axis=-1)
        mask = tf.cast(diff > self.threshold, tf.float32)  # [H, W]
        palette = tf.constant(self.palette)
        dist = tf.reduce_sum(tf.square(image[:, :, None, :] - palette), axis=-1)
        colour = tf.one_hot(tf.argmin(dist, axis=-1), k) * mask[..., None]
        chans = tf.concat([mask[..., None], colour], axis=-1)  # [H, W, 1 + C]
        table = tf.cumsum(tf.cumsum(chans, axis=0), axis=1)
        table = tf.pad(table, [[1, 0], [1, 0], [0, 0]])  # [H + 1, W + 1, 1 + C]

        windows = tf.constant(self.windows)
        hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
        scale = tf.stack([hf, wf, hf, wf])
        pix = tf.cast(tf.round(windows * scale), tf.int32)
        y1 = tf.clip_by_value(pix[:, 0], 0, h - 1)
        x1 = tf.clip_by_value(pix[:, 1], 0, w - 1)
        y2 = tf.clip_by_value(tf.maximum(pix[:, 2], y1 + 1), 1, h)
        x2 = tf.clip_by_value(tf.maximum(pix[:, 3], x1 + 1), 1, w)

        def at(yy, xx):
            return tf.gather_nd(table, tf.stack([yy, xx], axis=1))

        sums = at(y2, x2) - at(y1, x2) - at(y2, x1) + at(y1, x1)  # [M, 1 + C]
        area = tf.cast((y2 - y1) * (x2 - x1), tf.float32)
        fg = sums[:, 0] / area
        counts = sums[:, 1:]
        share = counts / tf.maximum(tf.reduce_sum(counts, axis=1, keepdims=True), 1.0)
        multi = tf.concat([1.0 - fg[:, None], fg[:, None] * share], axis=1)
        boxes = tf.cast(tf.stack([y1, x1, y2, x2], axis=1), tf.float32) / scale
        keep = tf.image.non_max_suppression(
            boxes,
            fg,
            max_output_size=n_out,
            iou_threshold=self.iou_threshold,
            score_threshold=self.min_score,
        )
        n = tf.shape(keep)[0]
        pad = n_out - n

        def take(x):
            x = tf.gather(x, keep)
            paddings = [[0, pad]] + [[0, 0]] * (len(x.shape) - 1)
            return tf.pad(x, paddings)[None]

        classes = tf.cast(tf.argmax(share, axis=1) + 1, tf.float32)
        return {
            "detection_boxes": take(boxes),
            "detection_scores": take(fg),
            "detection_classes": take(classes),
            "detection_multiclass_scores": take(multi),
            "num_detections": tf.cast(n, tf.float32)[None],
        }


def default_colour_classes() -> tuple[list[str], np.ndarray]:
    """The synthetic catalog's named colours: names and RGB uint8 [C, 3]."""
    from data_prep.synthetic.catalog import COLOURS

    names = list(COLOURS)
    return names, np.asarray([COLOURS[n] for n in names], np.uint8)


def export_reference_detector(
    out_dir: str | Path,
    max_detections: int = 100,
    threshold: float = 0.08,
    iou_threshold: float = 0.5,
    min_score: float = 0.05,
) -> Path:
    """Exports the reference detector as a SavedModel with ``class_names.txt``.

    The folder is written under a temporary name and renamed when complete; an
    existing folder is replaced.

    Args:
        out_dir: The SavedModel folder to create.
        max_detections: N, boxes per image (padded).
        threshold: Foreground threshold (RGB in [0, 1]).
        iou_threshold: NMS overlap threshold.
        min_score: Lowest kept foreground fraction.

    Returns:
        ``out_dir``.
    """
    import os
    import shutil

    import tensorflow as tf

    from kaleido_tf.atomic_files import temporary_path

    out_dir = Path(out_dir)
    names, palette = default_colour_classes()
    detector = ReferenceDetector(
        names, palette, max_detections, threshold, iou_threshold, min_score
    )
    module = detector.module()
    tmp = temporary_path(out_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tf.saved_model.save(
            module,
            str(tmp),
            signatures={"serving_default": module.detect.get_concrete_function()},
        )
        (tmp / CLASS_NAMES_FILE).write_text("\n".join(names) + "\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
