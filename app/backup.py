"""Copies of the database: an online backup that stays consistent while the server writes, a summary of a
database (integrity, row counts, schema version), and restoring a backup in place of the database.

Backups hold the questions clinicians typed: every file written here is 0600.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.atomic import atomic_path
from app.db import APP_TABLES, BUSY_TIMEOUT_S, SIDE_FILES, DatabaseError, database_errors, open_db
from app.db_in_use import only_user
from app.migrations import MIGRATIONS, MIGRATIONS_TABLE
from app.paths import private_dir

MAIN_TABLES = ("runs", "answers", "conversations", "turns")
LEGACY_HISTORY = "questions"  # the question history before 0.4.0 (a database without conversations)
PAGES_PER_STEP = 1024  # pages copied between progress reports: 4 MiB with SQLite's default 4 KiB pages

Progress = Callable[[int, int], None]
"""Called after each step of a copy with the pages copied so far and the total."""


class BackupError(DatabaseError):
    """A backup or restore cannot be done as asked; the message says why and what to do."""


@dataclass(frozen=True)
class DatabaseSummary:
    """What a database file holds: its integrity, the main tables' row counts, the migrations applied."""

    path: Path
    size_bytes: int
    problems: tuple[str, ...]  # PRAGMA integrity_check's findings; empty when it says "ok"
    rows: dict[str, int] = field(hash=False)  # the main tables present, with their row counts
    tables: frozenset[str]
    applied: tuple[str, ...]  # migration names recorded in the file, in the order applied

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def is_jmedllm(self) -> bool:
        """Whether the file has this app's tables (a 0.1.0 database has no migrations table yet)."""
        return bool(self.tables & APP_TABLES)

    @property
    def pending(self) -> tuple[str, ...]:
        """Migrations this version would apply on opening it (an older schema)."""
        return tuple(name for name in MIGRATIONS.names if name not in self.applied)

    @property
    def unknown(self) -> tuple[str, ...]:
        """Migrations recorded that this version does not know (written by a newer JMedLLM)."""
        return tuple(name for name in self.applied if name not in MIGRATIONS.names)


@dataclass(frozen=True)
class Restored:
    """The outcome of :func:`restore_database`."""

    summary: DatabaseSummary  # the database as restored, migrations applied
    previous: Path | None  # the copy of the database it replaced (None when there was none)
    upgraded: tuple[str, ...]  # migrations applied to the restored backup


def inspect_database(path: Path) -> DatabaseSummary:
    """Summarise the existing database ``path`` without changing it (no migration; read-only when the file is)."""
    path = Path(path)
    conn = _open_existing(path)
    try:
        with database_errors(path):
            return _summarize(conn, path)
    finally:
        conn.close()


def backup_database(source: Path, target: Path, force: bool = False,
                    on_progress: Progress | None = None) -> DatabaseSummary:
    """Copy the database ``source`` to ``target`` with SQLite's online backup; returns the copy's summary.

    The copy is read from one snapshot, a read transaction held for the whole copy (in WAL mode
    writers go on meanwhile), so it holds exactly the rows committed when it started. It is written
    to a temporary 0600 file beside ``target`` as a single self-contained file (rollback journal, not
    WAL), checked with ``PRAGMA integrity_check``, and renamed to ``target`` only if intact. An
    existing ``target`` is refused unless ``force``. ``source`` is neither migrated nor changed.
    """
    source, target = Path(source), Path(target)
    _check_target(source, target, force)
    conn = _open_existing(source)
    try:
        with _writable(target), atomic_path(target, private=True) as tmp:
            with _snapshot(conn, source):
                _copy_to_file(conn, tmp, f"Copying {source} to {target}", on_progress)
            summary = inspect_database(tmp)
            if not summary.intact:
                raise BackupError(f"The copy of {source} fails SQLite's integrity check ({_first(summary.problems)}): "
                                  f"the database itself is damaged. Nothing was written to {target}; "
                                  f"see `jmedllm db check --db {source}`.")
    finally:
        conn.close()
    return replace(summary, path=target)


