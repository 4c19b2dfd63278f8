"""Which question set a run, a report or the Benchmark tab means: a name or a path -> a :class:`Dataset`.

- ``None`` or ``"igakuqa"``: IgakuQA from ``$JMEDLLM_IGAKUQA_DIR`` or the ``igakuqa_dir`` setting
  when one is set, else the imported copy (``bench data add``), else ``../shared/igakuqa``.
- the name of an imported set (``jmedllm bench data list``).
- a path: a clone, a folder or a file in any known layout (``app.bench.loaders``).
"""

from __future__ import annotations

import os
from pathlib import Path

from app.bench import library
from app.bench.data import DATA_ENV, DataError, Dataset, configured_igakuqa_dir, load_igakuqa
from app.bench.loaders import load_path

DEFAULT_SET = "igakuqa"


def load_dataset(ref: str | Path | None = None) -> Dataset:
    """The question set ``ref`` names (see the module docstring); a :class:`DataError` says how to get it."""
    if ref in (None, "", DEFAULT_SET):
        if os.environ.get(DATA_ENV) or configured_igakuqa_dir():
            return load_igakuqa(None)
        entry = library.find(DEFAULT_SET)
        return library.open_entry(entry) if entry is not None else load_igakuqa(None)
    entry = library.find(str(ref))
    if entry is not None:
        return library.open_entry(entry)
    path = Path(str(ref)).expanduser()
    if path.exists():
        return load_path(path)
    known = ", ".join(e.name for e in library.entries()) or "none yet"
    raise DataError(f"No question set {ref!r}: not an imported set (imported: {known}) and no such file or "
                    "folder. Import one with: jmedllm bench data add PATH")
