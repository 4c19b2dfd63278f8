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
    path = Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Directory for SQLite databases and settings (``JMEDLLM_DATA_DIR`` overrides)."""
    override = os.environ.get("JMEDLLM_DATA_DIR")
    path = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Folder scanned for GGUF files in the UI's model picker (``JMEDLLM_MODELS_DIR`` overrides)."""
    override = os.environ.get("JMEDLLM_MODELS_DIR")
    path = Path(override) if override else data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
