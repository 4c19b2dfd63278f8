"""IgakuQA's own layout (github.com/jungokasai/IgakuQA): ``data/YEAR/NNN-X.jsonl`` and its
``_translate`` and ``_metadata`` files (read by :func:`app.bench.data.load_igakuqa`)."""

from __future__ import annotations

import re
from pathlib import Path

from app.bench.data import Dataset, load_igakuqa
from app.bench.loaders import loader

_BLOCK_FILE = re.compile(r"^\d{3}-[A-F]\.jsonl$")


def _is_clone(folder: Path) -> bool:
    data = folder / "data"
    return data.is_dir() and any(_BLOCK_FILE.match(p.name) for p in data.glob("*/*.jsonl"))


def find_igakuqa(path: Path) -> list[Path]:
    """The clone at ``path``, one folder down (GitHub's zip wraps it in ``IgakuQA-main/``), or the
    clone whose ``data`` folder ``path`` is."""
    if not path.is_dir():
        return []
    if _is_clone(path):
        return [path]
    if path.name == "data" and _is_clone(path.parent):
        return [path.parent]
    return sorted(child for child in path.iterdir() if child.is_dir() and _is_clone(child))


@loader("igakuqa", "IgakuQA (data/YEAR/NNN-X.jsonl with _translate and _metadata)", find_igakuqa)
def read_igakuqa(path: Path) -> Dataset:
    return load_igakuqa(path)
