"""The model card: what a GGUF file is, read from its own metadata, plus its size and sha256.

It carries the licence the file declares and any statement in its metadata that restricts its use
("not for medical use", "research only", 医療目的での使用不可 ...), so every face can show them.
"""

from __future__ import annotations

import collections
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gguf

from app.demo_model import DEMO_SHA256
from app.errors import UserError
from app.gguf_metadata import GGUF_MAGIC, GGUFFormatError, GGUFMetadata, read_gguf_metadata
from app.hashing import HashProgress, cached_sha256


class ModelFileError(UserError, ValueError):
    """The path is missing, unreadable or not a GGUF model."""


def short_hash(sha256: str) -> str:
    """The first 12 hex digits of a model's sha256, as every model stamp shows it."""
    return sha256[:12]


def is_demo_hash(sha256: str) -> bool:
    """Whether a model's sha256 is the embedded demo model's."""
    return sha256 == DEMO_SHA256


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
    endpoint: str | None = None  # the server's URL, for a model served elsewhere (the openai engine)
    license: str = ""  # general.license, .license.name and .license.link, joined with " · "
    usage_warning: str = ""  # the metadata's sentences that restrict its use, joined with " / "

    @property
    def short_hash(self) -> str:
        return short_hash(self.sha256)

    @property
    def is_demo(self) -> bool:
        """The embedded demo model: too small for clinical use, and labelled as such."""
        return is_demo_hash(self.sha256)

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["chat_template"] = "present" if self.chat_template else "absent (plain prompt format used)"
        data["license"] = self.license or "not stated in the file"
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


MAX_CONTEXT_LENGTH = 2**31 - 1  # llama.cpp keeps the trained context length in an int32
MAX_SHOWN_CHARS = 200  # name, size label and architecture are cut to this on the card


def _text(metadata: GGUFMetadata, key: str) -> str:
    value = metadata.values.get(key)
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "…"


def quantization_name(metadata: GGUFMetadata) -> str:
    file_type = metadata.values.get("general.file_type")
    if file_type is not None:
        try:
            return gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
        except (ValueError, OverflowError):  # not a known file type, or not a whole number
            return f"file type {str(file_type)[:MAX_SHOWN_CHARS]}"
    counts = collections.Counter(t.ggml_type.name for t in metadata.tensors if len(t.shape) > 1)
    return counts.most_common(1)[0][0] if counts else "unknown"


def _context_length(metadata: GGUFMetadata, arch: str, path: Path) -> int:
    """The trained context length; a value llama.cpp cannot hold is refused here, at load."""
    value = metadata.values.get(f"{arch}.context_length", 0)
    if type(value) is not int or not 0 <= value <= MAX_CONTEXT_LENGTH:
        declared = f"{value:,} tokens" if type(value) is int else f"a {type(value).__name__}, not a whole number"
        raise ModelFileError(
            f"{path.name} declares a context length of {declared}; llama.cpp accepts whole numbers "
            f"up to {MAX_CONTEXT_LENGTH:,}. The file is damaged or was built wrongly."
        )
    return value


LICENSE_KEYS = ("general.license", "general.license.name", "general.license.link")
MAX_WARNING_SENTENCES = 3
# Statements that a model is not for medical use, in English and Japanese; matched case-insensitively.
USAGE_WARNING = re.compile("|".join((
    r"\bnot\s+(?:\w+\s+){0,3}(?:for|in)\s+(?:\w+\s+){0,2}(?:medical|clinical|diagnos\w*)",
    r"\bresearch\s+(?:purposes?\s+|use\s+)?only\b",
    r"\bunder\s+(?:active\s+)?development\b",
    r"医療目的", r"医療用途", r"臨床(?:使用|利用|での使用|目的)", r"診断(?:目的|には使用)", r"研究目的", r"開発中",
)), re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|[。！？\n]+")


def _license(metadata: GGUFMetadata) -> str:
    parts = (_text(metadata, key).strip() for key in LICENSE_KEYS)
    return " · ".join(dict.fromkeys(part for part in parts if part))


def _usage_warning(metadata: GGUFMetadata) -> str:
    """The sentences of the metadata's strings (the tokenizer's left out) that restrict the model's use."""
    found: dict[str, None] = {}
    for key, value in metadata.values.items():
        if not isinstance(value, str) or key.startswith("tokenizer.") or not USAGE_WARNING.search(value):
            continue
        for sentence in _SENTENCE_END.split(value):
            if match := USAGE_WARNING.search(sentence):
                found[_clip_around(sentence.strip(), match.group())] = None
    return " / ".join(list(found)[:MAX_WARNING_SENTENCES])


def _clip_around(sentence: str, phrase: str) -> str:
    """``sentence`` cut to :data:`MAX_SHOWN_CHARS`, keeping ``phrase`` (which it holds) in view."""
    if len(sentence) <= MAX_SHOWN_CHARS:
        return sentence
    start = max(0, min(sentence.find(phrase) - MAX_SHOWN_CHARS // 4, len(sentence) - MAX_SHOWN_CHARS))
    clipped = sentence[start:start + MAX_SHOWN_CHARS]
    return ("…" if start else "") + clipped + ("…" if start + MAX_SHOWN_CHARS < len(sentence) else "")


def read_model_card(path: Path, on_hash_progress: HashProgress | None = None) -> ModelCard:
    """Read a :class:`ModelCard` from a GGUF file's metadata, within the limits of :mod:`app.gguf_metadata`."""
    path = check_gguf_file(path)
    try:
        metadata = read_gguf_metadata(path)
    except GGUFFormatError as exc:
        raise ModelFileError(f"{path.name} is not a readable GGUF file: {exc}") from exc
    except OSError as exc:
        raise ModelFileError(f"Cannot read model file {path}: {exc}") from exc
    arch = _text(metadata, "general.architecture") or "unknown"
    context_length = _context_length(metadata, arch, path)  # before hashing: a bad file fails fast
    chat_template = metadata.values.get("tokenizer.chat_template")
    return ModelCard(
        path=str(path.resolve()),
        file_name=path.name,
        file_size=path.stat().st_size,
        sha256=cached_sha256(path, on_hash_progress),
        architecture=arch,
        name=_text(metadata, "general.name") or path.stem,
        size_label=_text(metadata, "general.size_label"),
        quantization=quantization_name(metadata),
        context_length=context_length,
        parameters=sum(t.n_elements for t in metadata.tensors),
        chat_template=chat_template if isinstance(chat_template, str) else None,
        license=_license(metadata),
        usage_warning=_usage_warning(metadata),
    )
