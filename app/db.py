"""The app's one SQLite database (question history and benchmark runs): where it is and how it opens."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from app.errors import UserError
from app.migrations import MIGRATIONS, MIGRATIONS_TABLE
from app.paths import data_dir, private_dir

DEFAULT_DB_NAME = "jmedllm.db"
BUSY_TIMEOUT_S = 5  # how long to wait for another process's write lock before giving up
SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's files beside a database
# Every table this app's schema has had (a 0.1.0 database has no migrations table yet).
APP_TABLES = frozenset({"runs", "answers", "conversations", "turns", "questions", "model_loads", MIGRATIONS_TABLE})


class DatabaseError(UserError):
    """The database cannot be opened, read or written; the message names the file and what to do."""


def default_db_path() -> Path:
    """The local SQLite database for question history and benchmark runs. Like the app's own folders, it
    is made private if an older release left it readable by others (group and others lose access)."""
    path = data_dir() / DEFAULT_DB_NAME
    for file in (path, *(path.with_name(path.name + side) for side in SIDE_FILES)):
        with contextlib.suppress(FileNotFoundError):
            if file.stat().st_mode & 0o077:
                os.chmod(file, 0o600)
    return path


def open_db(path: Path | str, create: bool = True) -> sqlite_utils.Database:
    """Open the database, usable from any thread, and apply pending migrations.

    A missing file is created (private to the user, 0600, in a 0700 folder when the folder is new)
    unless ``create`` is false, which raises :class:`DatabaseError` instead. A file the user cannot
    write is opened read-only (it must need no migration). Waits up to ``BUSY_TIMEOUT_S`` for
    another writer, enforces foreign keys, and uses the WAL journal (SQLite gives ``-wal`` and
    ``-shm`` the database file's permissions). Any SQLite failure on the way is a :class:`DatabaseError`.
    """
    path = Path(path)
    if not path.exists():
        if not create:
            raise DatabaseError(f"No database at {path}. Check the path given with --db "
                                "(only `bench run` and `serve --history` create a database).")
        _create_private(path)
    read_only = not os.access(path, os.W_OK)
    with database_errors(path):
        if read_only:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        db = sqlite_utils.Database(conn)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            db.execute("PRAGMA foreign_keys = ON")
            _require_ours(db, path)
            if read_only:
                _require_no_migration(db, path)
            else:
                db.enable_wal()
                if MIGRATIONS.pending(db):
                    _require_intact(db, path)  # never upgrade a damaged file
                MIGRATIONS.apply(db)
        except BaseException:
            db.close()
            raise
    return db


def _create_private(path: Path) -> None:
    """Create an empty database file readable by its owner only (before SQLite opens it)."""
    try:
        if not path.parent.exists():
            private_dir(path.parent)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError as exc:
        raise DatabaseError(f"Cannot create the database {path}: {exc.strerror}. "
                            "Choose a folder you can write with --db.") from exc


def _require_ours(db: sqlite_utils.Database, path: Path) -> None:
    """Refuse another program's SQLite file (tables, none of them the app's): the app's tables are not
    added to it."""
    tables = set(db.table_names())
    if tables and not tables & APP_TABLES:
        shown = ", ".join(sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
        raise DatabaseError(f"{path} is another program's database (tables {shown}), not a JMedLLM database; "
                            "nothing was written to it. Check the file name given with --db.")


def _require_no_migration(db: sqlite_utils.Database, path: Path) -> None:
    pending = MIGRATIONS.pending(db)
    if pending:
        raise DatabaseError(f"The database {path} is read-only and needs an upgrade ({', '.join(pending)}). "
                            "Make it writable, or open a writable copy with --db.")


def check_writable(path: Path | str) -> None:
    """Open (creating if needed), check and take the write lock once, so a writer fails before its slow work.

    Raises :class:`DatabaseError` for a read-only file, a damaged one, or one another process holds.
    """
    path = Path(path)
    if path.exists() and not os.access(path, os.W_OK):
        raise DatabaseError(_read_only(path))
    with connect(path) as db:
        _require_intact(db, path)
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")


def _require_intact(db: sqlite_utils.Database, path: Path) -> None:
    """Refuse a file that SQLite's ``quick_check`` finds damaged: writing on would only spread the damage."""
    findings = [str(row[0]) for row in db.execute("PRAGMA quick_check").fetchall()]
    if findings != ["ok"]:
        raise DatabaseError(f"The database {path} is damaged ({findings[0]}); nothing was written to it. "
                            "Restore the last backup (jmedllm db restore FILE), or see jmedllm db check.")


@contextmanager
def database_errors(path: Path | str) -> Iterator[None]:
    """Turn SQLite's errors inside the block into a :class:`DatabaseError` naming ``path`` and what to do."""
    try:
        yield
    except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
        raise  # a bug in the app, not a problem with the file: keep the traceback
    except sqlite3.DatabaseError as exc:  # OperationalError (locked, read-only, cannot open) and corrupt files
        raise DatabaseError(_explain(exc, Path(path))) from exc


def _explain(exc: sqlite3.DatabaseError, path: Path) -> str:
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith("SQLITE_BUSY") or name.startswith("SQLITE_LOCKED"):
        return (f"The database {path} is in use by another process (waited {BUSY_TIMEOUT_S} s). "
                "Wait for it to finish (a benchmark run or server), then try again.")
    if name.startswith("SQLITE_READONLY"):
        return _read_only(path)
    if name.startswith("SQLITE_NOTADB") or name.startswith("SQLITE_CORRUPT"):
        return f"{path} is not a readable JMedLLM database (damaged, or another kind of file). Check the file name."
    if name.startswith("SQLITE_CANTOPEN"):
        return f"Cannot open the database {path}: check that its folder exists and is readable."
    if name.startswith("SQLITE_FULL"):
        return f"The disk holding the database {path} is full."
    return f"The database {path} cannot be used: {exc}."


def _read_only(path: Path) -> str:
    return f"The database {path} is read-only. Make it (and its folder) writable, or use another --db."


@contextmanager
def connect(path: Path | str) -> Iterator[sqlite_utils.Database]:
    """``open_db`` for a ``with`` block: the connection is closed when the block ends, SQLite errors in it
    become :class:`DatabaseError`."""
    db = open_db(path)
    try:
        with database_errors(path):
            yield db
    finally:
        db.close()
