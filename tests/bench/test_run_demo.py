"""End-to-end runs on the real demo model (no mocks): both tables filled, loglik, the CLI reports,
and a run killed partway (a real subprocess, SIGKILL) that resumes losing and duplicating nothing."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import llama_cpp
import numpy as np
import pytest
from click.testing import CliRunner

from app.bench.cli import bench
from app.bench.runner import RunConfig, run_benchmark
from app.bench.sets import SetSpec
from app.numeric import log_softmax
from tests.conftest import JMEDLLM, REPO_ROOT

pytestmark = pytest.mark.slow


def rows(db: Path, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def wait_for_first_answer(process: subprocess.Popen, db: Path, poll_s: float) -> None:
    """Wait until ``process`` has committed at least one answer to ``db``; fail if it dies first."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if db.exists() and rows(db, "select count(*) from sqlite_master where name = 'answers'")[0][0]:
            if rows(db, "select count(*) from answers")[0][0] >= 1:
                return
        assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
        time.sleep(poll_s)
    pytest.fail("no answer stored in time")


@pytest.fixture(scope="module")
def filled_db(bench_engine, dataset, tmp_path_factory) -> Path:
    """One generate run (2 quick questions x ja+en) and one loglik run (same questions, ja)."""
    db = tmp_path_factory.mktemp("bench") / "bench.db"
    spec = SetSpec("quick", quick_size=2)
    events = list(run_benchmark(bench_engine, db, RunConfig(spec, ("ja", "en")), dataset=dataset))
    assert events[-1].status == "complete" and events[-1].done == 4
    assert [e.done for e in events] == [0, 1, 2, 3, 4, 4]
    events = list(run_benchmark(bench_engine, db, RunConfig(spec, ("ja",), mode="loglik"), dataset=dataset))
    assert events[-1].status == "complete"
    return db


def test_small_run_fills_both_tables(filled_db: Path, bench_engine, dataset) -> None:
    run = rows(filled_db, "select * from runs where id = 1")[0]
    assert run["status"] == "complete" and run["n_answered"] == run["n_items"] == 4
    assert run["model_sha256"] == bench_engine.card.sha256 and run["quantization"] == bench_engine.card.quantization
    assert run["data_fingerprint"] == dataset.fingerprint and run["mode"] == "generate" and run["language"] == "both"
    assert run["backend_version"] == f"llama-cpp-python {llama_cpp.__version__}" and run["ended_at"]
    totals = json.loads(run["totals"])
    assert totals["metrics"]["gestalt_paper"]["total"] == 4
    answers = rows(filled_db, "select * from answers where run_id = 1 order by id")
    assert len(answers) == 4 and {a["language"] for a in answers} == {"ja", "en"}
    for a in answers:
        assert a["raw_output"] and a["prompt_hash"] and a["completion_tokens"] > 0 and a["latency_s"] > 0
        assert a["finish_reason"] in ("first_line", "stop", "length")
        assert a["gold"] == ",".join(dataset.by_id()[a["problem_id"]].answer)
        # in Japanese the generation stopped once its first non-empty line was complete
        if a["language"] == "ja":
            assert a["raw_output"].strip().count("\n") == 0 or a["finish_reason"] != "first_line"


def test_loglik_run_and_its_scores(filled_db: Path, bench_engine) -> None:
    answers = rows(filled_db, "select * from answers where run_id = 2")
    assert len(answers) == 2
    for a in answers:
        assert a["finish_reason"] == "loglik" and len(a["picked"]) == 1
        assert len(json.loads(a["raw_output"])["logprobs"]) == 5
    # the batched option scoring equals token-by-token evaluation
    prompt = "### Input:\nWhich organ filters blood?\nkidney,heart muscle tissue\n### Response:\n"
    options = ["kidney", "heart muscle tissue"]
    scores = bench_engine.option_logprobs(prompt, options)
    llm = bench_engine.llama
    for option, expected in zip(options, scores.logprobs, strict=True):
        tokens = llm.tokenize(option.encode(), add_bos=False, special=False)
        with bench_engine.slot(blocking=True):
            llm.reset()
            llm.eval(bench_engine.tokenize(prompt))
            total = 0.0
            for token in tokens:
                row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),))
                total += float(log_softmax(row.copy())[token])
                llm.eval([token])
            llm.reset()
        assert total == pytest.approx(expected, abs=1e-3)
    assert max(scores.token_counts) > 1


