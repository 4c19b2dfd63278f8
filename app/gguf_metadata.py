"""A bounded reader of a GGUF file's header, key/values and tensor infos, for untrusted files.

``gguf.GGUFReader`` builds numpy arrays from the counts a file declares, so an 85-byte header that
declares a 2^40-element array makes it allocate without bound. This reader memory-maps at most
:data:`MAX_METADATA_BYTES` of the file, checks every declared count and length against the bytes
left before reading anything, keeps only scalar values (arrays such as the tokenizer vocabulary
are skipped, never materialised) and raises :class:`GGUFFormatError` naming the problem.

:func:`printable` makes metadata safe to print on a terminal.
"""

from __future__ import annotations

import json
import mmap
import re
import struct
from dataclasses import dataclass
from math import prod
from pathlib import Path

from gguf import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGMLQuantizationType, GGUFValueType

# A real header is mostly its tokenizer arrays: 5.7 MiB for the demo model's 152k-token
# vocabulary, around 15 MiB for the largest vocabularies in use (256k tokens): 4x headroom.
MAX_METADATA_BYTES = 64 * 2**20
MAX_STRING_BYTES = 2**20  # keys, names and chat templates (real templates are a few KiB)
MAX_ARRAY_DEPTH = 2  # arrays of arrays of scalars at most
MAX_TENSOR_DIMS = 4  # GGML_MAX_DIMS
SUPPORTED_VERSIONS = (2, 3)

GGUF_MAGIC = b"GGUF"
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SCALARS: dict[GGUFValueType, struct.Struct] = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: _U32,
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<?"),
    GGUFValueType.UINT64: _U64,
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}
_MIN_BYTES = {**{kind: s.size for kind, s in _SCALARS.items()},
              GGUFValueType.STRING: _U64.size, GGUFValueType.ARRAY: _U32.size + _U64.size}
_MIN_KV_BYTES = _U64.size + _U32.size + 1  # key length, value type, the smallest value
_MIN_TENSOR_INFO_BYTES = _U64.size + _U32.size + _U32.size + _U64.size  # name, dims, type, offset

Scalar = int | float | bool | str


class GGUFFormatError(ValueError):
    """The file is not a well-formed GGUF within this reader's limits; the message says where."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's declared shape and ggml type (its data is never read)."""

    shape: tuple[int, ...]
    ggml_type: GGMLQuantizationType

    @property
    def n_elements(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True)
class GGUFMetadata:
    """A GGUF file's scalar key/values and tensor infos; array values are left out."""

    values: dict[str, Scalar]
    tensors: tuple[TensorInfo, ...]


class _Cursor:
    """Reads little-endian values from a bounded buffer, checking every length before use."""

    def __init__(self, data: mmap.mmap, file_size: int) -> None:
        self.data = data
        self.file_size = file_size
        self.pos = 0

    def need(self, size: int, what: str) -> None:
        """Raise unless ``size`` more bytes are there to read (the file's end, or the metadata cap)."""
        if size <= len(self.data) - self.pos:
            return
        if self.pos + size > self.file_size:
            raise GGUFFormatError(
                f"{what} at byte {self.pos:,} needs {size:,} bytes but the file has only "
                f"{max(self.file_size - self.pos, 0):,} left (truncated or damaged file)")
        raise GGUFFormatError(f"{what} at byte {self.pos:,} takes the metadata past the "
                              f"{MAX_METADATA_BYTES // 2**20} MiB limit")

    def unpack(self, fmt: struct.Struct, what: str) -> Scalar:
        self.need(fmt.size, what)
        (value,) = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return value

    def u32(self, what: str) -> int:
        return int(self.unpack(_U32, what))

    def u64(self, what: str) -> int:
        return int(self.unpack(_U64, what))

    def count(self, what: str, min_item_bytes: int) -> int:
        """A declared element count, checked against the bytes left before anything is allocated."""
        n = self.u64(what)
        self.check_count(n, min_item_bytes, what)
        return n

    def check_count(self, n: int, min_item_bytes: int, what: str) -> None:
        """Raise unless ``n`` items of at least ``min_item_bytes`` each can follow."""
        if n * min_item_bytes > len(self.data) - self.pos:
            self.need(n * min_item_bytes, f"{what} of {n:,}")

    def skip_string(self, what: str) -> int:
        """Check a string's declared length and step over it; returns the length."""
        length = self.u64(f"{what} length")
        if length > MAX_STRING_BYTES:
            raise GGUFFormatError(f"{what} at byte {self.pos - 8:,} declares {length:,} bytes, "
                                  f"over the {MAX_STRING_BYTES // 2**20} MiB limit")
        self.need(length, what)
        self.pos += length
        return length

    def string(self, what: str) -> str:
        length = self.skip_string(what)
        return bytes(self.data[self.pos - length:self.pos]).decode("utf-8", errors="replace")

    def value_type(self, what: str) -> GGUFValueType:
        raw = self.u32(what)
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise GGUFFormatError(f"{what} at byte {self.pos - 4:,} is unknown ({raw})") from None

    def value(self, kind: GGUFValueType) -> Scalar | None:
        """Read a scalar or string; skip an array (returning None)."""
        if kind == GGUFValueType.STRING:
            return self.string("string value")
        if kind == GGUFValueType.ARRAY:
            self.skip_array(depth=1)
            return None
        return self.unpack(_SCALARS[kind], f"{kind.name} value")

    def skip_array(self, depth: int) -> None:
        if depth > MAX_ARRAY_DEPTH:
            raise GGUFFormatError(f"arrays nested more than {MAX_ARRAY_DEPTH} deep at byte {self.pos:,}")
        kind = self.value_type("array element type")
        n = self.count("array element count", _MIN_BYTES[kind])
        if kind in _SCALARS:
            self.pos += n * _SCALARS[kind].size  # count() checked that these bytes are there
        elif kind == GGUFValueType.STRING:
            for _ in range(n):
                self.skip_string("array string")
        else:
            for _ in range(n):
                self.skip_array(depth + 1)


