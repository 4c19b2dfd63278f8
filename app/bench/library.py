"""Imported question sets: copies in the user data folder, each with a manifest.

``benchmarks/NAME/manifest.json`` says what an import holds (layout, fingerprint, counts, where it
came from, when); ``benchmarks/NAME/files/`` holds the copied files, read again by the layout's
loader on every use, so a changed file is noticed (its fingerprint changes). Importing is
:mod:`app.bench.importing`; this module only reads.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from app.bench.data import DataError, Dataset
from app.bench.loaders import load_path
from app.paths import data_dir, private_dir

MANIFEST = "manifest.json"
FILES = "files"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Entry:
    """One imported set, as its manifest records it."""

    name: str
    label: str
    layout: str
    set_path: str  # inside files/, what the layout's loader reads
    fingerprint: str
    questions: int
    languages: tuple[str, ...]
    source: str  # the file or folder it was imported from
    added_at: str

    @property
    def folder(self) -> Path:
        return library_dir() / self.name

    @property
    def path(self) -> Path:
        return self.folder / FILES / self.set_path

    def as_dict(self) -> dict:
        return asdict(self)


def library_dir() -> Path:
    """Where imported sets live (created 0700 on first use)."""
    return private_dir(data_dir() / "benchmarks")


def _read(folder: Path) -> Entry | None:
    try:
        raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return Entry(**{**raw, "languages": tuple(raw["languages"])})
    except (OSError, ValueError, TypeError, KeyError):
        return None  # an import that never finished, or a foreign folder: not a set


def entries() -> list[Entry]:
    """The imported sets, by name."""
    root = library_dir()
    found = (_read(folder) for folder in sorted(root.iterdir()) if folder.is_dir())
    return [e for e in found if e is not None]


def find(name: str) -> Entry | None:
    """The imported set called ``name``, if any."""
    if not NAME_PATTERN.match(name):
        return None
    folder = library_dir() / name
    return _read(folder) if folder.is_dir() else None


def open_entry(entry: Entry) -> Dataset:
    """Read an imported set (validated again); named as imported (``--name``), which is the benchmark
    its runs record."""
    if not entry.path.exists():
        raise DataError(f"The imported set {entry.name} is damaged ({entry.path} is missing); remove it with "
                        f"jmedllm bench data remove {entry.name} and import it again")
    dataset = load_path(entry.path, entry.layout)
    dataset.root = entry.path
    dataset.name = entry.name
    return dataset
