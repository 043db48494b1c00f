"""Reading and writing the safetensors format with memory maps and bfloat16 support.

The format is an 8-byte little-endian header size, a JSON header (name -> dtype, shape, byte
offsets) and the raw tensors. We read it ourselves rather than through the `safetensors` package
because its NumPy backend has no bfloat16, and because a memory-mapped view lets the loader copy
onto each device only the slice that device holds (no full host copy of a sharded model).
Files written here load in `safetensors`/transformers (tested).
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from pathlib import Path

import ml_dtypes
import numpy as np

from corea_jax.errors import CoreaError

_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in _DTYPES.items()}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    path: Path
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int  # absolute byte offset of the tensor in the file

    def open(self) -> np.ndarray:
        """A read-only memory-mapped view; pages are read only when sliced."""
        if not self.shape or 0 in self.shape:
            return np.zeros(self.shape, self.dtype)
        return np.memmap(self.path, self.dtype, mode="r", offset=self.offset, shape=self.shape)


def read_header(path: str | Path) -> dict[str, TensorInfo]:
    """The tensor table of one .safetensors file (metadata entries dropped)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise CoreaError(f"{path}: not a safetensors file (too short)")
            (size,) = struct.unpack("<Q", raw)
            if size > os.path.getsize(path):
                raise CoreaError(f"{path}: not a safetensors file (bad header size)")
            header = json.loads(f.read(size))
    except FileNotFoundError as e:
        raise CoreaError(f"{path}: file not found") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CoreaError(f"{path}: not a safetensors file (header is not JSON)") from e
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in _DTYPES:
            raise CoreaError(f"{path}: tensor {name} has unsupported dtype {entry['dtype']}")
        begin, end = entry["data_offsets"]
        info = TensorInfo(path, _DTYPES[entry["dtype"]], tuple(entry["shape"]), 8 + size + begin)
        if end - begin != info.dtype.itemsize * int(np.prod(info.shape, dtype=np.int64)):
            raise CoreaError(f"{path}: tensor {name} byte range does not match its shape")
        out[name] = info
    return out


def write_file(
    path: str | Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    """Writes tensors (C-contiguous copies are made as needed) to one .safetensors file."""
    header: dict = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    arrays = []
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        if array.dtype not in _NAMES:
            raise CoreaError(f"{path}: tensor {name} has unsupported dtype {array.dtype}")
        header[name] = {
            "dtype": _NAMES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
        arrays.append(array)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # keep tensor data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for array in arrays:
            f.write(memoryview(array.reshape(-1).view(np.uint8)))