def restore_database(backup: Path, target: Path, on_progress: Progress | None = None) -> Restored:
    """Make the database ``target`` a copy of ``backup``, keeping the database it replaces beside it.

    ``backup`` must be intact, a JMedLLM database, and not from a newer JMedLLM (migrations this
    version does not know). No other process may have ``target`` in use (a server, even an idle one, a
    chat, a benchmark run: :mod:`app.db_in_use`), and restore takes SQLite's exclusive lock first and
    refuses if it cannot, so it never changes a database under a writer. The current database is copied to
    ``<target>.before-restore-<UTC time>`` (0600), the backup is written into ``target`` through
    SQLite's backup API (no file is swapped, so no stale ``-wal`` can apply to it), and the
    migrations then bring an older backup up to this version.
    """
    backup, target = Path(backup), Path(target)
    found = inspect_database(backup)
    _check_restorable(found)
    if target.exists() and target.samefile(backup):
        raise BackupError(f"{backup} is the database itself: restore a backup made with `jmedllm db backup`.")
    replacing = target.exists() and target.stat().st_size > 0
    with only_user(target):  # no serve, chat or bench run has it open, even one idle between questions
        source = _open_existing(backup)
        try:
            with _writable(target), _exclusive(target) as live:
                with database_errors(target):
                    live.execute("PRAGMA journal_mode=DELETE")  # WAL folded in; any page size may be restored
                previous = _keep_previous(live, target) if replacing else None
                with _snapshot(source, backup):
                    _copy(source, live, f"Restoring {backup} into {target}", on_progress)
        finally:
            source.close()
        open_db(target).close()  # WAL again, and the migrations an older backup needs
    return Restored(summary=inspect_database(target), previous=previous, upgraded=found.pending)


def _open_existing(path: Path) -> sqlite3.Connection:
    """A plain connection (autocommit, no migration) to the existing database ``path``; read-only when the file is."""
    if not path.is_file():
        raise DatabaseError(f"No database at {path}. Check the path given with --db "
                            "(default: jmedllm.db in the data folder, $JMEDLLM_DATA_DIR).")
    with database_errors(path):
        if os.access(path, os.W_OK):
            return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                               isolation_level=None)


def _summarize(conn: sqlite3.Connection, path: Path) -> DatabaseSummary:
    """The summary of the database open as ``conn``; of a damaged one, what can still be read."""
    problems = _integrity_problems(conn)
    tables: frozenset[str] = frozenset()
    rows: dict[str, int] = {}
    applied: tuple[str, ...] = ()
    try:
        tables = frozenset(row[0] for row in conn.execute("select name from sqlite_master where type = 'table'"))
        counted = MAIN_TABLES if "conversations" in tables else (*MAIN_TABLES, LEGACY_HISTORY)
        rows = {t: int(conn.execute(f'select count(*) from "{t}"').fetchone()[0]) for t in counted if t in tables}
        if MIGRATIONS_TABLE in tables:
            applied = tuple(row[0] for row in conn.execute(f"select name from {MIGRATIONS_TABLE} order by rowid"))
    except sqlite3.DatabaseError:
        if not problems:
            raise
    return DatabaseSummary(path=path, size_bytes=path.stat().st_size, problems=problems, rows=rows, tables=tables,
                           applied=applied)


def _integrity_problems(conn: sqlite3.Connection) -> tuple[str, ...]:
    """``PRAGMA integrity_check``'s findings (none when it says "ok"); damage that stops the check is one."""
    try:
        found = tuple(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))
    except sqlite3.DatabaseError as exc:
        if not getattr(exc, "sqlite_errorname", "").startswith("SQLITE_CORRUPT"):
            raise  # not a database at all, locked, unreadable: database_errors explains
        return (str(exc),)
    return () if found == ("ok",) else found


def _check_target(source: Path, target: Path, force: bool) -> None:
    if target.is_dir():
        raise BackupError(f"{target} is a folder: give the backup's file name, e.g. {target / 'jmedllm-backup.db'}.")
    if not target.parent.exists():  # a mistyped folder would start a new backup tree unnoticed
        raise BackupError(f"The folder {target.parent} does not exist: create it first (mkdir), or check the path.")
    if not target.exists():
        return
    if not target.is_file():
        raise BackupError(f"{target} is not a regular file (a device, pipe or socket): give a new file name for the "
                          "backup.")
    if source.exists() and target.samefile(source):
        raise BackupError(f"{target} is the database itself: choose another file for the backup.")
    if not force:
        raise BackupError(f"{target} already exists. Choose a new file name, or add --force to replace it.")
    stale = [f"{target}{suffix}" for suffix in SIDE_FILES if Path(f"{target}{suffix}").exists()]
    if stale:
        raise BackupError(f"{target} is open in another program or was not closed cleanly ({', '.join(stale)} "
                          "beside it): close it, or choose a new file name.")


