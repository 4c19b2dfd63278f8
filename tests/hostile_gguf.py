"""Crafted GGUF files for the hostile-model tests, written byte by byte (no GGUF library involved).

``write_gguf`` writes a small, well-formed GGUF (one F32 tensor) with chosen metadata;
``declared_array_gguf`` a tiny header that declares a huge array it does not contain;
``hostile_copy_of`` a llama.cpp-loadable copy of a real model with some metadata replaced.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import gguf
from gguf import GGUFValueType

Value = str | int | bool | float
TINY_ARCH = "llama"

# Keyword -> GGUF key ("{arch}" is filled with the model's architecture).
OVERRIDE_KEYS = {
    "name": "general.name",
    "size_label": "general.size_label",
    "context_length": "{arch}.context_length",
    "chat_template": "tokenizer.chat_template",
}


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return u64(len(raw)) + raw


def header(n_tensors: int, n_kv: int, version: int = 3) -> bytes:
    return b"GGUF" + u32(version) + u64(n_tensors) + u64(n_kv)


def kv(key: str, value: Value) -> bytes:
    """One key/value, typed from the Python value (int: UINT32 when it fits, else UINT64)."""
    if isinstance(value, bool):
        body = u32(GGUFValueType.BOOL) + struct.pack("<?", value)
    elif isinstance(value, int):
        body = u32(GGUFValueType.UINT32) + u32(value) if value < 2**32 else u32(GGUFValueType.UINT64) + u64(value)
    elif isinstance(value, float):
        body = u32(GGUFValueType.FLOAT32) + struct.pack("<f", value)
    else:
        body = u32(GGUFValueType.STRING) + gguf_string(value)
    return gguf_string(key) + body


def string_array_kv(key: str, items: list[str]) -> bytes:
    return (gguf_string(key) + u32(GGUFValueType.ARRAY) + u32(GGUFValueType.STRING) + u64(len(items))
            + b"".join(gguf_string(item) for item in items))


def declared_array_gguf(count: int, element: GGUFValueType = GGUFValueType.STRING) -> bytes:
    """A header of under 100 bytes whose only key declares an array of ``count`` elements, none present."""
    return (header(0, 1) + gguf_string("tokenizer.ggml.tokens") + u32(GGUFValueType.ARRAY)
            + u32(element) + u64(count))


def write_gguf(path: Path, *, name: str = "tiny test model", architecture: str = TINY_ARCH,
               context_length: Value = 4096, chat_template: str | None = None, array_len: int = 0,
               file_type: int | None = None, extra: tuple[bytes, ...] = ()) -> Path:
    """Write a small well-formed GGUF: this metadata, ``array_len`` vocabulary strings, one 8x32 F32 tensor.

    ``extra`` adds raw key/values (see :func:`kv`); llama.cpp cannot run it (one tensor, no vocabulary).
    """
    pairs = [kv("general.architecture", architecture), kv("general.name", name),
             kv(f"{architecture}.context_length", context_length), *extra]
    if chat_template is not None:
        pairs.append(kv("tokenizer.chat_template", chat_template))
    if file_type is not None:
        pairs.append(kv("general.file_type", file_type))
    if array_len:
        pairs.append(string_array_kv("tokenizer.ggml.tokens", [f"t{i}" for i in range(array_len)]))
    tensor_info = gguf_string("weight") + u32(2) + u64(32) + u64(8) + u32(gguf.GGMLQuantizationType.F32) + u64(0)
    head = header(1, len(pairs)) + b"".join(pairs) + tensor_info
    padding = b"\0" * (-len(head) % gguf.GGUF_DEFAULT_ALIGNMENT)
    path.write_bytes(head + padding + struct.pack("<256f", *range(256)))
    return path


def hostile_copy_of(demo_path: Path, out_path: Path, **overrides: Value) -> Path:
    """A copy of the (trusted) GGUF at ``demo_path`` with metadata replaced; llama.cpp can still load it.

    ``overrides`` use the keywords of :data:`OVERRIDE_KEYS` (e.g. ``name="<img src=...>"``); the
    key/values are re-encoded, the tensor infos and tensor data are copied byte for byte.
    """
    reader = gguf.GGUFReader(demo_path, "r")
    arch = reader.fields["general.architecture"].contents()
    replace = {OVERRIDE_KEYS[keyword].format(arch=arch): value for keyword, value in overrides.items()}
    with demo_path.open("rb") as source:
        def span(field: gguf.ReaderField) -> bytes:
            source.seek(field.offset)
            return source.read(sum(int(part.nbytes) for part in field.parts))

        fields = [f for name, f in reader.fields.items() if not name.startswith("GGUF.")]
        pairs = [kv(f.name, replace.pop(f.name)) if f.name in replace else span(f) for f in fields]
        pairs += [kv(key, value) for key, value in replace.items()]
        tensor_infos = b"".join(span(t.field) for t in reader.tensors)
        head = header(len(reader.tensors), len(pairs)) + b"".join(pairs) + tensor_infos
        with out_path.open("wb") as out:
            out.write(head + b"\0" * (-len(head) % gguf.GGUF_DEFAULT_ALIGNMENT))
            source.seek(reader.data_offset)
            shutil.copyfileobj(source, out, 16 * 2**20)
    return out_path
