"""Resolving what the user names as a model ("demo", a path, or nothing) to a GGUF file.

The console (CLI) may name any path; the UI names a model only by its file name in the models
folder (:func:`resolve_model_name`), so nothing uploaded or elsewhere on disk can be loaded from it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from app.demo_model import DEMO_ALIAS, ensure_demo_model
from app.errors import UserError
from app.model_card import check_gguf_file
from app.paths import models_dir

MODEL_ENV = "JMEDLLM_MODEL"
MODEL_SUFFIX = ".gguf"


class ModelNameError(UserError, ValueError):
    """A model named in the UI that is not ``demo`` or a GGUF file of the models folder."""


def resolve_model(spec: str | Path | None, progress: bool = True) -> Path:
    """The GGUF for ``spec``: ``demo`` (the default) or a path, absolute or in the models folder, where
    ``.gguf`` may be left off (``jmedllm model import`` names a model NAME.gguf)."""
    spec = str(spec) if spec else os.environ.get(MODEL_ENV, DEMO_ALIAS)
    if spec == DEMO_ALIAS:
        return ensure_demo_model(progress=progress)
    return check_gguf_file(find_model_file(spec))


def find_model_file(spec: str) -> Path:
    """The path ``spec`` names: as given when it exists or is absolute, else in the models folder, where
    ``.gguf`` may be left off; the path as given when none exists. Nothing is checked or created."""
    path = Path(spec).expanduser()
    if not path.exists() and not path.is_absolute():
        folder = models_dir(create=False)
        found = (p for p in (folder / path, folder / f"{spec}{MODEL_SUFFIX}") if p.exists())
        path = next(found, path)
    return path


def _in_models_folder(name: str) -> Path | None:
    """``models folder / name`` when ``name`` is a plain ``.gguf`` file name whose file, symlinks
    followed, is a regular file inside the models folder; otherwise ``None``."""
    if not name.endswith(MODEL_SUFFIX) or Path(name).name != name or "\\" in name or name.startswith("."):
        return None
    folder = models_dir(create=False).resolve()
    try:
        target = (folder / name).resolve(strict=True)
        regular = stat.S_ISREG(target.stat().st_mode)
    except (OSError, RuntimeError, ValueError):  # missing, unreadable, a symlink loop, a NUL byte
        return None
    return folder / name if regular and target.is_relative_to(folder) else None


def resolve_model_name(name: str) -> Path:
    """The GGUF the UI names: ``demo`` or the file name of a GGUF directly in the models folder.

    Paths (absolute or with a folder), ``..``, symlinks leading outside the folder, names not
    ending in ``.gguf`` and anything that is not a regular file are refused.
    """
    if name == DEMO_ALIAS:
        return ensure_demo_model(progress=False)
    path = _in_models_folder(name)
    if path is None:
        shown = name if len(name) <= 120 else name[:120] + "…"
        raise ModelNameError(
            f"{shown!r} is not a GGUF file name in the models folder ({models_dir(create=False)}). "
            "Models are loaded by name only: copy the .gguf file into that folder and pick it from the list."
        )
    return check_gguf_file(path)


def list_models() -> list[Path]:
    """GGUF files in the models folder that :func:`resolve_model_name` accepts, for the UI's picker."""
    found = (_in_models_folder(p.name) for p in models_dir(create=False).glob(f"*{MODEL_SUFFIX}"))
    return sorted(p for p in found if p is not None)
