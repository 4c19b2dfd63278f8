"""The Benchmark tab's button drives a run through a real ``jmedllm serve`` and the result lands
in the server's database."""

from __future__ import annotations

import sqlite3

import pytest

pytestmark = pytest.mark.slow


def test_self_benchmark_button_runs_and_stores(ui_server, igakuqa_dir) -> None:
    from gradio_client import Client

    client = Client(ui_server.url, verbose=False)
    result = client.predict("quick", ["en"], "loglik", 2, api_name="/self_benchmark")
    status = result[0]
    assert ": 完了**" in status and "2/2" in status, status  # "complete", in the page's language (Japanese first)
    metrics = {row[1] for row in result[1]["data"]}  # labelled in the page's language (Japanese first)
    assert {"Gestalt（論文方式）", "Gestalt（補正版）", "完全一致", "記号一致（IgakuQA）"} <= metrics, metrics
    pass_fail = result[2]
    assert {row[2] for row in pass_fail["data"]} == {"image questions counted wrong", "text-only projection"}
    assert all(row[3] in ("PASS", "FAIL") and "incomplete" in row[7] for row in pass_fail["data"])
    conn = sqlite3.connect(ui_server.db_path)
    try:
        runs = conn.execute("select id, status, mode, language, n_answered from runs").fetchall()
        answers = conn.execute("select run_id, problem_id, language, picked from answers").fetchall()
    finally:
        conn.close()
    run_id = runs[-1][0]
    assert runs[-1][1:] == ("complete", "loglik", "en", 2)
    assert len([a for a in answers if a[0] == run_id]) == 2 and all(a[3] for a in answers)
    # the export button writes that run as CSV (header + 2 answers)
    exported = client.predict(run_id, api_name="/self_benchmark_export")
    text = open(exported, encoding="utf-8").read()
    assert text.count("\n") == 3 and "loglik" in text
