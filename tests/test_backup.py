"""`jmedllm db backup / restore / check` through the real CLI, on real SQLite files, while another process writes."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

from app.backup import PAGES_PER_STEP, BackupError, backup_database, inspect_database
from app.bench import store
from app.db import connect, open_db
from app.migrations import MIGRATIONS, Migrations, m001_initial, m002_model_loads, m003_run_engine
from app.timestamps import utc_now
from tests.bench.conftest import write_block
from tests.conftest import assert_clean_error, run_cli, start_server, stop_server

PAD = "患者の質問 " * 200  # about 3 KB of UTF-8 per answer: a database of several backup steps


def add_run(db: sqlite_utils.Database, answers: int = 3) -> None:
    """A finished run with ``answers`` answers, and a conversation of two turns (each its own transaction)."""
    run_id = store.create_run(db, {"config_key": "k", "model_file": "m.gguf"})
    for number in range(answers):
        store.add_answer(db, {"run_id": run_id, "problem_id": f"p{number}", "language": "ja", "raw_output": PAD})
    with db.atomic():
        conversation = f"c{run_id}"
        db.table("conversations").insert({"id": conversation, "created_at": utc_now(), "updated_at": utc_now()})
        db.table("turns").insert_all({"conversation_id": conversation, "position": i, "question": f"質問 {run_id}-{i}"}
                                     for i in range(2))


def counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"select count(*) from {t}").fetchone()[0]
                for t in ("runs", "answers", "conversations", "turns")}
    finally:
        conn.close()


def consistent(path: Path) -> None:
    """Every run counts exactly the answers stored for it, every conversation has both its turns."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("select count(*) from runs r where n_answered != "
                            "(select count(*) from answers a where a.run_id = r.id)").fetchone()[0] == 0
        assert conn.execute("select count(*) from conversations c where 2 != "
                            "(select count(*) from turns t where t.conversation_id = c.id)").fetchone()[0] == 0
    finally:
        conn.close()