def test_generate_mode_answers_like_the_papers_256_tokens(bench_engine, dataset, tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    spec = SetSpec("quick", quick_size=1)
    list(run_benchmark(bench_engine, db, RunConfig(spec, ("en",), mode="paper"), dataset=dataset))
    list(run_benchmark(bench_engine, db, RunConfig(spec, ("en",), mode="generate"), dataset=dataset))
    paper, fast = rows(db, "select * from answers order by run_id")
    assert paper["response"] == fast["response"] and paper["picked"] == fast["picked"]
    assert fast["completion_tokens"] <= paper["completion_tokens"]


def test_cli_list_show_export_compare(filled_db: Path, igakuqa_dir: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(bench, ["list", "--db", str(filled_db)])
    assert out.exit_code == 0 and "generate" in out.output and "loglik" in out.output
    out = runner.invoke(bench, ["show", "1", "--db", str(filled_db), "--data-dir", str(igakuqa_dir)])
    assert out.exit_code == 0, out.output
    for text in ("Gestalt (paper's code", "Chance floor", "contraindicated", "NMLE pass/fail", "GPT-4",
                 "JMedLLM-v1-7B", "text-only projection", "image questions counted wrong"):
        assert text in out.output
    out = runner.invoke(bench, ["show", "1", "--db", str(filled_db), "--data-dir", str(igakuqa_dir), "--json"])
    summary = json.loads(out.output)["summary"]
    assert summary["metrics"]["gestalt_paper"]["total"] == 4 and summary["baselines"][0]["total"] == 2
    out = runner.invoke(bench, ["export", "1", "--db", str(filled_db), "--format", "csv"])
    records = list(csv.DictReader(io.StringIO(out.output)))
    assert len(records) == 4 and records[0]["model_sha256"] and "raw_output" in records[0]
    out = runner.invoke(bench, ["export", "2", "--db", str(filled_db), "--format", "jsonl"])
    assert [json.loads(x)["mode"] for x in out.output.splitlines()] == ["loglik", "loglik"]
    out = runner.invoke(bench, ["compare", "1", "2", "--db", str(filled_db), "--json"])
    result = json.loads(out.output)
    assert result["paired"] == 2 and result["only_in_a"] == 2 and 0 <= result["mcnemar_exact_p"] <= 1
    assert runner.invoke(bench, ["show", "99", "--db", str(filled_db)]).exit_code != 0


def test_killed_run_resumes_without_loss_or_duplicates(demo_model_path: Path, igakuqa_dir: Path,
                                                       tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    env = {**os.environ, "JMEDLLM_DATA_DIR": str(tmp_path / "data")}
    command = [*JMEDLLM, "bench", "run", "--model", "demo", "--gpu-layers", "0", "--ctx", "2048", "--set", "quick",
               "--quick-size", "3", "--lang", "en", "--db", str(db), "--data-dir", str(igakuqa_dir), "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_first_answer(process, db, poll_s=0.2)
    finally:
        process.kill()
        process.wait()
    before = [dict(r) for r in rows(db, "select * from answers order by id")]
    assert 1 <= len(before) < 3
    assert rows(db, "select status from runs")[0]["status"] == "running"  # killed: no chance to record it
    listed = subprocess.run([*JMEDLLM, "bench", "list", "--json", "--db", str(db)], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert json.loads(listed.stdout)[0]["status"] == "interrupted"  # its process is gone

    resumed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"Resuming run 1: {len(before)} of 3 already answered" in resumed.stderr
    runs = rows(db, "select * from runs")
    assert len(runs) == 1 and runs[0]["status"] == "complete" and runs[0]["n_answered"] == 3
    after = [dict(r) for r in rows(db, "select * from answers order by id")]
    assert len(after) == 3 == len({(a["problem_id"], a["language"]) for a in after})
    assert after[: len(before)] == before  # nothing lost or rewritten


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_after_the_current_question_and_resumes(stop: signal.Signals, igakuqa_dir: Path,
                                                             tmp_path: Path) -> None:
    db = tmp_path / "int.db"
    env = {**os.environ, "JMEDLLM_DATA_DIR": str(tmp_path / "data")}
    command = [*JMEDLLM, "bench", "run", "--model", "demo", "--gpu-layers", "0", "--ctx", "2048", "--set", "quick",
               "--quick-size", "8", "--mode", "loglik", "--db", str(db), "--data-dir", str(igakuqa_dir),
               "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_first_answer(process, db, poll_s=0.05)
        process.send_signal(stop)
        output = process.communicate(timeout=120)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + stop, output
    assert "run the same command again to resume it" in output
    run = rows(db, "select * from runs")[0]
    assert run["status"] == "interrupted" and 1 <= run["n_answered"] < 8
    resumed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert rows(db, "select count(*) from answers")[0][0] == 8
    assert rows(db, "select count(*), status from runs")[0][:] == (1, "complete")
