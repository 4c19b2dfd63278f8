"""The base checkpoint's README.md (its Hugging Face model card), carried into the GGUF metadata.

llama.cpp's ``convert_hf_to_gguf.py`` reads the README's YAML front matter with gguf-py
(``Metadata.load`` then ``set_gguf_meta_model``) and writes what it names: ``general.license``,
``general.license.name``, ``general.license.link``, ``general.tags``, ``general.languages``,
``general.base_model.*``, ``general.dataset.*``, and author, version, organization, description,
finetune, basename, size label and URLs where the front matter gives them. We call the same gguf-py
functions on the front matter, so those keys and values are llama.cpp's, with two differences:

- ``general.name`` is ours (``--name``); llama.cpp falls back on config.json's ``_name_or_path``
  or the folder's name, and derives ``general.basename``/``general.size_label`` from them.
- llama.cpp never reads the README's body, where model cards say that a model is not for medical
  use (JMedLLM-v1-7B: "under development", "not for medical use"). The body's sentences that match
  :data:`app.model_card.USAGE_WARNING` are written to ``general.description``, after the front
  matter's description if it has one. Without such a sentence that key is exactly llama.cpp's.

Front-matter scalars YAML reads as numbers or dates (``version: 1.0``) are written as text, where
llama.cpp's writer would fail. The README is read as UTF-8 text, at most :data:`MAX_README_BYTES`,
and parsed with ``yaml.safe_load`` (through gguf-py): nothing in it is run.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import reprlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.model_card import USAGE_WARNING
from model_tools.checkpoint import ConvertError

if TYPE_CHECKING:
    import gguf

README = "README.md"
MAX_README_BYTES = 2**20
MAX_USAGE_SENTENCES = 5
MAX_SENTENCE_CHARS = 400
_TEXT_FIELDS = ("author", "version", "organization", "finetune", "basename", "description", "size_label",
                "source_url", "source_doi", "source_uuid", "source_repo_url", "license_name", "license_link")
_LIST_FIELDS = ("tags", "languages")
_ENTRY_FIELDS = ("base_models", "datasets")
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 60, 60
# front-matter keys gguf-py reads as lists of model or dataset ids
_ID_LIST_KEYS = ("base_model", "base_models", "base_model_sources", "datasets", "dataset", "dataset_sources")
_BLOCK_START = re.compile(r"^\s*(?:#{1,6}\s|[-*+>|]\s?|\d+[.)]\s)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])\s*")
# HTML tags, emphasis, code and link syntax; each scan stops at the next delimiter, so the time stays linear
_MARKUP = re.compile(r"<[^<>\n]*>|\*\*|__|`|\[(?=[^\[\]\n]*\]\([^()\n]*\))|\]\([^()\n]*\)")


def _text(value: Any) -> Any:
    """A YAML scalar read as a number, boolean or date as text (``version: 1.0`` -> ``"1.0"``)."""
    return str(value) if isinstance(value, (bool, int, float, datetime.date)) else value


def _plain(card: dict[str, Any], path: Path) -> dict[str, Any]:
    """The front matter with scalars as text, down to list entries and their mappings. Model and dataset
    lists must hold ids or flat mappings: gguf-py prints any other entry whole, and YAML aliases can make
    a small file a huge tree."""
    def entry(item: Any) -> Any:
        return {k: _text(v) for k, v in item.items()} if isinstance(item, dict) else _text(item)

    for key in _ID_LIST_KEYS:
        value = card.get(key)
        for item in value if isinstance(value, list) else []:
            if not isinstance(item, str | dict) or isinstance(item, dict) and any(
                    isinstance(v, list | dict) for v in item.values()):
                raise _refused(path, key, item)
    return {key: [entry(item) for item in value] if isinstance(value, list) else _text(value)
            for key, value in card.items()}


def _refused(path: Path, field: str, value: Any) -> ConvertError:
    return ConvertError(f"{path}: front matter field {field!r} must be text, not {_SHORT.repr(value)}; "
                        "fix the YAML at the top of the file, or move the file away to convert without it")


def _paragraphs(body: str) -> list[str]:
    """Markdown blocks as single lines: blank lines, headings, list items and quotes start a new one."""
    blocks: list[list[str]] = [[]]
    for line in body.splitlines():
        if not line.strip() or _BLOCK_START.match(line):
            blocks.append([])
        if line.strip():
            blocks[-1].append(line.strip())
    return [" ".join(block) for block in blocks if block]


def _clip(sentence: str, phrase: str) -> str:
    if len(sentence) <= MAX_SENTENCE_CHARS:
        return sentence
    start = max(0, min(sentence.find(phrase) - MAX_SENTENCE_CHARS // 4, len(sentence) - MAX_SENTENCE_CHARS))
    return ("…" if start else "") + sentence[start:start + MAX_SENTENCE_CHARS] + \
        ("…" if start + MAX_SENTENCE_CHARS < len(sentence) else "")


def usage_sentences(body: str) -> list[str]:
    """The body's sentences that restrict the model's use, Markdown and HTML markup removed, in order."""
    found: dict[str, None] = {}
    for paragraph in _paragraphs(body):
        for sentence in _SENTENCE_END.split(paragraph):
            text = re.sub(r"\s+", " ", _BLOCK_START.sub("", _MARKUP.sub("", sentence))).strip()
            if match := USAGE_WARNING.search(text):
                found[_clip(text, match.group())] = None
    return list(found)[:MAX_USAGE_SENTENCES]


def _body(text: str) -> str:
    """The README without its front matter (found as gguf-py finds it: ``---`` lines)."""
    lines = text.splitlines()
    if not lines or lines[0] != "---":
        return text
    end = next((i for i, line in enumerate(lines[1:], 1) if line == "---"), len(lines))
    return "\n".join(lines[end + 1:])


def _check(metadata: gguf.Metadata, path: Path) -> None:
    """Refuse front-matter values gguf-py would write wrongly or fail on (a mapping where text belongs)."""
    for field in _TEXT_FIELDS:
        value = getattr(metadata, field)
        if value is not None and not isinstance(value, str):
            raise _refused(path, field, value)
    license_value = metadata.license
    if license_value is not None and not (isinstance(license_value, str) or
                                          (isinstance(license_value, list) and
                                           all(isinstance(v, str) for v in license_value))):
        raise _refused(path, "license", license_value)
    for field in _LIST_FIELDS:
        values = getattr(metadata, field) or []
        if not all(isinstance(v, str) for v in values):
            raise _refused(path, field, values)
    for field in _ENTRY_FIELDS:
        for entry in getattr(metadata, field) or []:
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise _refused(path, field, entry)


def read_readme(folder: Path, total_params: int) -> gguf.Metadata | None:
    """gguf-py's metadata from ``folder``/README.md (front matter and usage sentences); None without one."""
    import gguf
    import yaml

    path = Path(folder) / README
    if not path.is_file():
        return None
    size = path.stat().st_size
    if size > MAX_README_BYTES:
        raise ConvertError(f"{path} is {size:,} bytes, over the {MAX_README_BYTES // 2**20} MiB a model card "
                           "may have; shorten it (keep the front matter and licence) or move it away")
    try:
        text = path.read_bytes().decode("utf-8")
        card = gguf.Metadata.load_model_card(Path(folder))
    except UnicodeDecodeError as exc:
        raise ConvertError(f"{path} is not UTF-8 text: {exc}") from exc
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConvertError(f"{path}: the front matter (between the '---' lines) is not valid YAML: {exc}") from exc
    metadata = gguf.Metadata.apply_metadata_heuristic(gguf.Metadata(), _plain(card, path), total_params=total_params)
    _check(metadata, path)
    sentences = [s for s in usage_sentences(_body(text)) if s not in (metadata.description or "")]
    if sentences:
        metadata.description = "\n\n".join(filter(None, [metadata.description, "\n".join(sentences)]))
    return metadata


def add_model_metadata(writer: gguf.GGUFWriter, readme: gguf.Metadata | None, name: str) -> None:
    """``general.name`` and what the README gave, in llama.cpp's order (``set_gguf_meta_model``)."""
    import gguf

    metadata = dataclasses.replace(readme, name=name) if readme else gguf.Metadata(name=name)
    metadata.set_gguf_meta_model(writer)
