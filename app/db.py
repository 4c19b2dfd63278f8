"""The app's one SQLite database (question history and benchmark runs): where it is and how it opens."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from app.migrations import MIGRATIONS
from app.paths import data_dir

DEFAULT_DB_NAME = "jmedllm.db"


def default_db_path() -> Path:
    """The local SQLite database for question history and benchmark runs."""
    return data_dir() / DEFAULT_DB_NAME


def open_db(path: Path | str) -> sqlite_utils.Database:
    """Open (creating if needed) the database, usable from any thread, and apply pending migrations.

    Waits up to 30 s for another writer, enforces foreign keys, and uses the WAL journal.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(sqlite3.connect(str(path), timeout=30, check_same_thread=False))
    try:
        db.execute("PRAGMA busy_timeout = 30000")
        db.execute("PRAGMA foreign_keys = ON")
        db.enable_wal()
        MIGRATIONS.apply(db)
    except BaseException:
        db.close()
        raise
    return db


@contextmanager
def connect(path: Path | str) -> Iterator[sqlite_utils.Database]:
    """``open_db`` for a ``with`` block: the connection is closed when the block ends."""
    db = open_db(path)
    try:
        yield db
    finally:
        db.close()
