"""Which benchmark runs are being run now: a lock that the kernel lets go of when its process ends.

A run's row says ``running`` from its start to its end, and a run killed (or cut off by a power
loss) keeps saying so. The pid stored with it cannot tell whether it still runs: later, or after a
reboot, that pid is another process's (a restarted ``serve`` can even get its own old pid back).
So the process running a run holds an exclusive ``flock`` on ``<database>.runs/<run id>.lock``
until the run ends, and a run is running while some process holds that lock; a row written by an
older version (no lock file) is interrupted, resumable. ``flock``, not a POSIX record lock: closing
any descriptor of a file drops all of its process's record locks on that file.

This process's own runs are kept in a registry and their lock files are never probed from here:
an ``flock`` is taken per open file, so a probe from a second descriptor would work on Linux but
not where the system emulates it with record locks (NFS), whose probe would drop the run's lock.
The registry also answers for a database with no folder for the lock files (in memory; a folder
that cannot take them: a warning, and other processes see that run as interrupted).

A run's lock file is removed as the run ends; whoever locks a lock file checks afterwards that it
is still the one at its path (it may have been removed while they waited), so no two hold a run.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

log = logging.getLogger(__name__)

CLAIM_TRIES = 5  # a probe holds a shared lock for microseconds: a claim that meets one tries again
CLAIM_PAUSE_S = 0.02

_ours: set[tuple[str, int]] = set()  # (database, run id) of the runs this process is running
_guard = threading.Lock()  # held around every look at _ours and every lock taken from this process


class RunHeld(RuntimeError):
    """Another process, or another thread of this one, is running the run."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"Benchmark run {run_id} is being run")


def lock_file(database: str, run_id: int) -> Path:
    """The file whose lock says that run ``run_id`` of the database file ``database`` is being run."""
    return Path(database + ".runs") / f"{run_id}.lock"


@contextlib.contextmanager
def running(db: sqlite_utils.Database, run_id: int) -> Iterator[None]:
    """Mark run ``run_id`` of ``db`` as run by this process for the block; :class:`RunHeld` if it already runs."""
    database = _database_file(db)
    key = _key(db, database, run_id)
    with _guard:
        if key in _ours:
            raise RunHeld(run_id)
        fd = _claim(database, run_id) if database else None  # in memory: no other process sees it
        _ours.add(key)
    try:
        yield
    finally:
        with _guard:
            _ours.discard(key)
            if fd is not None:
                _release(fd, lock_file(database, run_id))


def is_running(db: sqlite_utils.Database, run_id: int) -> bool:
    """Whether run ``run_id`` of ``db`` is being run now, by this process or another."""
    database = _database_file(db)
    with _guard:
        if _key(db, database, run_id) in _ours:
            return True
        return bool(database) and _held_elsewhere(lock_file(database, run_id))


def _database_file(db: sqlite_utils.Database) -> str:
    """The database's file as SQLite names it (absolute, links resolved); "" for one in memory."""
    return str(db.execute("pragma database_list").fetchone()[2])


def _key(db: sqlite_utils.Database, database: str, run_id: int) -> tuple[str, int]:
    """A run's name in the registry: its database's file, or for one in memory its connection."""
    return database or f"memory {id(db.conn)}", run_id


def _claim(database: str, run_id: int) -> int | None:
    """A descriptor holding the exclusive lock of the run's lock file (:class:`RunHeld` if another holds it);
    None, with a warning, where the database's folder cannot take the file."""
    path = lock_file(database, run_id)
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        for _ in range(CLAIM_TRIES - 1):
            with contextlib.suppress(BlockingIOError):
                return _locked(path, fcntl.LOCK_EX, os.O_RDWR | os.O_CREAT)
            time.sleep(CLAIM_PAUSE_S)
        return _locked(path, fcntl.LOCK_EX, os.O_RDWR | os.O_CREAT)
    except BlockingIOError:
        raise RunHeld(run_id) from None
    except OSError as exc:
        log.warning("cannot lock %s (%s): other processes will see benchmark run %d as interrupted",
                    path, exc.strerror or exc, run_id)
        return None


def _held_elsewhere(path: Path) -> bool:
    """Whether another process holds ``path``'s lock (none can without the file: an older version's run,
    or a folder that cannot take it)."""
    try:
        fd = _locked(path, fcntl.LOCK_SH, os.O_RDONLY)
    except BlockingIOError:
        return True
    except OSError:
        return False
    os.close(fd)
    return False


def _locked(path: Path, operation: int, flags: int) -> int:
    """A descriptor of the file at ``path`` holding ``operation``'s lock, taken without waiting
    (:class:`BlockingIOError` when another holds it); opened again if the file was removed or
    replaced before the lock was taken."""
    while True:
        fd = os.open(path, flags, 0o600)
        taken = False
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            taken = _same_file(fd, path)
        finally:
            if not taken:
                os.close(fd)
        if taken:
            return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _release(fd: int, path: Path) -> None:
    """Remove the lock file (while still holding it, so no one holds a removed one unawares) and let it go;
    a file that cannot be removed stays, unheld."""
    try:
        if _same_file(fd, path):
            path.unlink()
    except OSError as exc:
        log.warning("cannot remove %s (%s)", path, exc.strerror or exc)
    finally:
        os.close(fd)
