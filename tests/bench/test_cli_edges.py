"""``jmedllm bench`` at its edges, as an administrator meets them: output files that are not files,
run ids beyond SQLite's integers, a run whose question set was removed, predictions files saved by
Windows tools or with the wrong field types, escape sequences from file names and question sets, and
table cells a spreadsheet would run as formulas."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.bench.cli import bench
from app.bench.data import DATA_ENV
from app.bench.importing import add, remove
from app.bench.runner import RunConfig, run_benchmark
from app.bench.sets import SetSpec
from app.bench.sources import load_dataset
from tests.bench.conftest import write_block
from tests.conftest import assert_clean_error, run_cli
from tests.scripted_engine import SCRIPTED_CARD, ScriptedEngine

ESCAPE = "\x1b]0;pwned\x07"  # retitles a terminal (click strips colour codes, not this)
HUGE_ID = "99999999999999999999"  # beyond SQLite's 64-bit integers


@pytest.fixture(autouse=True)
def data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data folder per test, and no IgakuQA clone configured."""
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(tmp_path / "appdata"))
    monkeypatch.delenv(DATA_ENV, raising=False)
    return tmp_path / "appdata"


def choices_of(prompt: str) -> list[str]:
    """The choices line of a zero-shot paper-template prompt: the line before the response marker."""
    return prompt.rstrip().splitlines()[-2].split(",")


def first_choice(prompt: str) -> str:
    return choices_of(prompt)[0] + "\n"


def last_choice(prompt: str) -> str:
    return choices_of(prompt)[-1] + "\n"


def run_on(db: Path, data: str, reply: Callable[[str], str] = first_choice, file_name: str = "scripted.gguf") -> int:
    """A complete run of the scripted engine on the set ``data`` (a model file name is a model); its id."""
    card = replace(SCRIPTED_CARD, file_name=file_name, sha256=hashlib.sha256(file_name.encode()).hexdigest())
    engine = ScriptedEngine(reply, card=card)
    run_id = 0
    for event in run_benchmark(engine, db, RunConfig(SetSpec("paper"), ("ja",), data=data), threading.Event(),
                               load_dataset(data)):
        run_id = event.run_id
    return run_id


