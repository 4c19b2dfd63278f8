"""Exporting a run's answers, each row carrying the run's model and settings.

CSV cells that a spreadsheet would read as a formula are neutralised (OWASP's rule: a leading
quote); JSON lines stay exact. Export files are written atomically, readable by their owner only.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import functools
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import sqlite_utils

from app.atomic import atomic_path
from app.bench.store import answer_columns, iter_answers
from app.errors import UserError

RUN_FIELDS = ("model_file", "model_sha256", "quantization", "mode", "template", "shots", "question_set",
              "data_fingerprint")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula: text starting with = + - @ tab or CR gets a leading '."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


@contextlib.contextmanager
def open_export(path: Path) -> Iterator[IO[str]]:
    """``path`` written as text (UTF-8, CSV newlines): atomically, mode 0600, in a folder that must exist.

    An existing ``path`` that is not a regular file (a device such as /dev/stdout, a pipe) is refused:
    the atomic rename would replace it with a file."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"Cannot write {path}: the folder {path.parent} does not exist.")
    if path.exists() and not path.is_file():
        raise UserError(f"Cannot write {path}: it is not a regular file (leave out -o to write to standard output).")
    try:
        with atomic_path(path, private=True) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
            yield handle
    except OSError as exc:
        raise UserError(f"Cannot write {path}: {exc.strerror or exc}.") from exc


@functools.cache
def private_export_dir() -> Path:
    """This process's one folder for exports served as downloads (0700, in the system temp folder
    where the web UI may serve files from), removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix="jmedllm-exports-"))  # mkdtemp creates it 0700
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def write_export(db: sqlite_utils.Database, run: dict, fmt: str, handle: IO[str]) -> int:
    """Write ``run``'s answers to ``handle`` as ``fmt`` ("csv" or "jsonl"); returns the number of rows."""
    columns = ["run_id", *RUN_FIELDS, *[c for c in answer_columns() if c not in ("id", "run_id")]]
    count = 0
    writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore") if fmt == "csv" else None
    if writer:
        writer.writeheader()
    for row in iter_answers(db, run["id"]):
        record = {"run_id": run["id"], **{k: run[k] for k in RUN_FIELDS}, **row}
        record.pop("id", None)
        if writer:
            writer.writerow({c: neutralise_cell(v) for c, v in record.items()})
        else:
            handle.write(json.dumps({c: record.get(c) for c in columns}, ensure_ascii=False) + "\n")
        count += 1
    return count
