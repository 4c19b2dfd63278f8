"""Options and helpers shared by the ``jmedllm bench`` commands (kept apart so command modules can
share them without importing each other)."""

from __future__ import annotations

from pathlib import Path

import click
import sqlite_utils

DB_OPTION = click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                         help="SQLite database (default: jmedllm.db in the user data folder).")
DATA_OPTION = click.option("--data", "--data-dir", "data", default=None, metavar="NAME|PATH",
                           help="Question set: an imported set's name (bench data list) or a path in a known "
                                "layout (default: IgakuQA from $JMEDLLM_IGAKUQA_DIR, the igakuqa_dir setting, "
                                "the imported copy, or ../shared/igakuqa).")


def database_path(path: Path | None) -> Path:
    """``--db``, else the default database."""
    from app.db import default_db_path

    return path or default_db_path()


def open_for_reading(path: Path | None) -> sqlite_utils.Database:
    """Open the database to read it: a --db that does not exist is an error (a typo), never a new file."""
    from app.db import open_db

    return open_db(database_path(path), create=path is None)

