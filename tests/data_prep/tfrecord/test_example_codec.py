"""Record round trip through schema.py: writer (data_prep) -> parser (kaleido_tf)."""

import numpy as np
import pytest
import tensorflow as tf

from data_prep.tfrecord.example_codec import encode_record
from data_prep.tfrecord.shard_writer import ShardWriter
from kaleido_tf.errors import DataError
from kaleido_tf.inputs.parse import parse_record
from kaleido_tf.schema import LAYOUTS, MAX_ALIGNMENT_PAIRS, record_fields


def make_values(layout, t=7, d=8, seed=0):
    rng = np.random.default_rng(seed)
    p = layout.num_patches
    values = {
        "image_id": b"123_2",
        "product_id": 123,
        "pose_index": 2,
        "source_row": 40,
        "category_id": 3,
        "subcategory_id": -1,
        "input_ids": rng.integers(0, 30, t),
        "word_index": rng.integers(-1, 5, t),
        "crop_box": np.asarray([-3, 4, 200, 207]),
        "patch_boxes": rng.random((p, 5), np.float32),
        "patch_features": rng.normal(0, 3, (p, d)).astype(np.float32),
        "align_word_index": rng.integers(-1, 9, MAX_ALIGNMENT_PAIRS),
        "align_patch_index": rng.integers(-1, p, MAX_ALIGNMENT_PAIRS),
        "align_score": rng.random(MAX_ALIGNMENT_PAIRS, np.float32),
    }
    if layout.pixel_variants:
        values["rotated_features"] = rng.normal(0, 3, (3, d)).astype(np.float32)
        values["grey_features"] = rng.normal(0, 3, (16, d)).astype(np.float32)
    return values


@pytest.mark.parametrize("layout_name", ["kaleido", "grid8"])
def test_round_trip_is_exact(layout_name):
    layout = LAYOUTS[layout_name]
    fields = record_fields(layout, 7, 8)
    values = make_values(layout)
    parsed = parse_record(tf.constant(encode_record(dict(values), fields)), fields)
    assert set(parsed) == set(fields)
    for key, value in values.items():
        got = parsed[key].numpy()
        if fields[key].dtype == "float16_bytes":
            assert parsed[key].dtype == tf.float32 and got.shape == fields[key].shape
            # Exact: the stored float16 value, widened.
            np.testing.assert_array_equal(
                got, value.astype(np.float16).astype(np.float32)
            )
        elif fields[key].dtype == "bytes":
            assert got == value
        else:
            np.testing.assert_array_equal(got, np.asarray(value).astype(got.dtype))
    assert parsed["input_ids"].dtype == tf.int32
    assert parsed["product_id"].dtype == tf.int64


def test_bad_values_are_refused_with_the_record_id():
    layout = LAYOUTS["kaleido"]
    fields = record_fields(layout, 7, 8)
    values = make_values(layout)
    values["patch_features"][3, 1] = np.nan
    with pytest.raises(DataError, match="record 123_2: key 'patch_features' holds NaN"):
        encode_record(values, fields)
    values = make_values(layout)
    values["grey_features"][0, 0] = 1e6
    with pytest.raises(DataError, match="overflows float16"):
        encode_record(values, fields)
    values = make_values(layout)
    values["input_ids"] = values["input_ids"][:5]
    with pytest.raises(DataError, match=r"'input_ids' has shape \(5,\)"):
        encode_record(values, fields)
    values = make_values(layout)
    del values["crop_box"]
    with pytest.raises(DataError, match="crop_box"):
        encode_record(values, fields)


def test_shard_writer_renames_only_on_commit(tmp_path):
    final = tmp_path / "x-00000-of-00001.tfrecord"
    (tmp_path / "x-00000-of-00001.tfrecord.tmp-99999").write_bytes(b"stale")
    with ShardWriter(final) as writer:
        assert not list(tmp_path.glob("*.tmp-99999"))  # stale temporary removed
        writer.write(b"a")
        writer.write(b"bc")
        assert not final.exists() and writer.tmp_path.exists()
        writer.commit()
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(final))] == [b"a", b"bc"]
    other = tmp_path / "y.tfrecord"
    with pytest.raises(RuntimeError):
        with ShardWriter(other) as writer:
            writer.write(b"a")
            raise RuntimeError("killed")
    assert list(tmp_path.glob("y.tfrecord*")) == []
