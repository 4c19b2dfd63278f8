"""``jmedllm db``: back up, restore and check the SQLite database (question history, benchmark runs)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from app.backup import (
    PAGES_PER_STEP,
    DatabaseSummary,
    Progress,
    backup_database,
    inspect_database,
    restore_database,
)
from app.db import DatabaseError, default_db_path

F = TypeVar("F", bound=Callable[..., Any])
BAR_MIN_PAGES = 16 * PAGES_PER_STEP  # a progress bar for copies of 64 MiB and more (4 KiB pages)


def db_option(func: F) -> F:
    return click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="SQLite database (default: jmedllm.db in the data folder, $JMEDLLM_DATA_DIR).")(func)


@contextmanager
def progress_bar(label: str) -> Iterator[Progress]:
    """A :data:`Progress` that draws a bar on stderr once a copy turns out to be big."""
    with ExitStack() as stack:
        bars: list[Any] = []

        def report(done: int, total: int) -> None:
            if not bars:
                if total < BAR_MIN_PAGES:
                    return
                bars.append(stack.enter_context(click.progressbar(length=total, label=label, file=sys.stderr)))
            bars[0].update(done - bars[0].pos)

        yield report


def describe(summary: DatabaseSummary) -> list[str]:
    """The summary as indented lines: size, integrity, row counts, schema version."""
    integrity = "ok" if summary.intact else f"{len(summary.problems)} problem(s): " + "; ".join(summary.problems[:5])
    rows = ", ".join(f"{table} {count:,}" for table, count in summary.rows.items()) or \
        ("unreadable" if not summary.intact else "none of the main tables")
    known = len(summary.applied) - len(summary.unknown)
    schema = f"{summary.applied[-1]} ({known} of {len(summary.pending) + known} migrations)" if summary.applied \
        else f"before migrations (0 of {len(summary.pending)})"
    if summary.unknown:
        schema += f"; newer than this JMedLLM: {', '.join(summary.unknown)}"
    elif summary.pending:
        schema += f"; older: {len(summary.pending)} to apply when the app opens it"
    return [f"  size: {summary.size_bytes / 2**20:,.1f} MiB ({summary.size_bytes:,} bytes)",
            f"  integrity: {integrity}", f"  rows: {rows}", f"  schema: {schema}"]


@click.group()
def db() -> None:
    """Back up, restore and check the database (question history, benchmark runs)."""


@db.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@db_option
def backup(file: Path, force: bool, db_path: Path | None) -> None:
    """Copy the database to FILE, consistent even while `jmedllm serve` or a benchmark run writes to it.

    FILE is created readable by you only (mode 600): it holds the questions clinicians typed.
    """
    source = db_path or default_db_path()
    with progress_bar("Backing up") as report:
        summary = backup_database(source, file, force=force, on_progress=report)
    click.echo(f"Backed up {source} to {file} (mode 600, readable by you only: it holds patient text).")
    for line in describe(summary):
        click.echo(line)


@db.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
def restore(file: Path, db_path: Path | None) -> None:
    """Replace the database with the backup FILE; the replaced one is kept beside it.

    Stop the server first (the service: `sudo systemctl stop jmedllm`): a database another process
    has open is refused. A backup from an older JMedLLM is upgraded; one from a newer JMedLLM is refused.
    """
    target = db_path or default_db_path()
    with progress_bar("Restoring") as report:
        restored = restore_database(file, target, on_progress=report)
    click.echo(f"Restored {file} into {target}.")
    if restored.previous:
        click.echo(f"  the database it replaced: {restored.previous} (mode 600; delete it once you have "
                   "checked the restored one)")
    if restored.upgraded:
        click.echo(f"  upgraded from an older JMedLLM: {', '.join(restored.upgraded)}")
    for line in describe(restored.summary):
        click.echo(line)


@db.command("check")
@db_option
def check(db_path: Path | None) -> None:
    """Run SQLite's integrity check on the database and show its row counts and schema version (changes nothing)."""
    path = db_path or default_db_path()
    summary = inspect_database(path)
    click.echo(str(path))
    for line in describe(summary):
        click.echo(line)
    if not summary.intact:
        raise DatabaseError(f"The database {path} is damaged. Restore the latest backup (`jmedllm db restore FILE`), "
                            "or keep a copy of the file and ask for help.")
    if not summary.is_jmedllm:
        held = f"its tables: {', '.join(sorted(summary.tables))}" if summary.tables else "it holds no tables"
        raise DatabaseError(f"{path} is not a JMedLLM database ({held}). Check the file name.")