def _check_restorable(found: DatabaseSummary) -> None:
    if not found.intact:
        raise BackupError(f"{found.path} fails SQLite's integrity check ({_first(found.problems)}): it cannot be "
                          "restored. Use another backup.")
    if not found.is_jmedllm:
        raise BackupError(f"{found.path} is not a JMedLLM database (none of its tables are the app's). "
                          "Check the file name.")
    if found.unknown:
        raise BackupError(f"{found.path} was made by a newer JMedLLM: its schema has {', '.join(found.unknown)}, "
                          "which this version does not know. Upgrade JMedLLM, then restore.")


@contextmanager
def _writable(path: Path) -> Iterator[None]:
    """Turn a failure to create, open or rename ``path`` or its folder into a :class:`BackupError` naming it."""
    try:
        yield
    except OSError as exc:
        raise BackupError(f"Cannot write {path}: {exc.strerror or exc}. Check that its folder is writable by you "
                          "and has free space, or choose another place.") from exc


@contextmanager
def _snapshot(conn: sqlite3.Connection, path: Path) -> Iterator[None]:
    """Hold one read transaction on ``conn`` for the block, so a copy in several steps sees one state."""
    with database_errors(path):
        conn.execute("BEGIN")
        conn.execute("select count(*) from sqlite_master").fetchone()  # the snapshot starts at the first read
    try:
        yield
    finally:
        conn.execute("ROLLBACK")


@contextmanager
def _exclusive(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to ``path`` (created 0600 if missing) that holds its exclusive lock until the block ends.

    In WAL mode every open connection holds a shared lock, so this fails while any other process has
    the database open, even idle, after waiting ``BUSY_TIMEOUT_S`` for it to close.
    """
    if not path.exists():
        private_dir(path.parent)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with database_errors(path):
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        with database_errors(path):
            try:
                conn.execute("PRAGMA locking_mode=EXCLUSIVE")
                conn.execute("BEGIN EXCLUSIVE")
                conn.execute("COMMIT")  # the lock stays: exclusive locking mode keeps it until close
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY"):
                    raise BackupError(f"The database {path} is open in another process (a running `jmedllm serve` "
                                      "or benchmark run). Stop it first (the service: `sudo systemctl stop "
                                      "jmedllm`), then restore.") from exc
                raise
        yield conn
    finally:
        conn.close()


def _keep_previous(live: sqlite3.Connection, target: Path) -> Path:
    """Copy the database about to be replaced to ``<target>.before-restore-<UTC time>`` (0600)."""
    kept = target.with_name(f"{target.name}.before-restore-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    with _writable(kept), atomic_path(kept, private=True) as tmp:
        _copy_to_file(live, tmp, f"Keeping {target} as {kept}", None)
    return kept


def _copy_to_file(source: sqlite3.Connection, file: Path, what: str, on_progress: Progress | None) -> None:
    """Copy the database open as ``source`` into the empty ``file``, left as one file (rollback journal)."""
    dest = sqlite3.connect(file, isolation_level=None)
    try:
        _copy(source, dest, what, on_progress)
        with database_errors(file):
            dest.execute("PRAGMA journal_mode=DELETE")
    finally:
        dest.close()


def _copy(source: sqlite3.Connection, dest: sqlite3.Connection, what: str, on_progress: Progress | None) -> None:
    """SQLite's backup of ``source`` into ``dest``, ``PAGES_PER_STEP`` pages a step."""

    def report(_status: int, remaining: int, total: int) -> None:
        if on_progress is not None:
            on_progress(total - remaining, total)

    try:
        source.backup(dest, pages=PAGES_PER_STEP, progress=report)
    except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
        raise  # a bug in the app, not a problem with the files
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{what} failed: {exc}. Check the free space and permissions there.") from exc


def _first(problems: tuple[str, ...]) -> str:
    shown = "; ".join(problems[:3])
    return shown if len(problems) <= 3 else f"{shown}; and {len(problems) - 3} more"