def read_gguf_metadata(path: Path) -> GGUFMetadata:
    """The scalar metadata and tensor infos of the GGUF at ``path``, read within fixed limits."""
    with Path(path).open("rb") as handle:
        file_size = handle.seek(0, 2)
        if file_size < len(GGUF_MAGIC) + _U32.size + 2 * _U64.size:
            raise GGUFFormatError(f"the file is only {file_size} bytes, shorter than a GGUF header")
        with mmap.mmap(handle.fileno(), min(file_size, MAX_METADATA_BYTES), access=mmap.ACCESS_READ) as data:
            return _parse(_Cursor(data, file_size))


def _parse(cursor: _Cursor) -> GGUFMetadata:
    if cursor.data[:4] != GGUF_MAGIC:
        raise GGUFFormatError("it does not start with the GGUF magic bytes")
    cursor.pos = 4
    version = cursor.u32("version")
    if version not in SUPPORTED_VERSIONS:
        raise GGUFFormatError(f"GGUF version {version} is not supported (only versions 2 and 3)")
    n_tensors = cursor.u64("tensor count")
    n_kv = cursor.count("key/value count", _MIN_KV_BYTES)
    values: dict[str, Scalar] = {}
    keys: set[str] = set()
    for _ in range(n_kv):
        start = cursor.pos
        key = cursor.string("key")
        value = cursor.value(cursor.value_type("value type"))
        if key in keys:
            raise GGUFFormatError(f"duplicate key at byte {start:,}")
        keys.add(key)
        if value is not None:
            values[key] = value
    cursor.check_count(n_tensors, _MIN_TENSOR_INFO_BYTES, "tensor count")
    infos = [_tensor_info(cursor) for _ in range(n_tensors)]
    header_size = _align(cursor.pos, _alignment(values))
    _check_tensor_data(infos, cursor.file_size - header_size)
    return GGUFMetadata(values, tuple(info for info, _ in infos))


def _tensor_info(cursor: _Cursor) -> tuple[TensorInfo, int]:
    """One tensor info entry: (shape and type, data offset)."""
    cursor.skip_string("tensor name")
    n_dims = cursor.u32("tensor dimension count")
    if n_dims > MAX_TENSOR_DIMS:
        raise GGUFFormatError(f"a tensor at byte {cursor.pos - 4:,} declares {n_dims:,} dimensions "
                              f"(at most {MAX_TENSOR_DIMS})")
    shape = tuple(cursor.u64("tensor dimension") for _ in range(n_dims))
    raw_type = cursor.u32("tensor type")
    try:
        ggml_type = GGMLQuantizationType(raw_type)
    except ValueError:
        raise GGUFFormatError(f"a tensor at byte {cursor.pos - 4:,} has the unknown type {raw_type}") from None
    return TensorInfo(shape, ggml_type), cursor.u64("tensor data offset")


def _alignment(values: dict[str, Scalar]) -> int:
    alignment = values.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
        raise GGUFFormatError(f"general.alignment {alignment!r} is not a power of two")
    return alignment


def _align(offset: int, alignment: int) -> int:
    return -(-offset // alignment) * alignment


def _check_tensor_data(infos: list[tuple[TensorInfo, int]], data_size: int) -> None:
    """Raise unless every tensor's declared data lies inside the file."""
    for index, (info, offset) in enumerate(infos):
        block_size, type_size = GGML_QUANT_SIZES[info.ggml_type]
        if info.shape and info.shape[0] % block_size:
            raise GGUFFormatError(f"tensor #{index}'s row of {info.shape[0]:,} elements is not a whole number "
                                  f"of {info.ggml_type.name} blocks")
        n_bytes = info.n_elements // block_size * type_size
        if offset + n_bytes > data_size:
            raise GGUFFormatError(f"tensor #{index} declares {n_bytes:,} bytes of data at offset {offset:,} "
                                  f"but the file holds only {max(data_size, 0):,} bytes of tensor data "
                                  "(truncated or damaged file)")


_BEYOND_C0 = r"\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069"  # DEL, C1, bidirectional controls
_UNPRINTABLE = re.compile(rf"[\x00-\x1f{_BEYOND_C0}]")
_LEFT_RAW_BY_JSON = re.compile(f"[{_BEYOND_C0}]")  # json.dumps escapes C0 itself


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with control characters (C0, DEL, C1, bidi overrides) as visible escapes like ``\\x1b``.

    Metadata printed on a terminal can then never move the cursor, recolour or retitle it.
    """
    return _UNPRINTABLE.sub(_escape, text)


def terminal_safe(text: str) -> str:
    """Text of several lines for the terminal: each line :func:`printable`, the line breaks kept."""
    return "\n".join(printable(line) for line in text.split("\n"))


def printable_json(text: str) -> str:
    """The output of ``json.dumps(..., ensure_ascii=False)`` with the controls it leaves raw as ``\\uXXXX``."""
    return _LEFT_RAW_BY_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def terminal_json(value: object, indent: int) -> str:
    """``value`` as indented JSON for the terminal: non-ASCII kept, values JSON cannot hold as text
    (``default=str``), no raw control character left (:func:`printable_json`)."""
    return printable_json(json.dumps(value, ensure_ascii=False, indent=indent, default=str))
