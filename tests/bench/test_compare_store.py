"""Exact McNemar, the paired comparison, and the SQLite schema's guarantees."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.bench import store
from app.bench.compare import compare_answers, mcnemar_exact
from app.db import open_db


def test_mcnemar_exact() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)


def test_compare_answers() -> None:
    def row(pid: str, ok: int, picked: str) -> dict:
        return {"problem_id": pid, "language": "ja", "gestalt_paper": ok, "picked": picked, "gold": "a",
                "raw_output": f"{picked}\n"}
    a = [row("1", 1, "a"), row("2", 0, "b"), row("3", 0, "c"), row("4", 1, "a")]
    b = [row("1", 1, "a"), row("2", 1, "a"), row("3", 1, "a"), row("5", 1, "a")]
    result = compare_answers(a, b)
    assert result["paired"] == 3 and result["only_in_a"] == 1 and result["only_in_b"] == 1
    assert (result["only_a_correct"], result["only_b_correct"]) == (0, 2)
    assert [d["problem_id"] for d in result["differences"]] == ["2", "3"]
    assert result["mcnemar_exact_p"] == 0.5
    assert result["different_outputs"] == 2  # the same pick is the same text here


def test_schema_wal_foreign_keys_and_no_duplicates(tmp_path: Path) -> None:
    db = open_db(tmp_path / "x.db")
    assert db.journal_mode == "wal"
    run_id = store.create_run(db, {"config_key": "k", "n_items": 2})
    store.add_answer(db, {"run_id": run_id, "problem_id": "116A1", "language": "ja", "gestalt_paper": 1})
    with pytest.raises(sqlite3.IntegrityError):
        store.add_answer(db, {"run_id": run_id, "problem_id": "116A1", "language": "ja", "gestalt_paper": 0})
    with pytest.raises(sqlite3.IntegrityError):  # foreign key: no such run
        store.add_answer(db, {"run_id": 999, "problem_id": "116A1", "language": "ja"})
    assert store.get_run(db, run_id)["n_answered"] == 1
    assert store.answered_keys(db, run_id) == {("116A1", "ja")}
    unfinished = store.find_unfinished(db, "k")
    assert unfinished is not None and unfinished["id"] == run_id
    store.finish_run(db, run_id, "complete")
    assert store.find_unfinished(db, "k") is None
    indexes = {tuple(i.columns): i.unique for i in db.table("answers").indexes}
    assert indexes[("run_id", "problem_id", "language")]


def test_an_answer_and_its_count_are_written_together(tmp_path: Path) -> None:
    db = open_db(tmp_path / "x.db")
    run_id = store.create_run(db, {"config_key": "k", "n_items": 2})
    db.execute("create trigger no_count before update of n_answered on runs begin select raise(abort, 'cut'); end")
    with pytest.raises(sqlite3.IntegrityError, match="cut"):  # the process dies between the two writes
        store.add_answer(db, {"run_id": run_id, "problem_id": "116A1", "language": "ja", "gestalt_paper": 1})
    assert store.answered_keys(db, run_id) == set()  # the answer went with its count
    db.execute("drop trigger no_count")
    store.add_answer(db, {"run_id": run_id, "problem_id": "116A1", "language": "ja", "gestalt_paper": 1})
    db.execute("update runs set n_answered = 7 where id = ?", [run_id])  # a count that drifted (0.1.0)
    db.conn.commit()
    store.claim_run(db, run_id)
    assert store.get_run(db, run_id)["n_answered"] == 1
