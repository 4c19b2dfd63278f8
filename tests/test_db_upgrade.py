"""Opening a database written by release 0.1.0: every row survives, and the schema is a fresh one's.

``fixtures/jmedllm-0.1.0.db`` was written by the 0.1.0 code itself (its ``store`` and ``history``
functions): two benchmark runs (complete, interrupted) with their answers, and three questions.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from app.bench import store
from app.conversations import list_conversations, load_conversation
from app.db import connect, open_db
from app.migrations import MIGRATIONS, Migrations

FIXTURE = Path(__file__).parent / "fixtures" / "jmedllm-0.1.0.db"
TABLES = ("questions", "runs", "answers")


def rows(path: Path) -> dict[str, list[tuple]]:
    """Every row of the three tables, read with plain sqlite3."""
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"select * from {t} order by id").fetchall() for t in TABLES}
    finally:
        conn.close()


def schema(path: Path) -> dict[str, str]:
    """CREATE statements of the three tables and their indexes, modulo whitespace and identifier quotes."""
    conn = sqlite3.connect(path)
    try:
        found = conn.execute("select name, sql from sqlite_master where tbl_name in (?, ?, ?) and sql is not null",
                             TABLES).fetchall()
    finally:
        conn.close()
    return {name: " ".join(sql.translate(str.maketrans("", "", '"[]`')).split()) for name, sql in found}


def migration_rows(db: sqlite_utils.Database) -> list[dict]:
    return list(db["_migrations"].rows_where(order_by="name"))


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    """A copy of the 0.1.0 database (the committed file itself is never opened)."""
    return Path(shutil.copy(FIXTURE, tmp_path / "jmedllm.db"))


def test_upgrade_keeps_every_run_answer_and_question(old_db: Path) -> None:
    before = rows(old_db)
    assert [len(before[t]) for t in TABLES] == [3, 2, 6]
    with connect(old_db) as db:
        assert [r["name"] for r in migration_rows(db)] == MIGRATIONS.names
        assert db.journal_mode == "wal"
        statuses = [r["status"] for r in store.list_runs(db)]
        assert statuses == ["interrupted", "complete"]
        assert store.answers(db, 2)[0]["raw_output"] == "答え: d\n禁忌肢の投与は避ける。"
    after = rows(old_db)
    width = {t: len(before[t][0]) for t in TABLES}
    assert {t: [row[: width[t]] for row in after[t]] for t in TABLES} == before  # every 0.1.0 value as it was
    # later columns: runs learnt their engine (0.4.0; old runs ran in process, one at a time) and
    # their question set (0.5.0; old runs all asked IgakuQA) and their model's recorded training overlap (none)
    assert {row[width["runs"]:] for row in after["runs"]} == {("local", None, 1, None, "igakuqa", None)}


def test_opening_again_applies_nothing(old_db: Path) -> None:
    with connect(old_db) as db:
        first = migration_rows(db)
    with connect(old_db) as db:
        assert MIGRATIONS.pending(db) == []
        assert MIGRATIONS.apply(db) == []
        assert migration_rows(db) == first


def test_upgraded_database_takes_new_runs_answers_and_questions(old_db: Path) -> None:
    with connect(old_db) as db:
        run_id = store.create_run(db, {"config_key": "k", "n_items": 1})
        assert run_id == 3
        store.add_answer(db, {"run_id": run_id, "problem_id": "116A1", "language": "ja", "gestalt_paper": 1})
        with pytest.raises(sqlite3.IntegrityError):  # the 0.1.0 UNIQUE index still holds
            store.add_answer(db, {"run_id": run_id, "problem_id": "116A1", "language": "ja"})
        with pytest.raises(sqlite3.IntegrityError):  # and so does the foreign key
            store.add_answer(db, {"run_id": 99, "problem_id": "116A1", "language": "ja"})
        store.finish_run(db, run_id, "complete")
        assert store.get_run(db, run_id)["n_answered"] == 1
        with pytest.raises(store.RunNotFound) as missing:
            store.get_run(db, 99)
        assert str(missing.value) == "No benchmark run 99"
    after = rows(old_db)
    assert [len(after[t]) for t in TABLES] == [3, 3, 7]


def test_old_questions_become_conversations_in_the_history(old_db: Path) -> None:
    old_questions = rows(old_db)["questions"]
    listed = list_conversations(old_db)
    assert len(listed) == len(old_questions) == 3
    for row in old_questions:
        conversation = load_conversation(old_db, f"question-{row[0]}")
        (turn,) = conversation.turns
        assert (turn.question, turn.answer, turn.stamp.file_name, turn.stamp.sha256) == (row[2], row[5], row[7], row[8])
        assert conversation.title == row[2][:80]
    assert rows(old_db)["questions"] == old_questions  # the old table is kept as it was


def test_fresh_database_has_the_upgraded_schema(old_db: Path, tmp_path: Path) -> None:
    open_db(old_db).close()
    fresh = tmp_path / "fresh" / "jmedllm.db"
    with connect(fresh) as db:
        assert [r["name"] for r in migration_rows(db)] == MIGRATIONS.names
    assert schema(fresh) == schema(old_db)
    assert set(schema(fresh)) == {*TABLES, "idx_runs_config_key_status", "idx_runs_started_at",
                                  "idx_answers_run_id_problem_id_language", "idx_answers_problem_id"}


def test_failing_migration_rolls_back(old_db: Path) -> None:
    before_rows, before_schema = rows(old_db), schema(old_db)
    broken = Migrations()

    @broken.register
    def m001_broken(db: sqlite_utils.Database) -> None:
        db.table("extra").create({"id": int}, pk="id")
        db.table("runs").update(1, {"status": "failed"})
        raise RuntimeError("half way")

    db = sqlite_utils.Database(old_db)
    try:
        with pytest.raises(RuntimeError, match="half way"):
            broken.apply(db)
        assert not db.conn.in_transaction
        assert set(db.table_names()) == set(TABLES)  # neither "extra" nor "_migrations"
        assert broken.pending(db) == ["m001_broken"]
    finally:
        db.close()
    assert (rows(old_db), schema(old_db)) == (before_rows, before_schema)
    with connect(old_db) as db:  # the real migrations still apply afterwards
        assert MIGRATIONS.pending(db) == []


def test_a_name_registers_once() -> None:
    registry = Migrations()

    def m001(db: sqlite_utils.Database) -> None:
        """Nothing."""

    registry.register(m001)
    with pytest.raises(ValueError, match="m001"):
        registry.register(m001)