def question_bank(path: Path, first_id: str = "r1") -> Path:
    """A hospital's set of two Japanese questions, gold "a"."""
    rows = [{"id": first_id, "question": "第一選択薬はどれか。",
             "choices": ["アドレナリン", "抗ヒスタミン薬", "経過観察"], "answer": "a"},
            {"id": "r2", "question": "最初に上昇するマーカーはどれか。", "choices": ["ミオグロビン", "LDH", "AST"],
             "answer": "a"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_an_output_that_is_not_a_regular_file_is_refused_not_replaced(tmp_path: Path) -> None:
    db = tmp_path / "bench.db"
    run_id = run_on(db, str(write_block(tmp_path / "igakuqa", n=1)))
    pipe = tmp_path / "pipe.csv"
    os.mkfifo(pipe)
    link = tmp_path / "link.csv"
    link.symlink_to(pipe)  # as /dev/stdout is a link to the terminal or a pipe
    for command in ("export", "table"):
        for target in (pipe, link):
            result = run_cli("bench", command, str(run_id), "--db", str(db), "-o", str(target), timeout=120)
            assert_clean_error(result, f"Cannot write {target}: it is not a regular file")
    assert stat.S_ISFIFO(pipe.stat().st_mode) and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")) == []


def test_a_run_id_beyond_sqlites_integers_is_not_found(tmp_path: Path) -> None:
    db = tmp_path / "bench.db"
    run_id = str(run_on(db, str(write_block(tmp_path / "igakuqa", n=1))))
    for args in (["show", HUGE_ID], ["table", run_id, HUGE_ID], ["compare", run_id, HUGE_ID], ["export", HUGE_ID]):
        result = CliRunner().invoke(bench, [*args, "--db", str(db)])
        assert result.exit_code == 1 and not isinstance(result.exception, OverflowError), result.output
        assert f"No benchmark run {HUGE_ID}" in result.output


def test_a_run_whose_set_was_removed_still_shows_its_answers(tmp_path: Path) -> None:
    db = tmp_path / "bench.db"
    add(question_bank(tmp_path / "residents.jsonl"))
    run_id = run_on(db, "residents")
    remove("residents")
    result = CliRunner().invoke(bench, ["show", str(run_id), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert f"Run {run_id}: scripted.gguf" in result.output and "2/2" in result.output
    assert f"the question set of run {run_id} cannot be read" in result.output
    result = CliRunner().invoke(bench, ["show", str(run_id), "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])["summary"]
    assert summary["metrics"]["letter"]["correct"] == 2 and summary["chance_floor_gestalt_paper"] is None
    result = CliRunner().invoke(bench, ["show", str(run_id), "--db", str(db), "--data", "residents"])
    assert result.exit_code == 1 and "No question set 'residents'" in result.output  # named: still an error


def test_predictions_with_a_byte_order_mark_or_non_string_fields(tmp_path: Path) -> None:
    data = str(write_block(tmp_path / "igakuqa", n=2))  # gold "a" everywhere

    def score(text: str, encoding: str = "utf-8") -> tuple[int, str]:
        path = tmp_path / "preds.jsonl"
        path.write_text(text, encoding=encoding)
        result = CliRunner().invoke(bench, ["score", "--predictions", str(path), "--data", data, "--json"])
        return result.exit_code, result.output

    lines = '{"problem_id": "116A1", "prediction": "a"}\n{"problem_id": "116A2", "prediction": "b"}\n'
    code, output = score(lines, "utf-8-sig")  # Notepad's and Excel's UTF-8
    assert code == 0, output
    assert json.loads(output)["letter"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    for line, field in (('{"problem_id": "116A1", "prediction": ["a"]}', "prediction"),
                        ('{"problem_id": "116A1", "prediction": null}', "prediction"),
                        ('{"problem_id": "116A1", "response": 1}', "response"),
                        ('{"problem_id": "116A1", "full_response": null, "response": "a"}', "full_response")):
        code, output = score(line + "\n")
        assert code == 1 and f"preds.jsonl:1: field '{field}' is not a string" in output, output


def test_escape_sequences_from_files_and_sets_are_shown_escaped(tmp_path: Path) -> None:
    db = tmp_path / "bench.db"
    bank = question_bank(tmp_path / f"bank{ESCAPE}.jsonl", first_id=f"r1{ESCAPE}")
    result = CliRunner().invoke(bench, ["data", "add", str(bank), "--name", "bank"])
    assert result.exit_code == 0, result.output
    a = run_on(db, "bank", first_choice, file_name=f"model{ESCAPE}.gguf")
    b = run_on(db, "bank", last_choice, file_name=f"model{ESCAPE}.gguf")
    commands = [["data", "list"], ["data", "list", "--json"], ["list"], ["list", "--json"], ["show", str(a)],
                ["show", str(a), "--json"], ["compare", str(a), str(b)], ["table", str(a)], ["data", "remove", "bank"]]
    for args in commands:
        result = CliRunner().invoke(bench, [*args, *(["--db", str(db)] if args[0] != "data" else [])])
        assert result.exit_code == 0, (args, result.output)
        assert "\x1b" not in result.output and "\x07" not in result.output, (args, result.output)
    assert "r1\\x1b]0;pwned\\x07" in CliRunner().invoke(bench, ["compare", str(a), str(b), "--db", str(db)]).output


def test_table_csv_cells_are_not_spreadsheet_formulas(tmp_path: Path) -> None:
    db = tmp_path / "bench.db"
    data = str(write_block(tmp_path / "igakuqa", n=1))
    run_id = run_on(db, data, file_name='=HYPERLINK("http://x.example","open").gguf')
    other = run_on(db, data, file_name="@SUM(1+1).gguf")
    result = CliRunner().invoke(bench, ["table", str(run_id), str(other), "--format", "csv", "--db", str(db)])
    assert result.exit_code == 0, result.output
    cells = [cell for row in csv.reader(io.StringIO(result.output)) for cell in row]
    assert any(cell.startswith("'=HYPERLINK") for cell in cells) and any(c.startswith("'@SUM") for c in cells)
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@"))]
