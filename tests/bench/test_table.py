"""The paper-style table (``bench table``) from runs the real runner stored on scripted engines:
two models on a hand-made IgakuQA-shaped set in both languages, one of them also on a four-choice
English set built in the test."""

from __future__ import annotations

import csv
import io
import sqlite3
import stat
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import sqlite_utils

from app.bench.data import Dataset, Question
from app.bench.runner import RunConfig, run_benchmark
from app.bench.sets import SetSpec
from app.bench.sources import load_dataset
from app.bench.store import RunNotFound
from app.bench.table import Cell, PaperTable, TableError, chance_of, paper_table
from app.db import open_db
from tests.bench.conftest import write_block
from tests.bench.test_runner_scripted import QUESTION, choices_of
from tests.conftest import assert_clean_error, run_cli
from tests.scripted_engine import SCRIPTED_CARD, ScriptedEngine

CARD_A = replace(SCRIPTED_CARD, file_name="model-a.gguf", sha256="a1" * 32)
CARD_B = replace(SCRIPTED_CARD, file_name="model-b.gguf", sha256="b2" * 32)
CARD_C = replace(SCRIPTED_CARD, file_name="model-c.gguf", sha256="c3" * 32)
BOTH = RunConfig(SetSpec("paper"), ("ja", "en"))


def number_of(prompt: str) -> int:
    """The number of the question asked last in a paper-template prompt ("問題2" / "Question 2")."""
    return int(QUESTION.findall(prompt)[-1][0])


def model_a(prompt: str) -> str:
    """Right on question 1 of each block, wrong on question 2 (IgakuQA gold is always "a")."""
    return choices_of(prompt)[0 if number_of(prompt) == 1 else 2] + "\n"


def model_b(prompt: str) -> str:
    """Right everywhere but the English question 2 of each block."""
    choices = choices_of(prompt)
    return choices[3 if choices[0] == "A1" and number_of(prompt) == 2 else 0] + "\n"


def first_choice(prompt: str) -> str:
    return choices_of(prompt)[0] + "\n"


def medqa(root: Path) -> Dataset:
    """Four English-only, four-choice questions; gold a, b, a, c (the first choice is right twice)."""
    questions = [
        Question(problem_id=f"mq{i}", exam=0, year=0, block="", text_ja="", choices_ja=(), text_en=f"Question {i}",
                 choices_en=(f"w{i}", f"x{i}", f"y{i}", f"z{i}"), answer=(gold,), points=1, text_only=True,
                 source=f"medqa.jsonl:{i}")
        for i, gold in enumerate("abac", start=1)
    ]
    return Dataset(root, questions, "f" * 64, name="medqa", label="MedQA", layout="test", paper_choices=4)


def run(engine: ScriptedEngine, db: Path, config: RunConfig, dataset: Dataset,
        stop_after: int | None = None) -> int:
    cancel = threading.Event()
    run_id = 0
    for event in run_benchmark(engine, db, config, cancel, dataset):
        run_id = event.run_id
        if stop_after is not None and event.done >= stop_after:
            cancel.set()
    return run_id


@dataclass
class Runs:
    db_path: Path
    db: sqlite_utils.Database
    igakuqa: Dataset
    a: int
    b: int
    a_medqa: int


@pytest.fixture()
def runs(tmp_path: Path) -> Runs:
    db_path = tmp_path / "bench.db"
    igakuqa = load_dataset(write_block(tmp_path / "igakuqa", n=2))
    a = run(ScriptedEngine(model_a, card=CARD_A), db_path, BOTH, igakuqa)
    b = run(ScriptedEngine(model_b, card=CARD_B), db_path, BOTH, igakuqa)
    a_medqa = run(ScriptedEngine(first_choice, card=CARD_A), db_path, RunConfig(SetSpec("paper"), ("en",)),
                  medqa(tmp_path / "medqa"))
    return Runs(db_path, open_db(db_path), igakuqa, a, b, a_medqa)


