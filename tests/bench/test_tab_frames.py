"""The Benchmark tab's tables and plots, built from a scripted run: labels in both languages, one
row per metric, years and categories, the history of runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.bench import importing
from app.bench.data import DATA_ENV, DataError, Dataset
from app.bench.loaders.question_set import UNCLOSED_QUOTE
from app.bench.metrics import METRICS, PRIMARY
from app.bench.report import summarize
from app.bench.runner import RunConfig, run_benchmark
from app.bench.sets import SetSpec
from app.bench.sources import DEFAULT_SET, load_dataset
from app.bench.store import answers
from app.db import open_db
from app.security import Users
from app.ui.bench_data_panel import (
    IGAKUQA_LABEL,
    IGAKUQA_SET_CHOICES,
    DatasetCache,
    data_choices,
    lines_markdown,
    set_choices,
    status_markdown,
)
from app.ui.bench_table_view import make_table, notes_markdown, run_choices, table_frame, write_table
from app.ui.benchmark_tab import (
    MODE_CHOICES,
    PRIMARY_COLUMN,
    comparison_frame,
    export_name,
    history_frame,
    pass_fail_frame,
    results_frame,
    runs_frame,
    spec_for,
)
from app.ui.state import AppState, ServeOptions
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


@pytest.fixture()
def no_igakuqa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data folder, no clone configured and no ../shared/igakuqa to fall back on."""
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(tmp_path / "appdata"))
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setattr("app.bench.data.PROJECT_ROOT", tmp_path / "no-project")
    return tmp_path


def test_the_chooser_lists_imported_sets_and_the_cache_sees_each_import(no_igakuqa: Path) -> None:
    cache = DatasetCache()
    with pytest.raises(DataError):
        cache.get(DEFAULT_SET)
    missing = status_markdown(DEFAULT_SET, None, "IgakuQA data not found (looked in /x/<b>)")
    assert "jmedllm bench data add IgakuQA-main.zip" in missing and "github.com/jungokasai/IgakuQA" in missing
    assert "&lt;b&gt;" in missing and "<b>" not in missing
    assert "データがまだありません" in missing and "No IgakuQA data on this machine yet" in missing
    assert data_choices() == [(IGAKUQA_LABEL, DEFAULT_SET)]

    importing.add(write_block(no_igakuqa / "IgakuQA", n=2))  # imported while the "server" runs
    igakuqa = cache.get(DEFAULT_SET)
    assert len(igakuqa.questions) == 12 and cache.get(DEFAULT_SET) is igakuqa  # read once
    assert data_choices() == [(IGAKUQA_LABEL, DEFAULT_SET)]  # an imported IgakuQA is IgakuQA, not a second entry
    [bank] = importing.add(write_block(no_igakuqa / "bank", n=1), name="bank")
    assert data_choices()[1] == (f"{bank.label} (bank)", "bank")
    assert set_choices(DEFAULT_SET, igakuqa) == IGAKUQA_SET_CHOICES
    first = cache.get("bank")
    assert len(first.questions) == 6
    assert set_choices("bank", first) == [("Quick check (6) / クイック", "quick"),
                                          ("All questions (6) / 全問", "paper")]
    assert set_choices("bank", None) == [("Quick check / クイック", "quick"), ("All questions / 全問", "paper")]
    assert spec_for("quick", first).label() == "quick6" and spec_for("quick", igakuqa).label() == "quick12"
    ready = status_markdown("bank", first, "")
    assert "6 問 / questions" in ready and "日本語, English" in ready and first.fingerprint[:12] in ready
    importing.add(write_block(no_igakuqa / "bank2", n=2), name="bank", replace=True)
    again = cache.get("bank")  # the set imported again is read again
    assert again is not first and len(again.questions) == 12


def test_data_labels_and_errors_are_shown_as_plain_text(finished: tuple[Path, Dataset]) -> None:
    _, dataset = finished
    dataset.label = "<img src=x onerror=alert(1)> **bold** [link](http://x)"
    ready = status_markdown("bank", dataset, "")
    assert "<img" not in ready and "&lt;img" in ready and "\\*\\*bold\\*\\*" in ready and "\\[link\\]" in ready
    failed = status_markdown("bank", None, "line 1\n<script>")
    assert "<script>" not in failed and "読み込めません / cannot be read" in failed


def test_an_error_of_several_problems_keeps_one_problem_a_line() -> None:
    error = (f"bank.csv: 2 problems; fix them all and import again:\n  bank.csv row 3: {UNCLOSED_QUOTE}\n"
             "  bank.csv row 4 (m3): answer 'z' is <not> a choice letter")
    lines = lines_markdown(error).replace("\\", "").split("  \n")  # Markdown's hard line break, escapes dropped
    assert len(lines) == 3 and lines[0].startswith("bank.csv: 2 problems")
    assert lines[1].startswith("\u00a0" * 4 + "bank.csv row 3: a quote") and "&lt;not&gt;" in lines[2]
    japanese = lines_markdown(error, "ja").split("  \n")
    assert len(japanese) == 4 and japanese[2].startswith("\u00a0" * 4 + "→ この行で開いた引用符")
    assert lines_markdown("empty.csv: the file is empty; no question set to import", "ja").endswith(
        "→ ファイルが空です（0 バイト、空行だけ、または見出し行だけ）。問題を書いたファイルを選んでください。")


def test_only_an_administrator_may_import() -> None:
    engine = ScriptedEngine(lambda p: "")
    assert AppState(engine, ServeOptions()).is_admin(None)  # loopback, no logins: the local user
    assert not AppState(engine, ServeOptions(host="0.0.0.0")).is_admin(None)
    logins = ServeOptions(users=Users({}), admins=frozenset({"alice"}))
    assert AppState(engine, logins).is_admin("alice") and not AppState(engine, logins).is_admin("bob")
    assert not AppState(engine, logins).is_admin(None)


def test_runs_show_their_benchmark_and_exports_are_named_by_it(finished: tuple[Path, Dataset]) -> None:
    db, _ = finished
    assert list(runs_frame(db)["benchmark"]) == ["igakuqa", "igakuqa"]
    assert export_name({"id": 3, "benchmark": "bank"}) == "bank-run-3.csv"
    assert export_name({"id": 4, "benchmark": None}) == "igakuqa-run-4.csv"
    assert export_name({"id": 5, "benchmark": "../x"}) == "benchmark-run-5.csv"


def test_the_paper_table_view_shows_and_writes_the_chosen_runs(finished: tuple[Path, Dataset]) -> None:
    db, _ = finished
    assert [value for _, value in run_choices(db)] == [2, 1]
    assert run_choices(db)[0][0].startswith("#2 · scripted.gguf · igakuqa · both · generate")
    table = make_table(db, [1], reference=True)
    frame = table_frame(table)
    assert list(frame.columns[:3]) == ["benchmark", "language", "chance %"]
    assert list(zip(frame["benchmark"], frame["language"], strict=True)) == [("IgakuQA", "ja"), ("Average", "macro")]
    measured = [c.label for c in table.columns if not c.reference]
    assert frame.loc[0, measured[0]] == "50.0 (50.0), n=12"
    assert any(c.reference for c in table.columns)
    assert "sha256" in notes_markdown(table)
    csv_path = write_table(table, [1], True, "csv")
    md_path = write_table(table, [1], True, "markdown")
    assert csv_path.read_text(encoding="utf-8") == table.csv() and md_path.suffix == ".md"
    assert md_path.read_text(encoding="utf-8") == table.markdown() and csv_path.stat().st_mode & 0o777 == 0o600
