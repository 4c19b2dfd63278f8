"""Read and write safetensors files one tensor at a time, without pickle and without mmap growth.

Each tensor is read with a positioned read into its own buffer, so memory holds only the
tensors the caller keeps. Writing streams tensors into a file whose header is known up front.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import torch

DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


class SafetensorsError(ValueError):
    """A safetensors file is malformed or uses an unsupported dtype."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: its file, dtype, shape and absolute byte range."""

    name: str
    path: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


def read_header(path: Path) -> dict[str, TensorEntry]:
    """Parse a safetensors header; offsets are turned into absolute file positions."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise SafetensorsError(f"{path.name}: too short to be a safetensors file")
        (header_len,) = struct.unpack("<Q", raw)
        if header_len > min(size - 8, 100 * 1024 * 1024):
            raise SafetensorsError(f"{path.name}: not a safetensors file (bad header length)")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise SafetensorsError(f"{path.name}: not a safetensors file ({exc})") from exc
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path.name}: not a safetensors file (the header is not a JSON object)")
    base = 8 + header_len
    entries: dict[str, TensorEntry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (start, end) = _entry_fields(path, name, info)
        if dtype not in DTYPE_SIZES:
            raise SafetensorsError(f"{path.name}: tensor {name} has unsupported dtype {dtype}")
        entry = TensorEntry(name, path, dtype, shape, base + start, base + end)
        if entry.nbytes != entry.numel * DTYPE_SIZES[dtype] or entry.end > size:
            raise SafetensorsError(f"{path.name}: tensor {name} has inconsistent offsets (truncated file?)")
        entries[name] = entry
    return entries


def _entry_fields(path: Path, name: str, info: object) -> tuple[str, tuple[int, ...], tuple[int, int]]:
    """(dtype, shape, data_offsets) of one header entry, each checked for type and sign."""
    def count(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise SafetensorsError(f"{path.name}: tensor {name} lacks dtype, shape or data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str):
        raise SafetensorsError(f"{path.name}: tensor {name} has a malformed dtype {dtype!r}")
    if not isinstance(shape, list) or not all(count(d) for d in shape):
        raise SafetensorsError(f"{path.name}: tensor {name} has a malformed shape {shape!r}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(count(o) for o in offsets) \
            or offsets[0] > offsets[1]:
        raise SafetensorsError(f"{path.name}: tensor {name} has malformed data_offsets {offsets!r}")
    return dtype, tuple(shape), (offsets[0], offsets[1])


def torch_dtype(code: str) -> torch.dtype:
    import torch

    return {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[code]


def load_tensor(entry: TensorEntry) -> torch.Tensor:
    """Read one tensor into a fresh buffer (no mmap, no pickle)."""
    import torch

    buffer = bytearray(entry.nbytes)
    with entry.path.open("rb") as handle:
        handle.seek(entry.start)
        if handle.readinto(buffer) != entry.nbytes:
            raise SafetensorsError(f"{entry.path.name}: tensor {entry.name} is truncated")
    if entry.nbytes == 0:
        return torch.empty(entry.shape, dtype=torch_dtype(entry.dtype))
    return torch.frombuffer(buffer, dtype=torch_dtype(entry.dtype)).reshape(entry.shape)


def write_header(handle: BinaryIO, specs: list[tuple[str, str, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None) -> None:
    """Write the header for tensors ``(name, dtype, shape)`` that will follow in this order."""
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, dtype, shape in specs:
        size = DTYPE_SIZES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    handle.write(struct.pack("<Q", len(raw)))
    handle.write(raw)


def write_tensor(handle: BinaryIO, tensor: torch.Tensor) -> None:
    """Append one tensor's raw little-endian bytes."""
    import torch

    flat = tensor.detach().contiguous().reshape(-1)
    if flat.numel():
        # numpy's stubs declare ndarray.__buffer__ only for Python >= 3.12; at runtime it is a buffer on 3.11 too
        handle.write(memoryview(flat.view(torch.uint8).numpy()))  # type: ignore[arg-type]