def stored(db: Path, run_id: int, language: str) -> tuple[float, float, int]:
    """Mean gestalt_paper, mean letter and count of a run's stored answers in one language."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("select avg(gestalt_paper), avg(letter), count(*) from answers "
                            "where run_id = ? and language = ?", [run_id, language]).fetchone()
    finally:
        conn.close()


def cells_of(table: PaperTable, benchmark: str, language: str) -> dict[str, Cell]:
    return next(r.cells for r in table.rows if (r.benchmark, r.language) == (benchmark, language))


def cell_of(table: PaperTable, benchmark: str, language: str, column: int) -> Cell:
    return cells_of(table, benchmark, language)[table.columns[column].key]


def test_cells_rows_columns_and_average_follow_the_stored_answers(runs: Runs) -> None:
    table = paper_table(runs.db, [runs.a, runs.b, runs.a_medqa])
    assert [c.label for c in table.columns] == ["model-a.gguf (generate, 0-shot)", "model-b.gguf (generate, 0-shot)"]
    assert table.columns[0].run_ids == (runs.a, runs.a_medqa) and table.columns[1].run_ids == (runs.b,)
    assert [(r.benchmark, r.language) for r in table.rows] == [("igakuqa", "ja"), ("igakuqa", "en"), ("medqa", "en")]
    for benchmark, language, column, run_id in [("igakuqa", "ja", 0, runs.a), ("igakuqa", "en", 0, runs.a),
                                                ("medqa", "en", 0, runs.a_medqa), ("igakuqa", "ja", 1, runs.b),
                                                ("igakuqa", "en", 1, runs.b)]:
        gestalt, letter, n = stored(runs.db_path, run_id, language)
        cell = cell_of(table, benchmark, language, column)
        assert (cell.run_id, cell.gestalt, cell.letter, cell.n, cell.complete) == (run_id, gestalt, letter, n, True)
    assert table.columns[1].key not in cells_of(table, "medqa", "en")  # model B never ran MedQA
    # The scripted answers: A half right on IgakuQA and MedQA; B right in Japanese, half in English.
    assert cell_of(table, "igakuqa", "ja", 0).gestalt == 0.5 and cell_of(table, "medqa", "en", 0).gestalt == 0.5
    assert cell_of(table, "igakuqa", "ja", 1).gestalt == 1.0 and cell_of(table, "igakuqa", "en", 1).gestalt == 0.5
    # Macro average over the rows each column fills.
    assert table.average[table.columns[0].key] == pytest.approx((0.5, 0.5))
    assert table.average[table.columns[1].key] == pytest.approx((0.75, 0.75))
    assert [r.chance for r in table.rows] == pytest.approx([0.2, 0.2, 0.25])
    assert table.average_chance == pytest.approx((0.2 + 0.2 + 0.25) / 3)


def test_chance_is_one_over_the_ways_to_pick_k_of_the_choices() -> None:
    assert chance_of("[0.1, 0.2, 0.3, 0.4, 0.5]", "a") == pytest.approx(0.2)
    assert chance_of("[0.1, 0.2, 0.3, 0.4]", "b") == pytest.approx(0.25)
    assert chance_of("[0.1, 0.2, 0.3, 0.4, 0.5]", "a,c") == pytest.approx(0.1)
    assert chance_of("[]", "42") == 0.0  # a numeric-entry question
    assert chance_of(None, "a") is None  # never scored (the prompt did not fit)


def test_markdown_csv_and_records_say_the_same(runs: Runs) -> None:
    table = paper_table(runs.db, [runs.a, runs.b, runs.a_medqa])
    lines = table.markdown().splitlines()
    assert lines[0] == ("| Benchmark | Language | Chance | model-a.gguf (generate, 0-shot) | "
                        "model-b.gguf (generate, 0-shot) |")
    assert lines[2] == "| IgakuQA | ja | 20.0 | 50.0 (50.0), n=12 | 100.0 (100.0), n=12 |"
    assert lines[4] == "| MedQA | en | 25.0 | 50.0 (50.0), n=4 | - |"
    assert lines[5] == "| Average | macro | 21.7 | 50.0 (50.0) | 75.0 (75.0) |"
    assert any("macro mean over the benchmark x language rows" in line for line in lines)
    assert any(line.startswith(f"- model-a.gguf (generate, 0-shot): runs {runs.a}, {runs.a_medqa};") for line in lines)

    rows = list(csv.reader(io.StringIO(table.csv())))
    assert rows[0][:7] == ["benchmark", "language", "chance_pct", "model-a.gguf (generate, 0-shot): gestalt_paper_pct",
                           "model-a.gguf (generate, 0-shot): letter_pct", "model-a.gguf (generate, 0-shot): n",
                           "model-a.gguf (generate, 0-shot): incomplete"]
    assert rows[1] == ["IgakuQA", "ja", "20.0", "50.0", "50.0", "12", "", "100.0", "100.0", "12", ""]
    assert rows[3] == ["MedQA", "en", "25.0", "50.0", "50.0", "4", "", "", "", "", ""]
    assert rows[4][:5] == ["Average", "macro", "21.67", "50.0", "50.0"]
    assert rows[5] == [] and [r[0] for r in rows[6:]] == [line[2:] for line in lines if line.startswith("- ")]

    records = table.records()
    assert len(records) == 3 + 1 + 2 + 1  # filled cells and one average per column
    medqa_a = next(r for r in records if r["benchmark"] == "medqa")
    assert medqa_a["run_id"] == runs.a_medqa and medqa_a["gestalt_paper"] == 0.5 and medqa_a["n"] == 4
    assert medqa_a["chance"] == pytest.approx(0.25) and medqa_a["model_sha256"] == "a1" * 32


def test_an_incomplete_run_is_marked_with_a_footnote(runs: Runs) -> None:
    partial = run(ScriptedEngine(first_choice, card=CARD_C), runs.db_path, RunConfig(SetSpec("paper"), ("ja",)),
                  runs.igakuqa, stop_after=3)
    table = paper_table(runs.db, [runs.a, partial])
    cell = cell_of(table, "igakuqa", "ja", 1)
    assert cell.n == 3 and not cell.complete
    text = table.markdown()
    assert "| IgakuQA | ja | 20.0 | 50.0 (50.0), n=12 | 100.0 (100.0), n=3* |" in text
    assert f"- * run {partial} incomplete (interrupted): 3/12 answered." in text


def test_two_runs_in_one_cell_are_refused_and_an_unknown_run_is_not_found(runs: Runs) -> None:
    again = run(ScriptedEngine(first_choice, card=CARD_A), runs.db_path, RunConfig(SetSpec("quick", quick_size=3),
                                                                                    ("ja",)), runs.igakuqa)
    with pytest.raises(TableError, match=f"Runs {runs.a} and {again} both fill the row IgakuQA ja of the column "
                                         r"model-a.gguf \(generate, 0-shot\)"):
        paper_table(runs.db, [runs.a, again])
    assert len(paper_table(runs.db, [runs.a, runs.a]).columns) == 1  # the same run given twice counts once
    alpaca = run(ScriptedEngine(first_choice, card=CARD_A), runs.db_path,
                 RunConfig(SetSpec("quick", quick_size=3), ("ja",), template="alpaca"), runs.igakuqa)
    table = paper_table(runs.db, [runs.a, alpaca])  # another template: another column, its header says which
    assert [c.label for c in table.columns] == ["model-a.gguf (generate, 0-shot, medpalm_cot, local, a1a1a1a1)",
                                                "model-a.gguf (generate, 0-shot, alpaca, local, a1a1a1a1)"]
    with pytest.raises(RunNotFound, match="No benchmark run 99"):
        paper_table(runs.db, [runs.a, 99])


def test_reference_columns_are_the_papers_igakuqa_figures_labelled_as_reported(runs: Runs) -> None:
    table = paper_table(runs.db, [runs.a, runs.a_medqa], reference=True)
    labels = [c.label for c in table.columns]
    assert labels[1] == "JMedLLM-v1-7B (reported)" and all(c.reference for c in table.columns[1:])
    assert cell_of(table, "igakuqa", "ja", 1).reported == 52.3 and cell_of(table, "igakuqa", "en", 1).reported == 50.6
    assert table.columns[1].key not in cells_of(table, "medqa", "en")
    text = table.markdown()
    assert "| IgakuQA | ja | 20.0 | 50.0 (50.0), n=12 | 52.3 |" in text
    assert "reported in the paper, not measured here" in text and "not averaged" in text
    assert "| Average | macro | 21.7 | 50.0 (50.0) | - |" in text
    gpt4 = next(r for r in table.records() if r["column"].startswith("GPT-4") and r["language"] == "ja")
    assert gpt4["gestalt_paper"] == pytest.approx(0.782) and gpt4["reference"] is True
    medqa_only = paper_table(runs.db, [runs.a_medqa], reference=True)
    assert len(medqa_only.columns) == 1 and "No reported figure of the paper is for these rows" in medqa_only.markdown()


def test_the_cli_prints_writes_and_refuses(runs: Runs, tmp_path: Path) -> None:
    db = str(runs.db_path)
    result = run_cli("bench", "table", str(runs.a), str(runs.b), str(runs.a_medqa), "--db", db, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == paper_table(runs.db, [runs.a, runs.b, runs.a_medqa]).markdown()
    out = tmp_path / "out" / "table.csv"
    result = run_cli("bench", "table", str(runs.a), "-o", str(out), "--db", db, timeout=120)
    assert_clean_error(result, f"Cannot write {out}: the folder {out.parent} does not exist")
    assert not out.parent.exists()
    out.parent.mkdir()
    result = run_cli("bench", "table", str(runs.a), str(runs.a_medqa), "--reference", "--format", "csv", "-o",
                     str(out), "--db", db, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.read_text(encoding="utf-8") == paper_table(runs.db, [runs.a, runs.a_medqa], reference=True).csv()
    assert not list(out.parent.glob("*.partial")) and stat.S_IMODE(out.stat().st_mode) == 0o600
    export = out.parent / "run.csv"
    assert_clean_error(run_cli("bench", "export", str(runs.a), "--db", db, "-o", str(tmp_path / "no" / "run.csv"),
                               timeout=120), "the folder", "does not exist")
    result = run_cli("bench", "export", str(runs.a), "--db", db, "-o", str(export), timeout=120)
    assert result.returncode == 0, result.stderr
    assert export.read_text(encoding="utf-8").startswith("run_id,") and stat.S_IMODE(export.stat().st_mode) == 0o600
    assert_clean_error(run_cli("bench", "export", str(runs.a), "--db", db, "-o", "/proc/run.csv", timeout=120),
                       "Cannot write /proc/run.csv")
    assert_clean_error(run_cli("bench", "table", str(runs.a), "99", "--db", db, timeout=120), "No benchmark run 99")
