"""The safetensors reader against the fixture's writer and hand-made bytes."""

import json
import struct

import numpy as np
import pytest

import kaleido_tf  # noqa: F401
from kaleido_tf.checkpoints.safetensors_file import read_header, read_tensor
from kaleido_tf.errors import CheckpointError
from tests.fixtures.hf_xlmr_checkpoint import write_safetensors


def test_round_trip_of_every_written_dtype(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "a.f32": rng.standard_normal((3, 5)).astype(np.float32),
        "b.f16": rng.standard_normal((7,)).astype(np.float16),
        "c.i64": np.arange(6, dtype=np.int64).reshape(2, 3),
        "d.bf16": rng.standard_normal((2, 2)).astype(np.float32),
        "e.scalar": np.array(2.5, np.float64),
    }
    path = write_safetensors(
        tmp_path / "x.safetensors", arrays, {"format": "pt"}, {"d.bf16": "BF16"}
    )
    tensors, metadata = read_header(path)
    assert metadata == {"format": "pt"}
    assert {k: v.dtype for k, v in tensors.items()} == {
        "a.f32": "F32",
        "b.f16": "F16",
        "c.i64": "I64",
        "d.bf16": "BF16",
        "e.scalar": "F64",
    }
    for name in ("a.f32", "b.f16", "c.i64", "e.scalar"):
        value = read_tensor(path, tensors[name])
        assert value.dtype == arrays[name].dtype and value.shape == arrays[name].shape
        np.testing.assert_array_equal(value, arrays[name])
    # bfloat16 keeps the high 16 bits: relative error below 2^-7.
    bf16 = read_tensor(path, tensors["d.bf16"])
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(bf16, arrays["d.bf16"], rtol=2**-7)
    truncated = (arrays["d.bf16"].view(np.uint32) & 0xFFFF0000).view(np.float32)
    np.testing.assert_array_equal(bf16, truncated)


def test_hand_made_file(tmp_path):
    # Written byte by byte from the format description, not by the fixture.
    values = np.array([[1.0, -2.0], [0.5, 4.0]], "<f4")
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    )
    path = tmp_path / "hand.safetensors"
    path.write_bytes(
        struct.pack("<Q", len(header)) + header.encode() + values.tobytes()
    )
    tensors, metadata = read_header(path)
    assert metadata == {}
    np.testing.assert_array_equal(read_tensor(path, tensors["w"]), values)


def _file(header: bytes, buffer: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + buffer


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x01\x02", "too short"),
        (struct.pack("<Q", 10**9) + b"{}", "declares a 1000000000-byte header"),
        (struct.pack("<Q", 4) + b"nope", "not UTF-8 JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (
            _file(
                b'{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}', bytes(8)
            ),
            "truncated or corrupt",
        ),
        (
            _file(
                b'{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}', bytes(16)
            ),
            "needs 16 bytes",
        ),
        (
            _file(b'{"w":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}', bytes(8)),
            "dtype 'C64'",
        ),
        (_file(b'{"w":{"a":1}}'), "lacks dtype"),
    ],
)
def test_bad_files_are_refused(tmp_path, data, match):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=match):
        read_header(path)
