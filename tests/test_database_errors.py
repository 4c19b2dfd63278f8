"""Every SQLite open, lock and read-only problem is a clear message through the real CLI, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.bench import store
from app.db import DatabaseError, connect, default_db_path, open_db
from tests.bench.conftest import write_block
from tests.conftest import assert_clean_error, run_cli
from tests.test_db_upgrade import FIXTURE


def new_database(path: Path) -> Path:
    db = open_db(path)
    try:
        store.finish_run(db, store.create_run(db, {"config_key": "k", "model_file": "m.gguf"}), "complete")
    finally:
        db.close()
    return path


def make_read_only(path: Path) -> Iterator[Path]:
    """``path`` made unwritable for this user (root ignores modes: the file is made immutable instead)."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        yield path
        path.chmod(0o644)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode != 0:
        pytest.skip("running as root on a file system without chattr +i: cannot make a read-only file")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.fixture
def read_only_db(tmp_path: Path) -> Iterator[Path]:
    yield from make_read_only(new_database(tmp_path / "ro.db"))


@pytest.fixture
def read_only_old_db(tmp_path: Path) -> Iterator[Path]:
    """A 0.1.0 database (it needs migrations) that cannot be written."""
    yield from make_read_only(Path(shutil.copy(FIXTURE, tmp_path / "old.db")))


def test_read_only_database_lists_runs(read_only_db: Path) -> None:
    assert not os.access(read_only_db, os.W_OK)
    result = run_cli("bench", "list", "--db", str(read_only_db), "--json")
    assert result.returncode == 0, result.stderr
    assert [r["model_file"] for r in json.loads(result.stdout)] == ["m.gguf"]


def test_read_only_database_needing_an_upgrade_says_so(read_only_old_db: Path) -> None:
    result = run_cli("bench", "list", "--db", str(read_only_old_db))
    assert_clean_error(result, str(read_only_old_db), "is read-only and needs an upgrade")


def test_bench_run_on_a_read_only_database_fails_before_loading_the_model(read_only_db: Path, tmp_path: Path) -> None:
    data = write_block(tmp_path / "igakuqa")
    result = run_cli("bench", "run", "--db", str(read_only_db), "--data-dir", str(data),
                     "--model", str(tmp_path / "absent.gguf"))
    assert_clean_error(result, f"The database {read_only_db} is read-only")


@pytest.fixture
def locked_old_db(tmp_path: Path) -> Iterator[Path]:
    """A 0.1.0 database (rollback journal) that another connection holds with BEGIN EXCLUSIVE."""
    path = Path(shutil.copy(FIXTURE, tmp_path / "locked.db"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield path
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_locked_database_gives_a_clear_message_within_seconds(locked_old_db: Path) -> None:
    start = time.monotonic()
    result = run_cli("bench", "list", "--db", str(locked_old_db))
    elapsed = time.monotonic() - start
    assert_clean_error(result, str(locked_old_db), "in use by another process")
    assert elapsed < 8, elapsed


def test_bench_run_on_a_locked_database_fails_before_loading_the_model(tmp_path: Path) -> None:
    """In WAL mode readers go on; a writer (bench run) waits for the lock, briefly, before the model loads."""
    path = new_database(tmp_path / "busy.db")
    data = write_block(tmp_path / "igakuqa")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert run_cli("bench", "list", "--db", str(path), "--json").returncode == 0
        start = time.monotonic()
        result = run_cli("bench", "run", "--db", str(path), "--data-dir", str(data),
                         "--model", str(tmp_path / "absent.gguf"))
        elapsed = time.monotonic() - start
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_clean_error(result, "in use by another process")
    assert elapsed < 8, elapsed


def test_writes_in_connect_become_database_errors(tmp_path: Path) -> None:
    path = new_database(tmp_path / "busy.db")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DatabaseError, match="in use by another process"), connect(path) as db:
            store.create_run(db, {"config_key": "k2"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.parametrize("command", [["list"], ["show", "1"], ["compare", "1", "2"], ["export", "1"]])
def test_mistyped_db_is_not_created(command: list[str], tmp_path: Path) -> None:
    typo = tmp_path / "jmedlm.db"
    result = run_cli("bench", *command, "--db", str(typo))
    assert_clean_error(result, f"No database at {typo}")
    assert not typo.exists()


def test_bench_run_checks_its_data_before_it_creates_a_new_database(tmp_path: Path) -> None:
    new = tmp_path / "fresh.db"
    result = run_cli("bench", "run", "--db", str(new), "--data-dir", str(tmp_path / "no-data"),
                     "--model", str(tmp_path / "absent.gguf"))
    assert_clean_error(result, "No question set", "no such file or folder")
    assert "Creating a new database" not in result.stderr and not new.exists()
    result = run_cli("bench", "run", "--db", str(new), "--data-dir", str(write_block(tmp_path / "igakuqa")),
                     "--model", str(tmp_path / "absent.gguf"))
    assert_clean_error(result, f"Creating a new database at {new}", "absent.gguf")
    assert new.exists()


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("patient list, not a database\n" * 100)
    result = run_cli("bench", "list", "--db", str(notes))
    assert_clean_error(result, f"{notes} is not a readable JMedLLM database")
    assert notes.read_text().startswith("patient list")


def test_another_programs_database_is_not_written_to(tmp_path: Path) -> None:
    """Its tables are left alone: the app's tables were added to a browser's history file."""
    foreign = tmp_path / "places.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("create table moz_places(id integer primary key, url text)")
    conn.execute("insert into moz_places(url) values ('https://example.org')")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    for command in (("bench", "list"), ("bench", "show", "1")):
        result = run_cli(*command, "--db", str(foreign))
        assert_clean_error(result, f"{foreign} is another program's database (tables moz_places)")
    with pytest.raises(DatabaseError, match="not a JMedLLM database"):
        open_db(foreign)
    assert foreign.read_bytes() == before


def test_the_default_database_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Older releases left it readable by group and others; a --db of the user's choosing keeps its mode."""
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(tmp_path))
    for name in ("jmedllm.db", "jmedllm.db-wal", "other.db"):
        (tmp_path / name).write_bytes(b"")
        os.chmod(tmp_path / name, 0o644)
    assert default_db_path() == tmp_path / "jmedllm.db"
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"jmedllm.db": 0o600, "jmedllm.db-wal": 0o600, "other.db": 0o644}
