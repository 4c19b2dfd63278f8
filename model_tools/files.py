"""Output safety: atomic folders for files written by other libraries, disk checks.

Single files are written through :func:`app.atomic.atomic_path`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from app.disk import free_bytes, size_text
from model_tools.checkpoint import ConvertError


def check_new_folder(target: Path) -> None:
    """Refuse ``target`` as a new output folder unless it is absent or empty, in a folder that exists
    (a mistyped path is not created)."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ConvertError(f"output folder {target} is a file")
    if target.exists() and any(target.iterdir()):
        raise ConvertError(f"output folder {target} exists and is not empty")
    if not target.parent.is_dir():
        raise ConvertError(f"cannot create output folder {target}: the folder {target.parent} does not exist")


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder that replaces ``target`` only if the block succeeds
    (``target`` checked first: :func:`check_new_folder`)."""
    target = Path(target)
    check_new_folder(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def require_free_space(folder: Path, needed: int) -> None:
    """Refuse to start when ``folder``'s file system has less than ``needed`` bytes free."""
    free = free_bytes(folder)
    if free < needed:
        raise ConvertError(
            f"not enough free disk space in {folder}: need about {size_text(needed)}, {size_text(free)} free"
        )
