"""Which databases a running ``serve``, ``chat`` or ``bench run`` has in use, so ``db restore`` waits for them.

SQLite's own locks show only a write in progress: a server between two questions holds none, and a
restore then replaced the database under it (its pages still showed, and saved into, conversations of
the replaced file). Each such process holds a shared ``flock`` on ``<database>.in-use`` while it runs
(released by the kernel however it ends); a restore needs the exclusive one.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from app.errors import UserError

log = logging.getLogger(__name__)


class DatabaseInUse(UserError):
    """A running jmedllm process has the database in use."""


def marker(database: Path) -> Path:
    """The file beside ``database`` that processes using it lock."""
    return database.with_name(database.name + ".in-use")


@contextlib.contextmanager
def in_use(database: Path) -> Iterator[None]:
    """Mark ``database`` as in use by this process for the block (where its folder cannot take the
    marker, unmarked: that folder takes no restore either)."""
    try:
        fd = os.open(marker(Path(database)), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        log.warning("cannot mark %s as in use (%s): `jmedllm db restore` will not see this process",
                    database, exc.strerror or exc)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def only_user(database: Path) -> Iterator[None]:
    """Hold ``database`` for this process alone for the block; :class:`DatabaseInUse` if another has it."""
    path = marker(Path(database))
    if not path.parent.is_dir():
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatabaseInUse(f"{database} is in use by a running jmedllm (serve, chat or bench run). Stop it "
                                "first (the service: systemctl stop jmedllm), then restore.") from None
        yield
    finally:
        os.close(fd)
