"""The model card: what a GGUF file is, read from its own metadata, plus its size and sha256."""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gguf

from app.demo_model import DEMO_SHA256
from app.errors import UserError
from app.hashing import HashProgress, cached_sha256

GGUF_MAGIC = b"GGUF"


class ModelFileError(UserError, ValueError):
    """The path is missing, unreadable or not a GGUF model."""


@dataclass(frozen=True)
class ModelCard:
    """Facts about one GGUF model file, shown next to every answer it produces."""

    path: str
    file_name: str
    file_size: int
    sha256: str
    architecture: str
    name: str
    size_label: str
    quantization: str
    context_length: int
    parameters: int
    chat_template: str | None

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]

    @property
    def is_demo(self) -> bool:
        """The embedded demo model: too small for clinical use, and labelled as such."""
        return self.sha256 == DEMO_SHA256

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["chat_template"] = "present" if self.chat_template else "absent (plain prompt format used)"
        data["short_hash"] = self.short_hash
        data["is_demo"] = self.is_demo
        return data


def check_gguf_file(path: Path) -> Path:
    """Raise a clear :class:`ModelFileError` unless ``path`` is an existing GGUF file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelFileError(f"Model file not found: {path}")
    if not path.is_file():
        raise ModelFileError(f"Not a file: {path}")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelFileError(f"Cannot read model file {path}: {exc}") from exc
    if magic != GGUF_MAGIC:
        raise ModelFileError(
            f"{path.name} is not a GGUF model (it does not start with the GGUF magic bytes). "
            "Convert the model to GGUF first, e.g. with `jmedllm convert build`."
        )
    return path


def _field_value(reader: gguf.GGUFReader, key: str) -> Any:
    field = reader.get_field(key)
    if field is None:
        return None
    return field.contents()


def _quantization_name(reader: gguf.GGUFReader) -> str:
    file_type = _field_value(reader, "general.file_type")
    if file_type is not None:
        try:
            return gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
        except ValueError:
            return f"file type {file_type}"
    counts = collections.Counter(t.tensor_type.name for t in reader.tensors if len(t.shape) > 1)
    return counts.most_common(1)[0][0] if counts else "unknown"


def read_model_card(path: Path, on_hash_progress: HashProgress | None = None) -> ModelCard:
    """Read a :class:`ModelCard` from a GGUF file (metadata only; tensors are memory-mapped)."""
    path = check_gguf_file(path)
    try:
        reader = gguf.GGUFReader(path, "r")
    except Exception as exc:  # gguf raises ValueError/struct errors on damaged files
        raise ModelFileError(f"{path.name} is not a readable GGUF file: {exc}") from exc
    arch = str(_field_value(reader, "general.architecture") or "unknown")
    parameters = sum(int(t.n_elements) for t in reader.tensors)
    return ModelCard(
        path=str(path.resolve()),
        file_name=path.name,
        file_size=path.stat().st_size,
        sha256=cached_sha256(path, on_hash_progress),
        architecture=arch,
        name=str(_field_value(reader, "general.name") or path.stem),
        size_label=str(_field_value(reader, "general.size_label") or ""),
        quantization=_quantization_name(reader),
        context_length=int(_field_value(reader, f"{arch}.context_length") or 0),
        parameters=parameters,
        chat_template=_field_value(reader, "tokenizer.chat_template"),
    )
