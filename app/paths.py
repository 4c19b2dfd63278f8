"""Where the app keeps its files: user cache (models), user data (databases), bundled assets."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import platformdirs

APP_NAME = "jmedllm"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = Path(__file__).resolve().parent / "assets"  # the app's data (prompts), shipped in its wheel


def cache_dir(create: bool = True) -> Path:
    """Directory for assembled models and hash caches (``JMEDLLM_CACHE_DIR`` overrides); ``create``:
    made (0700) if missing, else only named (for checks that must change nothing)."""
    return _app_dir("JMEDLLM_CACHE_DIR", lambda: Path(platformdirs.user_cache_dir(APP_NAME)), create)


def data_dir(create: bool = True) -> Path:
    """Directory for SQLite databases and settings (``JMEDLLM_DATA_DIR`` overrides)."""
    return _app_dir("JMEDLLM_DATA_DIR", lambda: Path(platformdirs.user_data_dir(APP_NAME)), create)


def models_dir(create: bool = True) -> Path:
    """Folder scanned for GGUF files in the UI's model picker (``JMEDLLM_MODELS_DIR`` overrides)."""
    return _app_dir("JMEDLLM_MODELS_DIR", lambda: data_dir(create) / "models", create)


def _app_dir(variable: str, default: Callable[[], Path], create: bool) -> Path:
    override = os.environ.get(variable)
    path = Path(override) if override else default()
    return private_dir(path, tighten=not override) if create else path


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
