"""Whether a benchmark run is running comes from its lock (app.bench.run_lock), never from its pid:
a run held by a live process shows running and is not taken over; one whose process is gone, or
whose pid now belongs to another process (a reboot, or a restarted serve: this very process),
shows interrupted and resumes. Real processes, real SQLite, a scripted engine: seconds."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

from app.bench import run_lock, store
from app.bench.data import Dataset
from app.bench.runner import RunBusy, RunConfig, run_benchmark
from app.bench.sets import SetSpec
from app.bench.sources import load_dataset
from app.db import connect
from tests.bench.conftest import write_block
from tests.conftest import REPO_ROOT
from tests.scripted_engine import ScriptedEngine

CONFIG = RunConfig(SetSpec("quick", quick_size=6), ("ja",))  # 6 questions
ANSWERED_FIRST = 2  # answers a run stores before its engine hangs

# A `jmedllm bench run` stand-in: the real runner, an engine that hangs after ANSWERED_FIRST answers.
HOLDER = f"""
import sys, time
from app.bench.runner import RunConfig, run_benchmark
from app.bench.sets import SetSpec
from app.bench.sources import load_dataset
from tests.scripted_engine import ScriptedEngine

engine = ScriptedEngine(lambda prompt: "あ" if len(engine.prompts) <= {ANSWERED_FIRST} else time.sleep(600) or "")
for event in run_benchmark(engine, sys.argv[2], {CONFIG!r}, None, load_dataset(sys.argv[1])):
    if event.done == {ANSWERED_FIRST}:
        print("holding", flush=True)
"""


@pytest.fixture()
def tiny(tmp_path: Path) -> Dataset:
    return load_dataset(write_block(tmp_path / "igakuqa", n=2))


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return tmp_path / "b.db"


def status(db: Path, run_id: int = 1) -> str:
    """The run's status as `bench list`, `bench show` and the Benchmark tab show it."""
    with connect(db) as handle:
        listed = {run["id"]: run["status"] for run in store.list_runs(handle)}
        assert store.get_run(handle, run_id)["status"] == listed[run_id]
        return listed[run_id]


def mark_running(db: Path, pid: int) -> None:
    """Make run 1's row say what a process killed mid-run left: running, in process ``pid``."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("update runs set status = 'running', pid = ?, ended_at = null where id = 1", [pid])
    conn.close()


def stopped_run(db: Path, tiny: Dataset) -> None:
    """Run 1, stopped after ANSWERED_FIRST answers (interrupted, resumable)."""
    cancel = threading.Event()
    for event in run_benchmark(ScriptedEngine(lambda _p: "あ"), db, CONFIG, cancel, tiny):
        if event.done == ANSWERED_FIRST:
            cancel.set()
    assert status(db) == "interrupted"


def resumes(db: Path, tiny: Dataset) -> None:
    events = list(run_benchmark(ScriptedEngine(lambda _p: "あ"), db, CONFIG, None, tiny))
    assert events[0].run_id == 1 and events[0].resumed == ANSWERED_FIRST
    assert events[-1].status == "complete" and events[-1].done == 6 and status(db) == "complete"


@pytest.fixture()
def unrelated_process() -> Iterator[int]:
    """The pid of a live process that runs no benchmark."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        yield sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_run_held_by_a_process_shows_running_until_it_is_killed(tiny: Dataset, db: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tiny.root), str(db)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = holder.stdout.readline()  # type: ignore[union-attr]
        assert line == "holding\n", line + holder.stdout.read()  # type: ignore[union-attr]
        assert status(db) == "running"
        with pytest.raises(RunBusy, match=f"Run 1 with these settings is running in process {holder.pid}"):
            list(run_benchmark(ScriptedEngine(lambda _p: "あ"), db, CONFIG, None, tiny))
    finally:
        holder.kill()
        holder.wait()
    assert status(db) == "interrupted"  # the kernel let go of its lock
    resumes(db, tiny)


