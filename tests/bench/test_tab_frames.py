"""The Benchmark tab's tables and plots, built from a scripted run: labels in both languages, one
row per metric, years and categories, the history of runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.bench.data import Dataset
from app.bench.metrics import METRICS, PRIMARY
from app.bench.report import summarize
from app.bench.runner import RunConfig, run_benchmark
from app.bench.sets import SetSpec
from app.bench.sources import load_dataset
from app.bench.store import answers
from app.db import open_db
from app.ui.benchmark_tab import (
    MODE_CHOICES,
    PRIMARY_COLUMN,
    comparison_frame,
    history_frame,
    pass_fail_frame,
    results_frame,
    runs_frame,
)
from tests.bench.conftest import write_block
from tests.bench.test_runner_scripted import choices_of
from tests.scripted_engine import ScriptedEngine


@pytest.fixture()
def finished(tmp_path: Path) -> tuple[Path, Dataset]:
    """Two complete runs on a hand-made year: every block, the first right and the second wrong."""
    dataset = load_dataset(write_block(tmp_path / "igakuqa", n=2))
    db = tmp_path / "b.db"
    engine = ScriptedEngine(lambda p: choices_of(p)[0 if "問題1\n" in p or "Question 1\n" in p else 3])
    list(run_benchmark(engine, db, RunConfig(SetSpec("full"), ("ja",)), dataset=dataset))
    list(run_benchmark(engine, db, RunConfig(SetSpec("full"), ("ja", "en")), dataset=dataset))
    return db, dataset


def test_results_table_has_every_metric_labelled_in_the_ui_language(finished: tuple[Path, Dataset]) -> None:
    db, dataset = finished
    summary = summarize(answers(open_db(db), 2), dataset)
    for ui_lang in ("en", "ja"):
        frame = results_frame(summary, ui_lang)
        labels = [m.label(ui_lang) for m in METRICS.values()]
        assert [row for row in frame["metric"] if row in labels] == labels * 2  # ja and en rows
        assert set(frame.loc[frame["metric"].isin(labels), "accuracy %"]) == {50.0}
    assert "Gestalt（論文方式）" in set(results_frame(summary, "ja")["metric"])
    assert list(results_frame({}).columns) == ["language", "metric", "correct", "total", "accuracy %"]


def test_pass_fail_and_comparison_frames(finished: tuple[Path, Dataset]) -> None:
    db, dataset = finished
    rows = answers(open_db(db), 1)
    summary = summarize(rows, dataset)
    frame = pass_fail_frame(summary)
    assert set(frame["estimate"]) == {"image questions counted wrong", "text-only projection"}
    assert set(frame["year"]) == {2022} and set(frame["result"]) == {"FAIL"}
    by_year = comparison_frame(rows, dataset, "year")
    assert by_year.to_dict("records") == [{"year": "2022", "bar": "2022 · this model", "who": "this model",
                                           "accuracy": 0.5}]
    by_category = comparison_frame(rows, dataset, "category")
    assert list(by_category["category"]) == ["test"]


def test_runs_and_history(finished: tuple[Path, Dataset], tmp_path: Path) -> None:
    db, _ = finished
    runs = runs_frame(db)
    assert list(runs["id"]) == [2, 1] and list(runs["answered"]) == ["24/24", "12/12"]
    assert list(runs[PRIMARY_COLUMN]) == [50.0, 50.0]
    history = history_frame(runs)
    assert list(history["run"]) == [1, 2] and list(history["series"]) == ["generate · ja", "generate · both"]
    assert runs_frame(tmp_path / "missing.db").empty and history_frame(runs_frame(tmp_path / "missing.db")).empty


def test_mode_choices_come_from_the_registry() -> None:
    assert [value for _, value in MODE_CHOICES] == ["generate", "loglik"]
    assert PRIMARY_COLUMN == f"{PRIMARY} %"
