"""Numbered schema migrations, each applied once, in order, in its own transaction.

Applied migrations are recorded by name in ``_migrations``. A migration is a historical record:
never edit one that has shipped; add the next number instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlite_utils

from app.timestamps import utc_now

Migration = Callable[[sqlite_utils.Database], None]

MIGRATIONS_TABLE = "_migrations"


class Migrations:
    """An ordered registry of migrations; ``register`` is the decorator that adds the next one."""

    def __init__(self) -> None:
        self._steps: list[Migration] = []

    def register(self, step: Migration) -> Migration:
        """Register ``step`` as the next migration (its function name is its recorded name)."""
        if step.__name__ in self.names:
            raise ValueError(f"Migration {step.__name__} is registered twice")
        self._steps.append(step)
        return step

    @property
    def names(self) -> list[str]:
        return [step.__name__ for step in self._steps]

    def pending(self, db: sqlite_utils.Database) -> list[str]:
        """Names of the migrations not yet applied to ``db``, in order."""
        done = applied(db)
        return [name for name in self.names if name not in done]

    def apply(self, db: sqlite_utils.Database) -> list[str]:
        """Apply the pending migrations in order; returns the names applied now.

        Each runs in a write transaction together with its ``_migrations`` row, so a failing one
        leaves the database as it was, and two processes opening the database at once never
        apply the same migration twice.
        """
        pending = set(self.pending(db))
        done_now: list[str] = []
        for step in (s for s in self._steps if s.__name__ in pending):
            with _write_transaction(db):
                if step.__name__ in applied(db):  # another process applied it meanwhile
                    continue
                step(db)
                db.table(MIGRATIONS_TABLE).insert(
                    {"name": step.__name__, "applied_at": utc_now()})
            done_now.append(step.__name__)
        return done_now


def applied(db: sqlite_utils.Database) -> set[str]:
    """Names recorded in ``_migrations`` (none when the table does not exist yet)."""
    if not db.table(MIGRATIONS_TABLE).exists():
        return set()
    return {row[0] for row in db.execute(f"select name from {MIGRATIONS_TABLE}").fetchall()}


@contextmanager
def _write_transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """BEGIN IMMEDIATE (take the write lock before reading what is applied), commit or roll back."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.table(MIGRATIONS_TABLE).create({"name": str, "applied_at": str}, pk="name", if_not_exists=True)
        yield
    except BaseException:
        db.rollback()
        raise
    db.commit()


MIGRATIONS = Migrations()
migration = MIGRATIONS.register


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    """The 0.1.0 schema: ``questions``, ``runs``, ``answers``; on a 0.1.0 database, only what is missing."""
    # The column literals are the 0.1.0 release's, frozen: never derive them from today's code.
    tables = set(db.table_names())
    if "questions" not in tables:
        db.table("questions").create({
            "id": int, "asked_at": str, "question": str, "choices": str, "language": str, "answer": str,
            "picked": str, "model_file": str, "model_sha256": str, "quantization": str, "device": str,
            "completion_tokens": int, "tokens_per_second": float, "finish_reason": str,
        }, pk="id")
    if "runs" not in tables:
        db.table("runs").create({
            "id": int, "config_key": str, "model_file": str, "model_sha256": str, "quantization": str,
            "architecture": str, "backend": str, "backend_version": str, "device": str, "gpu_layers": int,
            "n_ctx": int, "template": str, "shots": int, "mode": str, "language": str, "question_set": str,
            "set_size": int, "limit_n": int, "data_dir": str, "data_fingerprint": str, "settings": str,
            "started_at": str, "ended_at": str, "status": str, "pid": int, "n_items": int, "n_answered": int,
            "totals": str, "tokens_per_second": float, "questions_per_minute": float,
        }, pk="id", not_null={"config_key", "status", "started_at"})
    if "answers" not in tables:
        db.table("answers").create({
            "id": int, "run_id": int, "problem_id": str, "language": str, "exam": int, "block": str,
            "category": str, "points": int, "text_only": int, "prompt_hash": str, "raw_output": str,
            "response": str, "picked": str, "gold": str, "letter": int, "gestalt_paper": int, "gestalt": int,
            "exact": int, "abstained": int, "best_similarity": float, "scores": str, "kinki_picked": str,
            "contraindicated": int, "latency_s": float, "prompt_tokens": int, "completion_tokens": int,
            "finish_reason": str, "created_at": str,
        }, pk="id", foreign_keys=[("run_id", "runs", "id")], not_null={"run_id", "problem_id", "language"})
    db.table("runs").create_index(["config_key", "status"], if_not_exists=True)
    db.table("runs").create_index(["started_at"], if_not_exists=True)
    db.table("answers").create_index(["run_id", "problem_id", "language"], unique=True, if_not_exists=True)
    db.table("answers").create_index(["problem_id"], if_not_exists=True)


