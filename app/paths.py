"""Where the app keeps its files: user cache (models), user data (databases), bundled assets."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import platformdirs

from app.errors import UserError

APP_NAME = "jmedllm"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = Path(__file__).resolve().parent / "assets"  # the app's data (prompts), shipped in its wheel
# Failures whose cause the user can fix, in plain words (a file in the way is found by _blocker).
_REASONS = {errno.EACCES: "you have no permission to create or change it",
            errno.EPERM: "you have no permission to create or change it",
            errno.EROFS: "its disk is read-only", errno.ENOSPC: "its disk is full"}


class FolderError(UserError, OSError):
    """One of the app's folders cannot be made or used; the message names it, says why, and what to do.

    Also the :class:`OSError` behind it (its ``errno``, ``strerror`` and ``filename``), so callers that
    handle an unusable folder as an OS failure (a best-effort cache) still do.
    """

    def __init__(self, message: str, cause: OSError) -> None:
        super().__init__(message)
        self.errno, self.strerror, self.filename = cause.errno, cause.strerror, cause.filename

    def __str__(self) -> str:
        return str(self.args[0])


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
    return private_dir(path, tighten=not override, chosen_by=variable if override else None) if create else path


def private_dir(path: Path, tighten: bool = False, chosen_by: str | None = None) -> Path:
    """``path``, created if missing as a folder only its owner can open (0700).

    An existing folder keeps its mode unless ``tighten`` (the app's own default folders, which
    older releases created 0755): then group and others lose their access. A folder that cannot be
    made or used raises :class:`FolderError`, naming ``chosen_by`` (the environment variable that
    chose the folder, if one did) as the way to choose another.
    """
    try:
        if not path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o700)
        elif tighten and path.stat().st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError as exc:
        blocker = _blocker(path)
        why = ("it is a file, not a folder" if blocker == path else f"a file is in the way ({blocker})" if blocker
               else _REASONS.get(exc.errno or 0) or exc.strerror or str(exc))
        advice = (f" This folder comes from ${chosen_by}: set it to a folder you can use, or unset it for the default."
                  if chosen_by else "")
        raise FolderError(f"Cannot use the folder {path}: {why}.{advice}", exc) from exc
    return path


def _blocker(path: Path) -> Path | None:
    """The file (not a folder, nor a link to one) at ``path`` or at one of its parents, if there is one."""
    return next((p for p in (path, *path.parents) if os.path.lexists(p) and not os.path.isdir(p)), None)
