"""Benchmark runs in the local SQLite database (sqlite-utils): ``runs`` and ``answers``.

WAL journal, foreign keys on, a UNIQUE (run_id, problem_id, language) index so no question is ever
written twice, and each answer committed in its own transaction as soon as it is produced.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

RUN_COLUMNS: dict[str, Any] = {
    "id": int,
    "config_key": str,
    "model_file": str,
    "model_sha256": str,
    "quantization": str,
    "architecture": str,
    "backend": str,
    "backend_version": str,
    "device": str,
    "gpu_layers": int,
    "n_ctx": int,
    "template": str,
    "shots": int,
    "mode": str,
    "language": str,
    "question_set": str,
    "set_size": int,
    "limit_n": int,
    "data_dir": str,
    "data_fingerprint": str,
    "settings": str,  # JSON of everything the config key covers
    "started_at": str,
    "ended_at": str,
    "status": str,  # running | interrupted | complete | failed
    "pid": int,
    "n_items": int,
    "n_answered": int,
    "totals": str,  # JSON: metric -> {correct, total, accuracy}
    "tokens_per_second": float,
    "questions_per_minute": float,
}

ANSWER_COLUMNS: dict[str, Any] = {
    "id": int,
    "run_id": int,
    "problem_id": str,
    "language": str,
    "exam": int,
    "block": str,
    "category": str,
    "points": int,
    "text_only": int,
    "prompt_hash": str,
    "raw_output": str,
    "response": str,
    "picked": str,
    "gold": str,
    "letter": int,
    "gestalt_paper": int,
    "gestalt": int,
    "exact": int,
    "abstained": int,
    "best_similarity": float,
    "scores": str,
    "kinki_picked": str,
    "contraindicated": int,
    "latency_s": float,
    "prompt_tokens": int,
    "completion_tokens": int,
    "finish_reason": str,
    "created_at": str,
}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def open_db(path: Path | str) -> sqlite_utils.Database:
    """Open (creating if needed) the database with WAL, foreign keys and the bench tables."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
    db = sqlite_utils.Database(conn)
    db.execute("PRAGMA busy_timeout = 30000")
    db.execute("PRAGMA foreign_keys = ON")
    if db.journal_mode != "wal":
        db.enable_wal()
    ensure_schema(db)
    return db


def ensure_schema(db: sqlite_utils.Database) -> None:
    with db.conn:
        if "runs" not in db.table_names():
            db["runs"].create(RUN_COLUMNS, pk="id", not_null={"config_key", "status", "started_at"})
            db["runs"].create_index(["config_key", "status"], if_not_exists=True)
            db["runs"].create_index(["started_at"], if_not_exists=True)
        if "answers" not in db.table_names():
            db["answers"].create(ANSWER_COLUMNS, pk="id", foreign_keys=[("run_id", "runs", "id")],
                                 not_null={"run_id", "problem_id", "language"})
            db["answers"].create_index(["run_id", "problem_id", "language"], unique=True, if_not_exists=True)
            db["answers"].create_index(["problem_id"], if_not_exists=True)


def create_run(db: sqlite_utils.Database, fields: dict[str, Any]) -> int:
    row = {**fields, "status": "running", "started_at": now(), "pid": os.getpid(), "n_answered": 0}
    with db.conn:
        return int(db["runs"].insert(row).last_pk)


def pid_alive(pid: int | None) -> bool:
    if not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_unfinished(db: sqlite_utils.Database, config_key: str) -> dict | None:
    """The latest run with these settings that did not complete."""
    rows = list(db["runs"].rows_where("config_key = ? and status != 'complete'", [config_key],
                                      order_by="id desc", limit=1))
    return rows[0] if rows else None


def claim_run(db: sqlite_utils.Database, run_id: int) -> None:
    with db.conn:
        db["runs"].update(run_id, {"status": "running", "pid": os.getpid(), "ended_at": None})


def answered_keys(db: sqlite_utils.Database, run_id: int) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in db.execute(
        "select problem_id, language from answers where run_id = ?", [run_id]).fetchall()}


def add_answer(db: sqlite_utils.Database, row: dict[str, Any]) -> None:
    """Write one answer in its own transaction (the UNIQUE index refuses a second copy)."""
    row = {**row, "created_at": now()}
    with db.conn:
        db["answers"].insert(row)
        db.execute("update runs set n_answered = n_answered + 1 where id = ?", [row["run_id"]])


def finish_run(db: sqlite_utils.Database, run_id: int, status: str, extra: dict[str, Any] | None = None) -> None:
    with db.conn:
        db["runs"].update(run_id, {"status": status, "ended_at": now(), **(extra or {})})


def get_run(db: sqlite_utils.Database, run_id: int) -> dict:
    try:
        return db["runs"].get(run_id)
    except sqlite_utils.db.NotFoundError:
        raise KeyError(f"No benchmark run {run_id}") from None


def list_runs(db: sqlite_utils.Database) -> list[dict]:
    return list(db["runs"].rows_where(order_by="id desc"))


def answers(db: sqlite_utils.Database, run_id: int) -> list[dict]:
    return list(db["answers"].rows_where("run_id = ?", [run_id], order_by="id"))


def iter_answers(db: sqlite_utils.Database, run_id: int) -> Iterator[dict]:
    yield from db["answers"].rows_where("run_id = ?", [run_id], order_by="id")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
