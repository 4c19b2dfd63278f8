"""The runner, the metric and mode registries and the report on a scripted engine: no model, no
shared data (a hand-made IgakuQA-shaped folder), seconds to run."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.bench import metrics
from app.bench.data import Dataset
from app.bench.metrics import METRICS, Judged
from app.bench.report import summarize
from app.bench.runner import RunConfig, UnknownMode, run_benchmark
from app.bench.sets import SetSpec
from app.bench.sources import load_dataset
from app.bench.store import answer_columns, answers, get_run
from app.db import open_db
from app.engines.base import NotSupported
from tests.bench.conftest import write_block
from tests.scripted_engine import ScriptedEngine

QUESTION = re.compile(r"(?:問題|Question )(\d+)\s*\n(.*)\n", re.M)


def choices_of(prompt: str) -> list[str]:
    """The choices line of the last question in a paper-template prompt."""
    return QUESTION.findall(prompt)[-1][1].split(",")


def first_choice(prompt: str) -> str:
    return choices_of(prompt)[0] + "\n理由は省略。"


@pytest.fixture()
def tiny(tmp_path: Path) -> Dataset:
    """Two questions in each of the six blocks of 2022, every gold answer "a"."""
    return load_dataset(write_block(tmp_path / "igakuqa", n=2))


def run_all(engine: ScriptedEngine, db: Path, config: RunConfig, dataset: Dataset,
            cancel: threading.Event | None = None) -> list:
    return list(run_benchmark(engine, db, config, cancel, dataset))


def stored(db: Path, sql: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_run_stores_every_metric_per_answer_and_its_totals(tiny: Dataset, tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    engine = ScriptedEngine(first_choice)
    events = run_all(engine, db, RunConfig(SetSpec("paper"), ("ja", "en")), tiny)
    assert [e.done for e in events] == list(range(25)) + [24]
    assert events[-1].status == "complete" and events[-1].accuracy == 1.0
    rows = stored(db, "select * from answers order by id")
    assert len(rows) == 24 and {r["language"] for r in rows} == {"ja", "en"}
    for row in rows:
        # Japanese stops at the first complete line; English runs on (a later "### Answer:" would win)
        stopped = "first_line" if row["language"] == "ja" else "stop"
        assert row["picked"] == "a" and row["gold"] == "a" and row["finish_reason"] == stopped
        assert all(row[name] == 1 for name in METRICS)
        assert row["response"] in ("あ", "A1")
    db_handle = open_db(db)
    run = get_run(db_handle, 1)
    assert run["backend"] == "scripted" and run["backend_version"] == "test" and run["n_answered"] == 24
    summary = summarize(answers(db_handle, 1), tiny)
    assert set(summary["metrics"]) == set(METRICS)
    assert all(t["accuracy"] == 1.0 for t in summary["metrics"].values())


def test_reasoning_blocks_and_wrong_answers_are_scored_as_the_ask_tab_reads_them(tiny: Dataset,
                                                                               tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    engine = ScriptedEngine(lambda p: f"<think>\n{choices_of(p)[0]}?\n</think>\n{choices_of(p)[2]}\n")
    run_all(engine, db, RunConfig(SetSpec("quick", quick_size=3), ("ja",)), tiny)
    rows = stored(db, "select * from answers")
    assert len(rows) == 3
    for row in rows:
        assert row["picked"] == "c" and row["response"] == "う"
        assert all(row[name] == 0 for name in METRICS)


def test_stop_keeps_the_run_resumable_and_nothing_is_asked_twice(tiny: Dataset, tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    cancel = threading.Event()
    engine = ScriptedEngine(first_choice)
    config = RunConfig(SetSpec("paper"), ("ja",))
    done = []
    for event in run_benchmark(engine, db, config, cancel, tiny):
        done.append(event.done)
        if event.done == 5:
            cancel.set()
    assert done[-1] == 5 and stored(db, "select status from runs")[0]["status"] == "interrupted"
    asked = len(engine.prompts)
    events = run_all(engine, db, config, tiny)
    assert events[0].resumed == 5 and events[-1].status == "complete" and events[-1].done == 12
    assert len(engine.prompts) - asked == 7
    assert stored(db, "select count(*) n, count(distinct problem_id) d from answers")[0][:] == (12, 12)


def test_a_prompt_that_does_not_fit_is_stored_as_unanswerable(tiny: Dataset, tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    run_all(ScriptedEngine(first_choice, n_ctx=50), db, RunConfig(SetSpec("quick", quick_size=2), ("en",)), tiny)
    rows = stored(db, "select * from answers")
    assert len(rows) == 2
    for row in rows:
        assert row["finish_reason"].startswith("too_long: The prompt is")
        assert row["abstained"] == 1 and all(row[name] == 0 for name in METRICS)


def test_loglik_needs_the_capability_and_picks_the_most_likely_option(tiny: Dataset, tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    config = RunConfig(SetSpec("quick", quick_size=2), ("ja",), mode="loglik")
    with pytest.raises(NotSupported, match="loglik"):
        run_all(ScriptedEngine(first_choice), db, config, tiny)
    assert not db.exists() or not stored(db, "select * from runs")
    engine = ScriptedEngine(first_choice, scores=lambda _p, options: [-5.0, -1.0, -3.0, -9.0, -9.0][: len(options)])
    run_all(engine, db, config, tiny)
    rows = stored(db, "select * from answers")
    assert [r["picked"] for r in rows] == ["b", "b"] and all(r["finish_reason"] == "loglik" for r in rows)
    assert all(r["letter"] == 0 and r["completion_tokens"] == 0 for r in rows)


def test_an_unknown_mode_is_a_clear_error(tiny: Dataset, tmp_path: Path) -> None:
    with pytest.raises(UnknownMode, match="Unknown mode 'fast'; choose one of generate, loglik, paper"):
        run_all(ScriptedEngine(first_choice), tmp_path / "b.db", RunConfig(mode="fast"), tiny)


@pytest.fixture()
def extra_metric() -> Iterator[str]:
    """A metric declared for one test: the first letter was picked, whatever the gold."""

    @metrics.metric("picked_a", "Picked a", "aを選択", "Picked option a")
    def picked_a(j: Judged) -> bool:
        return j.picked[:1] == ("a",)

    yield "picked_a"
    del METRICS["picked_a"]


def test_a_new_metric_is_one_declaration(extra_metric: str, tiny: Dataset, tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    engine = ScriptedEngine(lambda p: choices_of(p)[0] if "問題1" in p.split("### 入力：")[-1] else choices_of(p)[1])
    run_all(engine, db, RunConfig(SetSpec("paper", blocks="A"), ("ja",)), tiny)
    assert extra_metric in answer_columns()
    rows = stored(db, f"select problem_id, {extra_metric} from answers order by problem_id")
    assert [tuple(r) for r in rows] == [("116A1", 1), ("116A2", 0)]
    summary = summarize(answers(open_db(db), 1))
    assert summary["metrics"][extra_metric] == {"correct": 1, "total": 2, "accuracy": 0.5}


def test_the_stored_set_label_says_what_was_asked(tiny: Dataset, tmp_path: Path) -> None:
    """A limited run is not stored under the full set's name, nor a quick set under more questions than it has."""
    db = tmp_path / "labels.db"
    engine = ScriptedEngine(first_choice)
    configs = {"quick20": RunConfig(SetSpec("quick", quick_size=20), ("ja",)),  # the 12 questions there are
               "limited": RunConfig(SetSpec("quick", quick_size=6), ("ja",), limit=3),
               "quick6": RunConfig(SetSpec("quick", quick_size=6), ("ja",))}
    for config in configs.values():
        run_all(engine, db, config, tiny)
    labels = [row["question_set"] for row in stored(db, "select question_set from runs order by id")]
    assert labels == ["quick12", "quick6/first3", "quick6"]
