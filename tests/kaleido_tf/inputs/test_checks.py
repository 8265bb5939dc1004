"""Bad records: NaN/Inf features are reported with the record's image_id; a truncated
or corrupt TFRecord shard becomes a DataError that names the file."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from kaleido_tf.errors import DataError
from kaleido_tf.inputs.checks import NON_FINITE, find_corrupt_shard
from kaleido_tf.inputs.pipeline import build_pretrain_dataset
from kaleido_tf.manifest import read_manifest
from kaleido_tf.training.trainer import _data_error


def copy_with(tmp_path, source, change):
    """A copy of a prepared folder whose second shard went through ``change``."""
    out = tmp_path / "data"
    shutil.copytree(source, out)
    manifest = read_manifest(out)
    shard = out / manifest["shards"][1]["file"]
    change(shard)
    return out, manifest, shard


def poison(value):
    def change(shard):
        records = [r.numpy() for r in tf.data.TFRecordDataset(str(shard))]
        k = min(2, len(records) - 1)
        example = tf.train.Example.FromString(records[k])
        feature = example.features.feature["patch_features"].bytes_list
        values = np.frombuffer(feature.value[0], "<f2").copy()
        values[7] = value
        feature.value[0] = values.tobytes()
        records[k] = example.SerializeToString()
        with tf.io.TFRecordWriter(str(shard)) as writer:
            for r in records:
                writer.write(r)
        change.image_id = example.features.feature["image_id"].bytes_list.value[0]

    return change


def run_all(data):
    for _ in build_pretrain_dataset(data, 8, training=False):
        pass


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_features_name_the_record(synthetic_prepared, tmp_path, value):
    change = poison(value)
    data, manifest, _ = copy_with(tmp_path, synthetic_prepared["train"], change)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        run_all(data)
    error = _data_error(info.value, data, manifest)
    assert isinstance(error, DataError)
    message = str(error)
    assert NON_FINITE in message and "patch_features" in message
    assert f"image_id={change.image_id.decode()}:" in message  # the record's id
    run_all(synthetic_prepared["train"])  # the clean data passes the check


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_shard_is_named(synthetic_prepared, tmp_path, damage):
    def change(shard: Path):
        data = bytearray(shard.read_bytes())
        if damage == "truncate":
            data = data[: len(data) - 100]  # a copy cut short
        else:
            data[len(data) // 2] ^= 0xFF  # one flipped byte: CRC mismatch
        shard.write_bytes(bytes(data))

    data, manifest, shard = copy_with(tmp_path, synthetic_prepared["train"], change)
    with pytest.raises(tf.errors.DataLossError) as info:
        run_all(data)
    error = _data_error(info.value, data, manifest)
    assert isinstance(error, DataError)
    assert str(shard) in str(error) and "corrupt TFRecord shard" in str(error)
    assert find_corrupt_shard([data / s["file"] for s in manifest["shards"]])[0] == (
        shard
    )


def test_training_stops_with_a_one_line_error_naming_the_record(
    synthetic_prepared, tmp_path, capsys
):
    from kaleido_tf.cli.main import main
    from tests.conftest import TINY_MODEL

    data = tmp_path / "data"
    shutil.copytree(synthetic_prepared["train"], data)
    for entry in read_manifest(data)["shards"]:  # the first batch meets one
        poison(np.inf)(data / entry["file"])
    argv = ["pretrain", "--config", "kaleido_bert/demo", "--quiet"]
    settings = ["train.global_batch_size=8", "train.max_steps=2"]
    settings += ["train.optimizer.warmup_steps=1"]
    for setting in TINY_MODEL + settings:
        argv += ["--set", setting]
    argv += ["--data", str(data), "--model-dir", str(tmp_path / "run")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {data}: {NON_FINITE} patch_features of record")
    assert "image_id=" in err and "Traceback" not in err
