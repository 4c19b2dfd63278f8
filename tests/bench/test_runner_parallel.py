"""The runner on an engine with several slots: questions in flight at once, every answer committed
as it arrives, a stop that keeps the run resumable, and a failing server waited for (scripted
engines; the real llama-server run is in tests/test_llama_server_engine.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.bench.data import Dataset
from app.bench.runner import RunConfig, run_benchmark
from app.bench.sets import SetSpec
from app.bench.sources import load_dataset
from app.db import open_db
from app.engines.base import EngineUnavailable, GenerationStats, Sampling
from tests.bench.conftest import write_block
from tests.bench.test_runner_scripted import first_choice, stored
from tests.scripted_engine import ScriptedEngine

CONFIG = RunConfig(SetSpec("paper"), ("ja", "en"))


@pytest.fixture()
def tiny(tmp_path: Path) -> Dataset:
    return load_dataset(write_block(tmp_path / "igakuqa", n=2))


class CountingEngine(ScriptedEngine):
    """Records the most generations that ran at once."""

    def __init__(self, slots: int) -> None:
        super().__init__(first_choice, pause_s=0.002, slots=slots)
        self.kind = "llama-server"
        self.running = 0
        self.most = 0
        self._count = threading.Lock()

    def _generate(self, prompt: str, sampling: Sampling, cancel: threading.Event | None,
                  stats: GenerationStats, conversation: str | None = None) -> Iterator[str]:
        with self._count:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            yield from super()._generate(prompt, sampling, cancel, stats, conversation)
        finally:
            with self._count:
                self.running -= 1


class FlakyServer(ScriptedEngine):
    """A served engine whose server 'dies' on the ``fail_at``-th request and is back after ``recover``."""

    def __init__(self, fail_at: int) -> None:
        super().__init__(first_choice, slots=3)
        self.kind = "openai"
        self.calls = 0
        self.fail_at = fail_at
        self.recovered = 0
        self._calls = threading.Lock()

    def _generate(self, prompt: str, sampling: Sampling, cancel: threading.Event | None,
                  stats: GenerationStats, conversation: str | None = None) -> Iterator[str]:
        with self._calls:
            self.calls += 1
            failing = self.calls == self.fail_at
        if failing:
            raise EngineUnavailable("The engine at http://127.0.0.1:1/v1 broke off.")
        return super()._generate(prompt, sampling, cancel, stats, conversation)

    def recover(self, timeout_s: float) -> bool:
        self.recovered += 1
        return True


def test_questions_run_in_parallel_and_every_answer_is_stored_once(tiny: Dataset, tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    engine = CountingEngine(slots=4)
    events = list(run_benchmark(engine, db, CONFIG, None, tiny))
    assert events[-1].status == "complete" and events[-1].done == 24 and events[-1].accuracy == 1.0
    assert engine.most == 4
    assert stored(db, "select count(*) n, count(distinct problem_id || language) d from answers")[0][:] == (24, 24)
    run = open_db(db).table("runs").get(1)
    assert (run["engine"], run["slots"], run["n_answered"]) == ("llama-server", 4, 24)
    assert run["wall_s"] > 0 and run["questions_per_minute"] > 0


def test_a_stop_in_flight_keeps_the_run_resumable(tiny: Dataset, tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    cancel = threading.Event()
    engine = CountingEngine(slots=3)
    for event in run_benchmark(engine, db, CONFIG, cancel, tiny):
        if event.done >= 5:
            cancel.set()
    first = stored(db, "select status, n_answered from runs")[0]
    assert first["status"] == "interrupted" and 5 <= first["n_answered"] < 24
    events = list(run_benchmark(engine, db, CONFIG, None, tiny))
    assert events[0].resumed == first["n_answered"] and events[-1].status == "complete"
    assert stored(db, "select count(*) n, count(distinct problem_id || language) d from answers")[0][:] == (24, 24)


def test_a_server_that_fails_mid_run_is_waited_for_and_nothing_is_lost(tiny: Dataset, tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    engine = FlakyServer(fail_at=7)
    events = list(run_benchmark(engine, db, CONFIG, None, tiny))
    assert events[-1].status == "complete" and events[-1].done == 24
    assert engine.recovered == 1 and engine.calls == 25  # the failed question was asked again
    assert stored(db, "select count(*) from answers")[0][0] == 24


def test_a_server_that_stays_down_fails_the_run_clearly_and_keeps_it_resumable(tiny: Dataset,
                                                                               tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    engine = FlakyServer(fail_at=3)
    engine.recover = lambda timeout_s: False  # type: ignore[method-assign]
    start = time.monotonic()
    with pytest.raises(EngineUnavailable, match="127.0.0.1:1"):
        list(run_benchmark(engine, db, CONFIG, None, tiny))
    assert time.monotonic() - start < 10
    run = stored(db, "select status, n_answered from runs")[0]
    assert run["status"] == "failed"
    assert stored(db, "select count(*) from answers")[0][0] == run["n_answered"] < 24
    events = list(run_benchmark(FlakyServer(fail_at=0), db, CONFIG, None, tiny))
    assert events[-1].status == "complete" and events[0].resumed == run["n_answered"]