def test_a_running_row_whose_pid_is_another_process_now_is_interrupted(tiny: Dataset, db: Path,
                                                                       unrelated_process: int) -> None:
    """After a reboot (or later) the pid stored with a run killed mid-run belongs to an unrelated process."""
    stopped_run(db, tiny)
    mark_running(db, unrelated_process)
    assert status(db) == "interrupted"
    resumes(db, tiny)


def test_a_running_row_with_this_process_pid_that_it_does_not_run_is_interrupted(tiny: Dataset, db: Path) -> None:
    """A serve restarted after a power loss that got the pid of the serve that was running a run."""
    stopped_run(db, tiny)
    mark_running(db, os.getpid())
    assert status(db) == "interrupted"
    resumes(db, tiny)


def test_a_run_of_an_older_version_left_running_is_interrupted(tiny: Dataset, db: Path) -> None:
    """The upgrade case: a row stored as running before runs were locked (no lock file ever existed)."""
    stopped_run(db, tiny)
    mark_running(db, os.getppid())
    assert not Path(f"{db}.runs/1.lock").exists()
    assert status(db) == "interrupted"
    resumes(db, tiny)


def test_a_run_in_a_thread_shows_running_to_another_thread(tiny: Dataset, db: Path) -> None:
    """Two threads of one serve: the Benchmark tab's run, and a page listing the runs."""
    go_on = threading.Event()
    engine = ScriptedEngine(lambda prompt: "あ" if len(engine.prompts) <= ANSWERED_FIRST or go_on.wait(30) else "")
    first = threading.Event()
    events: list = []

    def run() -> None:
        for event in run_benchmark(engine, db, CONFIG, None, tiny):
            events.append(event)
            if event.done == ANSWERED_FIRST:
                first.set()

    runner = threading.Thread(target=run)
    runner.start()
    try:
        assert first.wait(30)
        assert status(db) == "running"
        assert [oct(os.stat(p).st_mode & 0o777) for p in (f"{db}.runs", f"{db}.runs/1.lock")] == ["0o700", "0o600"]
        with pytest.raises(RunBusy, match=f"running in process {os.getpid()}"):
            list(run_benchmark(ScriptedEngine(lambda _p: "あ"), db, CONFIG, None, tiny))
        assert status(db) == "running"  # the refused second run took nothing from the first
    finally:
        go_on.set()
        runner.join(30)
    assert events[-1].status == "complete" and status(db) == "complete"
    assert list(Path(f"{db}.runs").iterdir()) == []  # its lock file went with it


def test_a_claim_that_meets_a_probe_tries_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process checking the run (a shared lock for a moment) does not make the run look busy."""
    db = sqlite_utils.Database(tmp_path / "b.db")
    lock = Path(f"{tmp_path / 'b.db'}.runs/7.lock")
    lock.parent.mkdir()
    probe = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o600)
    fcntl.flock(probe, fcntl.LOCK_SH)
    monkeypatch.setattr(run_lock.time, "sleep", lambda _s: os.close(probe))  # the probe ends during the pause
    with run_lock.running(db, 7):
        assert run_lock.is_running(db, 7)
    assert not run_lock.is_running(db, 7) and not lock.exists()


def test_a_database_whose_folder_cannot_take_the_lock_still_runs(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    db = sqlite_utils.Database(tmp_path / "b.db")
    Path(f"{tmp_path / 'b.db'}.runs").write_text("")  # a file where the lock folder would be
    with caplog.at_level(logging.WARNING, logger="app.bench.run_lock"), run_lock.running(db, 1):
        assert run_lock.is_running(db, 1)  # to this process, which runs it
        with pytest.raises(run_lock.RunHeld):
            with run_lock.running(db, 1):
                pass
    assert not run_lock.is_running(db, 1)
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot lock {tmp_path / 'b.db'}.runs/1.lock (File exists): other processes will see benchmark "
        "run 1 as interrupted"]


def test_an_in_memory_database_is_its_own(tmp_path: Path) -> None:
    one, other = sqlite_utils.Database(memory=True), sqlite_utils.Database(memory=True)
    with run_lock.running(one, 1):
        assert run_lock.is_running(one, 1) and not run_lock.is_running(other, 1)
    assert not run_lock.is_running(one, 1)
    assert list(tmp_path.iterdir()) == []
