"""Free disk space and byte sizes as people read them: one place for every check before a big write."""

from __future__ import annotations

import shutil
from pathlib import Path


def free_bytes(folder: Path) -> int:
    """Free bytes on the file system that holds ``folder`` (or, before it exists, its nearest existing parent)."""
    probe = Path(folder)
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def size_text(n_bytes: int) -> str:
    """``n_bytes`` as "1.2 GiB" (from 1 GiB) or "345.6 MiB"."""
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MiB"
