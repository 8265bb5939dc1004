"""A reader of the safetensors format (Hugging Face ``*.safetensors``), in numpy.

The format, as specified by huggingface/safetensors (README, "Format"):

1. 8 bytes: N, an unsigned little-endian 64-bit integer, the header's size;
2. N bytes: a UTF-8 JSON object (it may end in spaces), mapping each tensor name
   to ``{"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}``,
   plus an optional ``"__metadata__"`` object of strings;
3. the byte buffer: each tensor's values, row-major, little-endian, at
   ``[begin, end)`` counted from the buffer's start (byte 8 + N).

This module reads the header and, on demand, single tensors (so a 1 GB file is
not read whole). It is written from that specification, so the project needs no
``safetensors`` package; ``tests/fixtures/hf_xlmr_checkpoint.py`` writes the same
format with its own writer.

Reference: github.com/huggingface/safetensors, README "Format".
"""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import numpy as np

from kaleido_tf.errors import CheckpointError

# safetensors dtype -> little-endian numpy dtype. BF16 has no numpy type: its
# 16 bits are the high half of a float32 and are widened on reading.
DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}
# A header larger than this is not a real header (the format caps it at 100 MB).
MAX_HEADER_BYTES = 100_000_000


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor's header entry."""

    dtype: str  # safetensors name, e.g. "F32"
    shape: tuple[int, ...]
    begin: int  # absolute byte offset in the file
    end: int


def read_header(path: str | Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Reads and checks a safetensors header.

    Args:
        path: The ``.safetensors`` file.

    Returns:
        (tensor name -> TensorInfo, the ``__metadata__`` strings or {}).

    Raises:
        CheckpointError: The file is unreadable, truncated, or not safetensors (a
            header that is not JSON, an unknown dtype, a tensor whose byte range
            does not match its shape or lies outside the file).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(
                    f"{path} is {size} bytes, too short for a safetensors file: "
                    "copy it again"
                )
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise CheckpointError(
                    f"{path} declares a {n}-byte header in a {size}-byte file: not "
                    "a safetensors file, or truncated; copy it again"
                )
            raw = f.read(n)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"{path} has a header that is not UTF-8 JSON ({e}): not a safetensors file"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    start = 8 + n
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        try:
            dtype = entry["dtype"]
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(o) for o in entry["data_offsets"])
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(
                f"{path}: header entry {name!r} lacks dtype, shape or data_offsets: "
                "not a safetensors file"
            ) from None
        if dtype not in DTYPES:
            raise CheckpointError(
                f"{path}: tensor {name!r} has dtype {dtype!r}, which this reader "
                f"does not know ({sorted(DTYPES)})"
            )
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(DTYPES[dtype]).itemsize
        if end - begin != nbytes or begin < 0 or start + end > size:
            raise CheckpointError(
                f"{path}: tensor {name!r} {dtype} {list(shape)} needs {nbytes} bytes "
                f"but its data_offsets are [{begin}, {end}] in a buffer of "
                f"{size - start}: the file is truncated or corrupt; copy it again"
            )
        tensors[name] = TensorInfo(dtype, shape, start + begin, start + end)
    return tensors, metadata


def read_tensor(path: str | Path, info: TensorInfo) -> np.ndarray:
    """One tensor's values (BF16 widened to float32), in its stored dtype otherwise.

    Raises:
        CheckpointError: The bytes cannot be read.
    """
    dtype = np.dtype(DTYPES[info.dtype])
    try:
        with Path(path).open("rb") as f:
            f.seek(info.begin)
            data = f.read(info.end - info.begin)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    if len(data) != info.end - info.begin:
        raise CheckpointError(f"{path} ends early: copy it again")
    value = np.frombuffer(data, dtype=dtype).reshape(info.shape)
    if info.dtype == "BF16":
        value = (value.astype(np.uint32) << 16).view(np.float32)
    return value.astype(value.dtype.newbyteorder("="))