@migration
def m002_model_loads(db: sqlite_utils.Database) -> None:
    """``model_loads``: every attempt to load a model from the UI (who, when, which file, sha256, outcome)."""
    db.table("model_loads").create({
        "id": int, "at": str, "username": str, "address": str, "file_name": str, "sha256": str,
        "quantization": str, "outcome": str, "message": str,
    }, pk="id", not_null={"at", "file_name", "outcome"}, if_not_exists=True)
    db.table("model_loads").create_index(["at"], if_not_exists=True)


@migration
def m003_run_engine(db: sqlite_utils.Database) -> None:
    """``runs`` records the engine: its kind, endpoint, parallel slots, and the wall time spent answering."""
    runs = db.table("runs")
    existing = runs.columns_dict
    for name, kind in (("engine", str), ("endpoint", str), ("slots", int), ("wall_s", float)):
        if name not in existing:
            runs.add_column(name, kind)
    db.execute("update runs set engine = 'local' where engine is null")
    db.execute("update runs set slots = 1 where slots is null")


@migration
def m004_conversations(db: sqlite_utils.Database) -> None:
    """``conversations`` and their ``turns`` (the chat history), each answer with its model stamp."""
    db.table("conversations").create({
        "id": str, "created_at": str, "updated_at": str, "language": str, "title": str, "model_file": str,
        "dropped": int,
    }, pk="id", not_null={"created_at", "updated_at"}, if_not_exists=True)
    db.table("turns").create({
        "id": int, "conversation_id": str, "position": int, "asked_at": str, "question": str, "choices": str,
        "chosen": str, "answer": str, "thinking": str, "model_file": str, "model_sha256": str, "quantization": str,
        "device": str, "engine": str, "endpoint": str, "tokens_per_second": float, "completion_tokens": int,
        "finish_reason": str,
    }, pk="id", foreign_keys=[("conversation_id", "conversations", "id")],
        not_null={"conversation_id", "position", "question"}, if_not_exists=True)
    db.table("turns").create_index(["conversation_id", "position"], unique=True, if_not_exists=True)
    db.table("conversations").create_index(["updated_at"], if_not_exists=True)


@migration
def m005_questions_as_conversations(db: sqlite_utils.Database) -> None:
    """Each question of the 0.1-0.3 history (``questions``, kept as it is) also becomes a one-turn
    conversation, so the History panel shows it and it can be continued."""
    # Literal columns, frozen: the questions table as releases 0.1.0-0.3.0 wrote it.
    rows = db.execute(
        "select id, asked_at, question, choices, language, answer, picked, model_file, model_sha256, "
        "quantization, device, completion_tokens, tokens_per_second, finish_reason from questions").fetchall()
    for (qid, asked_at, question, choices, language, answer, picked, model_file, sha256, quantization, device,
         completion_tokens, tokens_per_second, finish_reason) in rows:
        conversation_id = f"question-{qid}"
        db.table("conversations").insert({
            "id": conversation_id, "created_at": asked_at, "updated_at": asked_at, "language": language,
            "title": (question or "")[:80], "model_file": model_file, "dropped": 0}, ignore=True)
        db.table("turns").insert({
            "conversation_id": conversation_id, "position": 0, "asked_at": asked_at, "question": question or "",
            "choices": choices or "[]", "chosen": picked or "", "answer": answer or "", "thinking": "",
            "model_file": model_file, "model_sha256": sha256, "quantization": quantization, "device": device,
            "engine": "local", "tokens_per_second": tokens_per_second, "completion_tokens": completion_tokens,
            "finish_reason": finish_reason}, ignore=True)


@migration
def m006_run_benchmark(db: sqlite_utils.Database) -> None:
    """``runs.benchmark``: which question set a run asked (the paper-style table's rows); the runs
    before 0.5.0 all asked IgakuQA."""
    if "benchmark" not in db.table("runs").columns_dict:
        db.table("runs").add_column("benchmark", str)
    db.execute("update runs set benchmark = 'igakuqa' where benchmark is null")


@migration
def m007_paper_response(db: sqlite_utils.Database) -> None:
    """``answers.paper_response``: the line the paper's harness reads (``gestalt_paper`` and ``exact``
    judge it); empty for answers stored before 0.5.0, which those two metrics judged on ``response``."""
    if "paper_response" not in db.table("answers").columns_dict:
        db.table("answers").add_column("paper_response", str)


@migration
def m008_run_training_overlap(db: sqlite_utils.Database) -> None:
    """``runs.training_overlap``: the model's recorded overlap of its training data with the benchmark
    sets (JSON, :mod:`app.bench.overlap`); NULL for a model without a record and for older runs."""
    if "training_overlap" not in db.table("runs").columns_dict:
        db.table("runs").add_column("training_overlap", str)


@migration
def m009_conversation_owner(db: sqlite_utils.Database) -> None:
    """``conversations.owner``: the login that kept a conversation, who alone lists, opens and deletes it;
    NULL for one kept without a login (``chat --history``, a loopback server) and for older ones."""
    if "owner" not in db.table("conversations").columns_dict:
        db.table("conversations").add_column("owner", str)
    db.table("conversations").create_index(["owner", "updated_at"], if_not_exists=True)
