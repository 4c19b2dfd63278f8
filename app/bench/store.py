"""Benchmark runs in the local SQLite database (sqlite-utils): ``runs`` and ``answers``.

The tables are created by :mod:`app.migrations` when :func:`app.db.open_db` opens the database; a
UNIQUE (run_id, problem_id, language) index means no question is ever written twice, and each
answer is committed in its own transaction as soon as it is produced.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, cast

import sqlite_utils

from app.bench import run_lock
from app.bench.metrics import METRICS
from app.errors import UserError
from app.timestamps import utc_now

# The answers table's columns around the metric columns; the metric columns (one 0/1 column per
# registered metric, named after it) sit between them and are added to older databases on demand.
QUESTION_COLUMNS = ("id", "run_id", "problem_id", "language", "exam", "block", "category", "points", "text_only",
                    "prompt_hash", "raw_output", "response", "paper_response", "picked", "gold")
RESULT_COLUMNS = ("abstained", "best_similarity", "scores", "kinki_picked", "contraindicated", "latency_s",
                  "prompt_tokens", "completion_tokens", "finish_reason", "created_at")


def answer_columns() -> list[str]:
    """Every column of ``answers``, the registered metrics' in registry order."""
    return [*QUESTION_COLUMNS, *METRICS, *RESULT_COLUMNS]


def ensure_metric_columns(db: sqlite_utils.Database) -> None:
    """Add the column of any registered metric the database does not have yet (older rows: NULL)."""
    existing = db.table("answers").columns_dict
    with db.atomic():
        for name in METRICS:
            if name not in existing:
                db.table("answers").add_column(name, int)


class RunNotFound(UserError, LookupError):
    """No benchmark run has this id."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"No benchmark run {run_id}")


def create_run(db: sqlite_utils.Database, fields: dict[str, Any]) -> int:
    row = {**fields, "status": "running", "started_at": utc_now(), "pid": os.getpid(), "n_answered": 0}
    with db.atomic():
        return int(cast(int, db.table("runs").insert(row).last_pk))  # every insert sets it


def find_unfinished(db: sqlite_utils.Database, config_key: str) -> dict | None:
    """The latest run with these settings that did not complete."""
    rows = list(db.table("runs").rows_where("config_key = ? and status != 'complete'", [config_key],
                                      order_by="id desc", limit=1))
    return rows[0] if rows else None


def claim_run(db: sqlite_utils.Database, run_id: int) -> None:
    """Take over an unfinished run; its answer count is recounted from the answers stored."""
    with db.atomic():
        db.table("runs").update(run_id, {"status": "running", "pid": os.getpid(), "ended_at": None})
        db.execute("update runs set n_answered = (select count(*) from answers where run_id = ?) where id = ?",
                   [run_id, run_id])


def answered_keys(db: sqlite_utils.Database, run_id: int) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in db.execute(
        "select problem_id, language from answers where run_id = ?", [run_id]).fetchall()}


def add_answer(db: sqlite_utils.Database, row: dict[str, Any]) -> None:
    """Write one answer and count it in one transaction (the UNIQUE index refuses a second copy).

    ``db.atomic()``, not ``with db.conn``: sqlite-utils commits its own insert when no transaction
    is open, which would leave a killed process's answer uncounted."""
    row = {**row, "created_at": utc_now()}
    with db.atomic():
        db.table("answers").insert(row)
        db.execute("update runs set n_answered = n_answered + 1 where id = ?", [row["run_id"]])


def finish_run(db: sqlite_utils.Database, run_id: int, status: str, extra: dict[str, Any] | None = None) -> None:
    with db.atomic():
        db.table("runs").update(run_id, {"status": status, "ended_at": utc_now(), **(extra or {})})


def get_run(db: sqlite_utils.Database, run_id: int) -> dict:
    """The run ``run_id`` (:class:`RunNotFound` if none, also for an id beyond SQLite's integers)."""
    try:
        return _as_seen_now(db, db.table("runs").get(run_id))
    except (sqlite_utils.db.NotFoundError, OverflowError):
        raise RunNotFound(run_id) from None


def list_runs(db: sqlite_utils.Database) -> list[dict]:
    return [_as_seen_now(db, run) for run in db.table("runs").rows_where(order_by="id desc")]


def _as_seen_now(db: sqlite_utils.Database, run: dict) -> dict:
    """A run stored as running that no process runs now (killed, power lost, or stored by a version
    before :mod:`app.bench.run_lock`) is shown as interrupted: resumable. Its pid tells nothing: a
    later process, even this one, can have it."""
    if run["status"] == "running" and not run_lock.is_running(db, run["id"]):
        return {**run, "status": "interrupted"}
    return run


def answers(db: sqlite_utils.Database, run_id: int) -> list[dict]:
    return list(db.table("answers").rows_where("run_id = ?", [run_id], order_by="id"))


def iter_answers(db: sqlite_utils.Database, run_id: int) -> Iterator[dict]:
    yield from db.table("answers").rows_where("run_id = ?", [run_id], order_by="id")
