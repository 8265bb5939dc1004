"""Parses CommerceMM's pixel records and Omni-Retrieval tuples (``prepare-pixels``,
``prepare-omni``; schema in ``schema.pixel_fields`` / ``schema.omni_tuple_fields``).

Images are stored as JPEG bytes and decoded here with ``tf.io.decode_jpeg``, the
same decoder the offline teacher saw, into float32 pixels in [0, 1] (a missing
image decodes to mid-grey, 128 / 255). Reference: imagebert_interbert_commercemm.md
§4.2, §4.5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tensorflow as tf

from kaleido_tf import schema
from kaleido_tf.errors import DataError
from kaleido_tf.inputs.parse import parse_record
from kaleido_tf.manifest import manifest_fields


def decode_image(jpeg: tf.Tensor, image_size: int) -> tf.Tensor:
    """``image: float32 [S, S, 3]`` in [0, 1] from a string scalar of JPEG bytes."""
    # The accurate inverse DCT, as the offline teacher decoded the same bytes
    # (data_prep.pixels.jpeg_images.DCT_METHOD); TF's default is a fast one.
    pixels = tf.io.decode_jpeg(jpeg, channels=3, dct_method="INTEGER_ACCURATE")
    pixels = tf.ensure_shape(pixels, [image_size, image_size, 3])
    return tf.cast(pixels, tf.float32) / 255.0


def parse_pixel_record(
    serialized: tf.Tensor, fields: dict[str, schema.FieldSpec], image_size: int
) -> dict[str, tf.Tensor]:
    """Parses one pixel record.

    Args:
        serialized: string scalar, one ``tf.train.Example``.
        fields: ``manifest_fields(manifest)`` of a ``prepare-pixels`` folder.
        image_size: S, the manifest's ``image_size``.

    Returns:
        ``parse_record``'s tensors with ``image_jpeg`` replaced by ``image:
        float32 [S, S, 3]`` in [0, 1]; ``teacher_features: float32 [D_t]`` (r(v))
        and ``teacher_clusters: float32 [K_c]`` (c(v), sums to 1 up to float16
        rounding).
    """
    out = parse_record(serialized, fields)
    out["image"] = decode_image(out.pop("image_jpeg"), image_size)
    return out


def parse_omni_tuple(
    serialized: tf.Tensor, fields: dict[str, schema.FieldSpec], image_size: int
) -> dict[str, tf.Tensor]:
    """Parses one Omni-Retrieval tuple.

    Args:
        serialized: string scalar, one ``tf.train.Example``.
        fields: ``manifest_fields(manifest)`` of a ``prepare-omni`` folder.
        image_size: S, the manifest's ``image_size``.

    Returns:
        ``src_image`` / ``tgt_image: float32 [S, S, 3]`` in [0, 1] (grey where
        ``*_has_image`` is 0), ``src_input_ids`` / ``tgt_input_ids: int32 [T]``,
        ``src_input_mask`` / ``tgt_input_mask: int32 [T]`` (1 = real token, 0 =
        padding), ``*_has_image`` / ``*_has_text: int32 []`` (δ: 1 = present),
        ``*_pose_index: int32 []``, ``kind: int32 []`` (index in
        ``schema.OMNI_KINDS``) and ``product_id: int64 []``.
    """
    out = parse_record(serialized, fields)
    for side in ("src", "tgt"):
        out[f"{side}_image"] = decode_image(out.pop(f"{side}_image_jpeg"), image_size)
        out[f"{side}_input_mask"] = tf.cast(out[f"{side}_input_ids"] != 0, tf.int32)
    return out


def pixel_dataset(data_dir: str | Path, manifest: dict[str, Any]) -> tf.data.Dataset:
    """All records of a ``prepare-pixels`` or ``prepare-omni`` folder, in shard
    order, parsed and decoded (deterministic)."""
    layout = schema.get_layout(manifest["layout"])
    if isinstance(layout, schema.PixelLayout):
        parse = parse_pixel_record
    elif isinstance(layout, schema.OmniTupleLayout):
        parse = parse_omni_tuple
    else:
        raise DataError(
            f"{data_dir} holds {manifest['layout']!r} records, not pixels: prepare "
            "it with `kaleido-tf prepare-pixels` or `prepare-omni`"
        )
    files = [str(Path(data_dir) / s["file"]) for s in manifest["shards"]]
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise DataError(
            f"{data_dir}: shard {missing[0]} listed in manifest.json is missing: "
            "rerun the command that built the folder"
        )
    fields = manifest_fields(manifest)
    size = int(manifest["image_size"])
    return tf.data.TFRecordDataset(files).map(
        lambda s: parse(s, fields, size),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
