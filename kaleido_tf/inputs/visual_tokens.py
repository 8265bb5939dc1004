"""One record's visual tokens as the encoder reads them, whatever the layout.

The encoder (``networks/cross_modal_encoder.py``) reads ``patch_features`` [P, D],
``patch_boxes`` [P, 5] and ``patch_mask`` [P] (1 = a real token). Patch layouts
(kaleido, grid8) store the first two under those names and every patch is real;
region layouts (regions100, regions36) store ``region_features``,
``region_locations`` and a ``num_regions`` count, from which the mask follows.
Pipelines, evaluators and exporters call ``visual_inputs`` so that a region
folder is scored by the same code as a patch folder.
"""

from __future__ import annotations

import tensorflow as tf

from kaleido_tf import schema

VISUAL_KEYS = ("patch_features", "patch_boxes", "patch_mask")


def record_visual_keys(layout: schema.Layout | schema.RegionLayout) -> tuple[str, ...]:
    """The record fields ``visual_inputs`` reads for ``layout``."""
    if isinstance(layout, schema.RegionLayout):
        return ("region_features", "region_locations", "num_regions")
    return ("patch_features", "patch_boxes")


def visual_inputs(
    record: dict[str, tf.Tensor], layout: schema.Layout | schema.RegionLayout
) -> dict[str, tf.Tensor]:
    """``patch_features`` float32 [..., P, D], ``patch_boxes`` float32 [..., P, 5]
    and ``patch_mask`` int32 [..., P] of parsed records (one record or a batch).

    Args:
        record: Parsed record(s) (``inputs/parse.py``), with at least the fields
            ``record_visual_keys(layout)``.
        layout: The folder's layout (``schema.get_layout(manifest["layout"])``).
    """
    if isinstance(layout, schema.RegionLayout):
        features = record["region_features"]
        count = tf.cast(record["num_regions"], tf.int32)
        mask = tf.sequence_mask(count, layout.max_regions, dtype=tf.int32)
        return {
            "patch_features": features,
            "patch_boxes": record["region_locations"],
            "patch_mask": mask,
        }
    features = record["patch_features"]
    return {
        "patch_features": features,
        "patch_boxes": record["patch_boxes"],
        "patch_mask": tf.ones(tf.shape(features)[:-1], tf.int32),
    }
