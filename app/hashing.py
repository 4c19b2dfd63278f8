"""sha256 of model files, computed once and cached by path, modification time and size.

The cache file (0600) is keyed by a sha256 of those three, so it does not list the model paths;
it keeps the newest ``_MAX_ENTRIES`` entries. It only saves time: where the cache folder cannot be
made or written (read-only, full), digests are computed each time and a warning is logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

from app.atomic import atomic_writer
from app.paths import cache_dir

_CHUNK = 8 * 1024 * 1024
_LOCK = threading.Lock()
_MAX_ENTRIES = 256
_HEX_KEY = re.compile(r"[0-9a-f]{64}")

log = logging.getLogger(__name__)


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
    return cache_dir(create=False) / "sha256-cache.json"


def _key(path: Path) -> str:
    """The cache key: a sha256 of the path, mtime and size, so the cache never lists the model paths."""
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{stat.st_mtime_ns}|{stat.st_size}".encode()).hexdigest()


def _read_cache(cache_path: Path) -> dict[str, str]:
    """The cached digests, minus entries in an older format (keys that held the path in clear)."""
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(cache, dict):
        return {}
    return {k: v for k, v in cache.items() if isinstance(v, str) and _HEX_KEY.fullmatch(k)}


def cached_sha256(path: Path, on_progress: HashProgress | None = None) -> str:
    """sha256 of ``path``, reused while the file's path, mtime and size are unchanged."""
    path = Path(path)
    key = _key(path)
    with _LOCK:
        cache_path = _cache_file()
        cache = _read_cache(cache_path)
        if key in cache:
            return cache[key]
        digest = sha256_file(path, on_progress)
        cache[key] = digest
        _write_cache(cache_path, cache)
        return digest


def remember_sha256(path: Path, digest: str) -> None:
    """Record ``digest`` as the sha256 of ``path`` as it is now: a file just written and hashed on the way,
    so :func:`cached_sha256` does not read it again."""
    path = Path(path)
    key = _key(path)
    with _LOCK:
        cache_path = _cache_file()
        cache = _read_cache(cache_path)
        cache.pop(key, None)  # re-inserted last: the newest entry
        cache[key] = digest
        _write_cache(cache_path, cache)


def _write_cache(cache_path: Path, cache: dict[str, str]) -> None:
    """Write the newest ``_MAX_ENTRIES`` entries of ``cache`` (0600), where the cache folder can be written."""
    try:
        cache_dir()  # made (0700) if missing
        with atomic_writer(cache_path, private=True) as handle:
            handle.write(json.dumps(dict(list(cache.items())[-_MAX_ENTRIES:]), indent=1).encode())
    except OSError as exc:
        log.warning("sha256 cache not saved (%s: %s): model files will be hashed again", cache_path,
                    exc.strerror or exc)
