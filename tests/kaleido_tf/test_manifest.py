"""read_manifest refuses a missing, half-written, foreign or mismatching manifest."""

import json

import pytest

from kaleido_tf import schema
from kaleido_tf.errors import DataError
from kaleido_tf.manifest import MANIFEST_NAME, read_manifest, write_manifest

GOOD = {
    "schema_version": schema.SCHEMA_VERSION,
    "layout": "kaleido",
    "feature_dim": 8,
    "max_seq_length": 7,
    "shards": [],
}


def test_a_good_manifest_round_trips(tmp_path):
    write_manifest(tmp_path, GOOD)
    assert read_manifest(tmp_path, "kaleido", 8, 7) == GOOD


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "not found"),
        ('{"schema_version": 3, "layo', "is unreadable"),  # cut off mid-write
        (json.dumps(dict(GOOD, schema_version=-1)), "has schema_version -1"),
    ],
)
def test_missing_half_written_or_foreign_manifest(tmp_path, text, message):
    if text is not None:
        (tmp_path / MANIFEST_NAME).write_text(text)
    with pytest.raises(DataError, match=message) as info:
        read_manifest(tmp_path)
    assert str(tmp_path) in str(info.value) and "prepare" in str(info.value)


@pytest.mark.parametrize(
    "needs, message",
    [
        ({"layout": "grid8"}, "layout='kaleido', but the config needs 'grid8'"),
        ({"feature_dim": 2048}, "feature_dim=8, but the config needs 2048"),
        ({"max_seq_length": 64}, "max_seq_length=7, but the config needs 64"),
    ],
)
def test_data_and_config_mismatch(tmp_path, needs, message):
    write_manifest(tmp_path, GOOD)
    with pytest.raises(DataError, match=message):
        read_manifest(tmp_path, **needs)
