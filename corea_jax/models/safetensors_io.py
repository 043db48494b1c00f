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
    """The tensor table of one .safetensors file (metadata entries dropped).

    Everything the loader later relies on is checked here, so a truncated or corrupt file is a
    one-line `CoreaError` naming it rather than a memory-map or JSON traceback at load time: the
    header parses as a table of well-formed entries and every tensor's bytes lie inside the file.
    """
    path = Path(path)
    try:
        file_size = os.path.getsize(path)
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise CoreaError(f"{path}: not a safetensors file (too short)")
            (size,) = struct.unpack("<Q", raw)
            if 8 + size > file_size:
                raise CoreaError(
                    f"{path}: truncated or not a safetensors file (header of {size} bytes, "
                    f"file of {file_size})"
                )
            header = json.loads(f.read(size))
    except FileNotFoundError as e:
        raise CoreaError(f"{path}: file not found") from e
    except OSError as e:
        raise CoreaError(f"{path}: cannot read ({e.strerror or e})") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CoreaError(f"{path}: not a safetensors file (header is not JSON)") from e
    if not isinstance(header, dict):
        raise CoreaError(f"{path}: not a safetensors file (header is not a JSON object)")
    data_size = file_size - 8 - size
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        info, begin, end = _entry(path, name, entry, 8 + size)
        if end - begin != info.dtype.itemsize * int(np.prod(info.shape, dtype=np.int64)):
            raise CoreaError(f"{path}: tensor {name} byte range does not match its shape")
        if end > data_size:
            raise CoreaError(
                f"{path}: truncated: tensor {name} ends at byte {8 + size + end}, the file has "
                f"{file_size}"
            )
        out[name] = info
    return out


def _entry(path: Path, name: str, entry, data_start: int) -> tuple[TensorInfo, int, int]:
    """One header entry -> (TensorInfo, begin, end byte offsets within the data section)."""
    try:
        dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        valid = (
            all(isinstance(x, int) and x >= 0 for x in (*shape, begin, end))
            and isinstance(shape, list)
            and isinstance(dtype, str)
            and begin <= end
        )
    except (KeyError, TypeError, ValueError):
        valid = False
    if not valid:
        raise CoreaError(f"{path}: not a safetensors file (tensor {name}: malformed header entry)")
    if dtype not in _DTYPES:
        raise CoreaError(f"{path}: tensor {name} has unsupported dtype {dtype}")
    return TensorInfo(path, _DTYPES[dtype], tuple(shape), data_start + begin), begin, end


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
