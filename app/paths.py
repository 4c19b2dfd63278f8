"""Where the app keeps its files: user cache (models), user data (databases), bundled assets."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "jmedllm"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = PROJECT_ROOT / "assets"


def cache_dir() -> Path:
    """Directory for assembled models and hash caches (``JMEDLLM_CACHE_DIR`` overrides)."""
    override = os.environ.get("JMEDLLM_CACHE_DIR")
    return private_dir(Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME)),
                       tighten=not override)


def data_dir() -> Path:
    """Directory for SQLite databases and settings (``JMEDLLM_DATA_DIR`` overrides)."""
    override = os.environ.get("JMEDLLM_DATA_DIR")
    return private_dir(Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME)),
                       tighten=not override)


def models_dir() -> Path:
    """Folder scanned for GGUF files in the UI's model picker (``JMEDLLM_MODELS_DIR`` overrides)."""
    override = os.environ.get("JMEDLLM_MODELS_DIR")
    return private_dir(Path(override) if override else data_dir() / "models", tighten=not override)


def private_dir(path: Path, tighten: bool = False) -> Path:
    """``path``, created if missing as a folder only its owner can open (0700).

    An existing folder keeps its mode unless ``tighten`` (the app's own default folders, which
    older releases created 0755): then group and others lose their access.
    """
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    elif tighten and path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path
