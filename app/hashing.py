"""sha256 of model files, computed once and cached by path, modification time and size."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from app.paths import cache_dir

_CHUNK = 8 * 1024 * 1024
_LOCK = threading.Lock()


HashProgress = Callable[[int, int], None]  # (bytes done, bytes total)


def sha256_file(path: Path, on_progress: HashProgress | None = None) -> str:
    """Hex sha256 of a file, read in chunks, reporting progress if asked."""
    digest = hashlib.sha256()
    total = Path(path).stat().st_size
    done = 0
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, total)
    return digest.hexdigest()


def _cache_file() -> Path:
    return cache_dir() / "sha256-cache.json"


def _key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_mtime_ns}|{stat.st_size}"


def cached_sha256(path: Path, on_progress: HashProgress | None = None) -> str:
    """sha256 of ``path``, reused while the file's path, mtime and size are unchanged."""
    path = Path(path)
    key = _key(path)
    with _LOCK:
        cache_path = _cache_file()
        try:
            cache = json.loads(cache_path.read_text())
        except (OSError, ValueError):
            cache = {}
        if key in cache:
            return cache[key]
        digest = sha256_file(path, on_progress)
        cache = {k: v for k, v in cache.items() if Path(k.split("|")[0]).exists()}
        cache[key] = digest
        tmp = cache_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, cache_path)
        return digest
