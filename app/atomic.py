"""Atomic file writes: write to a temporary sibling, then rename over the target."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from app.paths import private_dir


@contextlib.contextmanager
def atomic_path(target: Path, private: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path that is renamed to ``target`` only if the block succeeds.

    Whatever writes the path (this module or another library), the result gets the permissions
    of a normally created file (``0o666`` less the umask), or with ``private`` 0600 in a folder
    created 0700 (never readable by others, not even for a moment). On any exception,
    KeyboardInterrupt included, the temporary file is removed, so nothing half-written is left
    under the target's name or beside it.
    """
    target = Path(target)
    if private:
        private_dir(target.parent)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)  # 0600
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if not private:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_writer(target: Path, private: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file, flushed and fsynced, that replaces ``target`` only if the block succeeds
    (``private``: see :func:`atomic_path`)."""
    with atomic_path(target, private) as tmp, tmp.open("wb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` atomically as UTF-8 JSON, indented by 2, non-ASCII kept as is, no trailing newline."""
    with atomic_writer(Path(path)) as handle:
        handle.write(json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8"))