def ids(path: Path, table: str) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute(f"select id from {table} order by id")]
    finally:
        conn.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A database of several backup steps: 800 runs of 3 answers, 800 conversations."""
    path = tmp_path / "data" / "jmedllm.db"
    with connect(path) as db:
        db.execute("PRAGMA synchronous = OFF")  # no fsync per transaction: quick to fill
        for _ in range(800):
            add_run(db)
    assert path.stat().st_size > 2 * PAGES_PER_STEP * 4096  # three steps or more
    return path


class Writer:
    """Another thread of this process adding runs and conversations until stopped, each in its own transactions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stop = threading.Event()
        self.added = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with connect(self.path) as db:
            while not self.stop.is_set():
                add_run(db, answers=1)
                self.added += 1

    def __enter__(self) -> Writer:
        self.thread.start()
        while self.added < 5:
            self.stop.wait(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_backup_while_another_process_writes_holds_every_row_committed_before(database: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backups" / "jmedllm-backup.db"
    backup.parent.mkdir(mode=0o700)
    with Writer(database) as writer:
        before = counts(database)
        answer_ids = ids(database, "answers")
        result = run_cli("db", "backup", str(backup), "--db", str(database))
        added_during = writer.added
    assert result.returncode == 0, result.stderr
    after = counts(database)
    copied = counts(backup)
    assert all(before[t] <= copied[t] < after[t] for t in before), (before, copied, after)  # a snapshot mid-write
    assert ids(backup, "answers")[: len(answer_ids)] == answer_ids
    consistent(backup)
    assert added_during > 5
    assert "integrity: ok" in result.stdout
    assert f"runs {copied['runs']:,}, answers {copied['answers']:,}" in result.stdout
    assert f"schema: {MIGRATIONS.names[-1]} ({len(MIGRATIONS.names)} of {len(MIGRATIONS.names)} migrations)" \
        in result.stdout
    assert "mode 600" in result.stdout
    assert mode(backup) == 0o600
    assert sorted(p.name for p in backup.parent.iterdir()) == [backup.name]  # one file: no temp, -wal or -journal
    assert sqlite3.connect(backup).execute("pragma journal_mode").fetchone()[0] == "delete"


def test_restore_gives_back_every_row_and_keeps_the_replaced_database(database: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    assert run_cli("db", "backup", str(backup), "--db", str(database)).returncode == 0
    saved = {t: ids(backup, t) for t in ("runs", "answers", "turns")}
    with connect(database) as db:  # work after the backup, then lost by restoring it
        add_run(db)
        db.execute("delete from turns where conversation_id = 'c1'")
        db.execute("delete from conversations where id = 'c1'")
        db.conn.commit()
    changed = counts(database)
    result = run_cli("db", "restore", str(backup), "--db", str(database))
    assert result.returncode == 0, result.stderr
    assert {t: ids(database, t) for t in saved} == saved
    consistent(database)
    (kept,) = database.parent.glob("jmedllm.db.before-restore-*")
    assert counts(kept) == changed and mode(kept) == 0o600
    assert str(kept) in result.stdout and "integrity: ok" in result.stdout
    with connect(database) as db:  # the restored database is the app's again: WAL, writable
        assert db.journal_mode == "wal"
        add_run(db)


def test_restore_onto_a_new_machine_creates_a_private_database(database: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    backup_database(database, backup)
    target = tmp_path / "new-machine" / "jmedllm.db"
    result = run_cli("db", "restore", str(backup), "--db", str(target))
    assert result.returncode == 0, result.stderr
    assert counts(target) == counts(database)
    assert mode(target) == 0o600 and mode(target.parent) == 0o700
    assert "replaced" not in result.stdout


def test_restore_refuses_while_another_process_has_the_database_open(database: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    backup_database(database, backup)
    before = counts(database)
    held = sqlite3.connect(database)
    try:
        held.execute("select count(*) from runs").fetchone()  # open and idle, as a server between requests
        result = run_cli("db", "restore", str(backup), "--db", str(database))
    finally:
        held.close()
    assert_clean_error(result, "is open in another process", "systemctl stop jmedllm")
    assert counts(database) == before
    assert not list(database.parent.glob("*.before-restore-*"))


@pytest.mark.slow
def test_restore_waits_for_an_idle_server_to_stop(database: Path, tmp_path: Path, demo_model_path: Path) -> None:
    # Between questions a server holds no SQLite lock; replacing the database under it let its pages save
    # into the restored file conversations of the replaced one.
    backup = tmp_path / "backup.db"
    backup_database(database, backup)
    before = counts(database)
    server = start_server(["--model", "demo", "--ctx", "512", "--history"], tmp_path / "server.log", database)
    try:
        result = run_cli("db", "restore", str(backup), "--db", str(database))
        assert_clean_error(result, "is in use by a running jmedllm", "systemctl stop jmedllm")
        assert counts(database) == before and not list(database.parent.glob("*.before-restore-*"))
    finally:
        stop_server(server)
    result = run_cli("db", "restore", str(backup), "--db", str(database))  # stopped: the restore goes ahead
    assert result.returncode == 0, result.stderr


def test_an_existing_file_is_replaced_only_with_force(database: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    backup.write_text("an older backup")
    assert_clean_error(run_cli("db", "backup", str(backup), "--db", str(database)), str(backup), "--force")
    assert backup.read_text() == "an older backup"
    result = run_cli("db", "backup", str(backup), "--db", str(database), "--force")
    assert result.returncode == 0, result.stderr
    assert counts(backup) == counts(database)


def test_backup_of_a_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "jmedllm.db"
    result = run_cli("db", "backup", str(tmp_path / "b.db"), "--db", str(missing))
    assert_clean_error(result, f"No database at {missing}")
    assert not missing.parent.exists() and not (tmp_path / "b.db").exists()


def test_the_database_itself_is_not_a_backup_target(database: Path) -> None:
    assert_clean_error(run_cli("db", "backup", str(database), "--db", str(database), "--force"),
                       "is the database itself")


def old_database(path: Path) -> Path:
    """A database as a 0.4 release left it: the first three migrations only, a run and a 0.1-0.3 question."""
    partial = Migrations()
    for step in (m001_initial, m002_model_loads, m003_run_engine):
        partial.register(step)
    db = sqlite_utils.Database(path)
    try:
        partial.apply(db)
        store.finish_run(db, store.create_run(db, {"config_key": "k", "model_file": "old.gguf"}), "complete")
        db.table("questions").insert({"asked_at": utc_now(), "question": "古い質問", "choices": "[]", "language": "ja",
                                      "answer": "答え", "picked": "", "model_file": "old.gguf"})
    finally:
        db.close()
    return path


def test_an_older_backup_is_upgraded_when_restored(tmp_path: Path) -> None:
    backup = old_database(tmp_path / "old-backup.db")
    checked = run_cli("db", "check", "--db", str(backup))
    assert checked.returncode == 0, checked.stderr
    assert f"m003_run_engine (3 of {len(MIGRATIONS.names)} migrations); older" in checked.stdout
    assert "rows: runs 1, answers 0, questions 1" in checked.stdout  # the history of 0.1-0.3 is shown, not only runs
    target = tmp_path / "data" / "jmedllm.db"
    result = run_cli("db", "restore", str(backup), "--db", str(target))
    assert result.returncode == 0, result.stderr
    assert f"upgraded from an older JMedLLM: {', '.join(MIGRATIONS.names[3:])}" in result.stdout
    with connect(target) as db:
        assert MIGRATIONS.pending(db) == []
        assert store.get_run(db, 1)["benchmark"] == "igakuqa"  # m006 filled it in
        assert [row["question"] for row in db.table("turns").rows] == ["古い質問"]  # m005 made it a conversation


def test_a_backup_from_a_newer_version_is_refused(database: Path, tmp_path: Path) -> None:
    backup = tmp_path / "newer.db"
    backup_database(database, backup)
    conn = sqlite3.connect(backup)
    conn.execute("insert into _migrations (name, applied_at) values ('m999_from_the_future', ?)", [utc_now()])
    conn.commit()
    conn.close()
    target = tmp_path / "elsewhere" / "jmedllm.db"
    result = run_cli("db", "restore", str(backup), "--db", str(target))
    assert_clean_error(result, "newer JMedLLM", "m999_from_the_future", "Upgrade JMedLLM")
    assert not target.exists()
    assert "newer than this JMedLLM: m999_from_the_future" in run_cli("db", "check", "--db", str(backup)).stdout


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database " * 100)
    assert_clean_error(run_cli("db", "restore", str(notes), "--db", str(tmp_path / "jmedllm.db")),
                       "not a readable JMedLLM database")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("create table notes (text)").connection.close()
    assert_clean_error(run_cli("db", "restore", str(other), "--db", str(tmp_path / "jmedllm.db")),
                       "not a JMedLLM database")
    assert not (tmp_path / "jmedllm.db").exists()
    assert_clean_error(run_cli("db", "check", "--db", str(other)), "not a JMedLLM database (its tables: notes)")
    empty = tmp_path / "empty.db"
    empty.touch()
    assert_clean_error(run_cli("db", "check", "--db", str(empty)), "not a JMedLLM database (it holds no tables)")
    assert empty.read_bytes() == b""


def test_a_device_or_pipe_is_never_replaced_by_a_backup(tmp_path: Path) -> None:
    source = old_database(tmp_path / "jmedllm.db")
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    assert_clean_error(run_cli("db", "backup", str(pipe), "--db", str(source), "--force"), "not a regular file")
    assert stat.S_ISFIFO(pipe.lstat().st_mode)


def test_a_missing_folder_is_not_created(tmp_path: Path) -> None:
    """A mistyped folder (or a nightly timer's) would start a new backup tree unnoticed."""
    source = old_database(tmp_path / "jmedllm.db")
    target = tmp_path / "backups-typo" / "nightly" / "b.db"
    assert_clean_error(run_cli("db", "backup", str(target), "--db", str(source)),
                       f"The folder {target.parent} does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jmedllm.db"]


def test_a_place_that_cannot_be_written_is_one_clear_line(tmp_path: Path) -> None:
    source = old_database(tmp_path / "jmedllm.db")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    for command in (("db", "backup", str(blocker / "b.db"), "--db", str(source)),
                    ("db", "restore", str(source), "--db", str(blocker / "jmedllm.db"))):
        result = run_cli(*command)
        assert_clean_error(result, f"Cannot write {blocker / ('b.db' if command[1] == 'backup' else 'jmedllm.db')}")
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert blocker.read_text() == "a file where the folder should be"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jmedllm.db", "not-a-folder"]


def damage_an_index(path: Path) -> None:
    """Overwrite the cells of an index's root page: the rows stay readable, the index no longer matches them."""
    conn = sqlite3.connect(path)
    try:
        page_size = conn.execute("pragma page_size").fetchone()[0]
        root = conn.execute("select rootpage from sqlite_master where name = 'idx_answers_problem_id'").fetchone()[0]
    finally:
        conn.close()
    with path.open("r+b") as handle:
        handle.seek((root - 1) * page_size + page_size // 2)
        handle.write(b"\xff" * (page_size // 2))


@pytest.fixture
def damaged(database: Path) -> Path:
    open_db(database).close()  # the WAL folded into the file before it is damaged
    conn = sqlite3.connect(database)
    conn.execute("pragma journal_mode=delete")
    conn.close()
    damage_an_index(database)
    return database


def test_check_reports_a_damaged_database(damaged: Path) -> None:
    result = run_cli("db", "check", "--db", str(damaged))
    assert_clean_error(result, "is damaged", "jmedllm db restore")
    assert "integrity: ok" not in result.stdout


def test_bench_run_refuses_a_damaged_database_before_loading_the_model(damaged: Path, tmp_path: Path) -> None:
    before = damaged.read_bytes()
    result = run_cli("bench", "run", "--db", str(damaged), "--data-dir", str(write_block(tmp_path / "igakuqa")),
                     "--model", str(tmp_path / "absent.gguf"))
    assert_clean_error(result, f"The database {damaged} is damaged", "nothing was written", "jmedllm db restore")
    after = damaged.read_bytes()
    assert after[100:] == before[100:]  # only the 100-byte file header changed: the journal mode set to WAL


def test_a_damaged_database_gives_no_backup(damaged: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    with pytest.raises(BackupError, match="integrity check"):
        backup_database(damaged, backup)
    assert not backup.exists() and not list(tmp_path.glob(".backup.db.*"))


def test_progress_is_reported_step_by_step(database: Path, tmp_path: Path) -> None:
    reports: list[tuple[int, int]] = []
    summary = backup_database(database, tmp_path / "b.db", on_progress=lambda *report: reports.append(report))
    total = reports[-1][1]
    assert len(reports) == -(-total // PAGES_PER_STEP) >= 3
    assert [done for done, _ in reports] == sorted(done for done, _ in reports) and reports[-1] == (total, total)
    assert summary.path == tmp_path / "b.db" and summary.intact and summary.pending == ()
    assert summary.rows == counts(database) == inspect_database(tmp_path / "b.db").rows


@pytest.fixture(autouse=True)
def private_umask() -> Iterator[None]:
    """A permissive umask, so the 0600 modes checked here come from the app, not the environment."""
    old = os.umask(0o022)
    yield
    os.umask(old)
