"""``jmedllm doctor``, run for real: the machine's checks, a damaged or newer database, a model too big for
RAM, a busy port, no IgakuQA, nothing written; and the Model tab's system section shown as escaped text."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import gradio as gr
import pytest

from app.db import open_db
from app.doctor import (
    OK,
    TITLES,
    WARN,
    Check,
    DoctorOptions,
    Report,
    check_database,
    check_python,
    check_speed,
    kv_cache_bytes,
)
from app.gguf_metadata import read_gguf_metadata
from app.ui.state import AppState, ServeOptions
from app.ui.system_panel import build_system_panel, report_markdown
from tests.conftest import as_another_user, free_port, run_cli
from tests.hostile_gguf import kv, write_gguf
from tests.scripted_engine import SCRIPTED_CARD, ScriptedEngine


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder of the test's own (created), no IgakuQA anywhere, no llama-server override."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(folder))
    monkeypatch.setenv("JMEDLLM_IGAKUQA_DIR", str(tmp_path / "no-igakuqa"))
    monkeypatch.delenv("JMEDLLM_LLAMA_SERVER", raising=False)
    return folder


def tiny_model(path: Path, layers: int = 2, embedding: int = 64, heads: int = 4, kv_heads: int = 2) -> Path:
    """A small GGUF whose metadata declares these attention shapes (llama.cpp could not run it)."""
    return write_gguf(path, extra=(kv("llama.block_count", layers), kv("llama.embedding_length", embedding),
                                   kv("llama.attention.head_count", heads),
                                   kv("llama.attention.head_count_kv", kv_heads)))


def doctor_json(*args: str) -> tuple[int, dict[str, dict]]:
    result = run_cli("doctor", "--json", "--port", str(free_port()), *args, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] == (result.returncode == 0)
    return result.returncode, {check["name"]: check for check in report["checks"]}


def test_demo_model_passes_and_writes_nothing(demo_model_path: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "never-created"
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(missing))
    result = run_cli("doctor", "--model", "demo", "--port", str(free_port()), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for title in TITLES.values():
        assert any(line.startswith(("✓ ", "! ")) and f" {title}: " in line for line in lines), title
    assert "No blocking problem" in result.stdout
    assert "Q4_K_M with a 4,096 context needs ~1.1 GB" in result.stdout
    assert "memory_bandwidth_bytes_per_s" in result.stdout
    assert not missing.exists()  # doctor created no data folder


def test_json_has_every_check(data_dir: Path, tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "tiny.gguf")
    code, checks = doctor_json("--model", str(model), "--ctx", "1024")
    assert code == 0
    assert list(checks) == list(TITLES)
    assert all(check["status"] in ("ok", "warn") for check in checks.values())
    memory = checks["memory"]["details"]
    assert memory["kv_cache_bytes"] == 2 * 1024 * 2 * (16 + 16) * 2  # layers x ctx x KV heads x (k+v) x f16
    assert memory["needed_bytes"] == memory["weights_bytes"] + memory["kv_cache_bytes"] + memory["overhead_bytes"]
    assert checks["speed"]["details"]["memory_bandwidth_bytes_per_s"] > 1e8
    assert checks["cpu"]["details"]["cores_usable"] >= 1
    assert checks["database"]["status"] == "ok" and not checks["database"]["details"]["exists"]
    assert list(data_dir.iterdir()) == []  # nothing written to the data folder


def test_no_igakuqa_is_a_warning(data_dir: Path, tmp_path: Path) -> None:
    code, checks = doctor_json("--model", str(tiny_model(tmp_path / "tiny.gguf")))
    assert code == 0
    assert checks["igakuqa"]["status"] == "warn"
    assert "IgakuQA not found" in checks["igakuqa"]["summary"]


def test_damaged_database_fails(data_dir: Path, tmp_path: Path) -> None:
    db = data_dir / "jmedllm.db"
    garbage = b"this is not a database " * 200
    db.write_bytes(garbage)
    result = run_cli("doctor", "--model", str(tiny_model(tmp_path / "tiny.gguf")), "--port", str(free_port()),
                     timeout=60)
    assert result.returncode == 1, result.stdout
    assert "✗ Data folder and database" in result.stdout
    assert "Blocking problems (要対応): database." in result.stdout
    assert db.read_bytes() == garbage
    assert sorted(p.name for p in data_dir.iterdir()) == ["jmedllm.db"]  # no -wal, -shm or journal


def test_a_database_path_that_is_not_a_file_fails(data_dir: Path, tmp_path: Path) -> None:
    (data_dir / "jmedllm.db").mkdir()
    code, checks = doctor_json("--model", str(tiny_model(tmp_path / "tiny.gguf")))
    assert code == 1 and checks["database"]["status"] == "fail", checks["database"]
    assert "is not a regular file" in checks["database"]["summary"]


def test_an_unreadable_database_is_a_permission_problem_not_damage(monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryDirectory(prefix="jmedllm-doctor-") as folder:  # pytest's tmp_path is root's alone
        os.chmod(folder, 0o755)
        monkeypatch.setenv("JMEDLLM_DATA_DIR", folder)
        db = Path(folder) / "jmedllm.db"
        open_db(db).close()
        db.chmod(0)
        with as_another_user():
            check = check_database(DoctorOptions(db_path=db))
    assert check.status == "fail"
    assert "cannot be opened by this user (Permission denied)" in check.summary, check.summary
    assert "damaged" not in check.summary and "backup" not in check.summary


def test_database_schema_versions(data_dir: Path, tmp_path: Path) -> None:
    model = str(tiny_model(tmp_path / "tiny.gguf"))
    current = tmp_path / "current.db"
    open_db(current).close()
    code, checks = doctor_json("--model", model, "--db", str(current))
    assert code == 0 and checks["database"]["status"] == "ok", checks["database"]
    assert checks["database"]["details"]["integrity"] == ["ok"] and not checks["database"]["details"]["pending"]

    empty = tmp_path / "empty.db"
    empty.touch()
    code, checks = doctor_json("--model", model, "--db", str(empty))
    assert code == 0 and checks["database"]["status"] == "warn"
    assert "will upgrade on the next start" in checks["database"]["summary"]
    assert empty.stat().st_size == 0  # not migrated

    newer = tmp_path / "newer.db"
    open_db(newer).close()
    with sqlite3.connect(newer) as conn:
        conn.execute("insert into _migrations (name, applied_at) values ('m999_from_the_future', 'now')")
    conn.close()
    code, checks = doctor_json("--model", model, "--db", str(newer))
    assert code == 1 and checks["database"]["status"] == "fail"
    assert checks["database"]["details"]["unknown"] == ["m999_from_the_future"]


def test_model_too_big_for_ram_fails(data_dir: Path, tmp_path: Path) -> None:
    """80 layers of 64 full-size KV heads at 131,072 tokens: a 344 GB KV cache."""
    huge = tiny_model(tmp_path / "huge.gguf", layers=80, embedding=8192, heads=64, kv_heads=64)
    code, checks = doctor_json("--model", str(huge), "--ctx", "131072")
    assert code == 1
    memory = checks["memory"]
    assert memory["status"] == "fail", memory
    assert memory["details"]["kv_cache_bytes"] == 80 * 131072 * 64 * 256 * 2
    assert "does not fit" in memory["summary"]


def test_missing_model_fails(data_dir: Path, tmp_path: Path) -> None:
    code, checks = doctor_json("--model", str(tmp_path / "nowhere.gguf"))
    assert code == 1
    assert checks["memory"]["status"] == "fail"
    assert "Model file not found" in checks["memory"]["summary"]


def test_a_model_is_found_by_its_imported_name(data_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``model import`` names it NAME.gguf and ``serve --model NAME`` finds it: so does doctor."""
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("JMEDLLM_MODELS_DIR", str(models))
    tiny_model(models / "jmed-tiny.gguf")
    code, checks = doctor_json("--model", "jmed-tiny")
    assert code == 0, checks["memory"]
    assert checks["memory"]["details"]["model"] == str(models / "jmed-tiny.gguf")


def test_a_models_folder_that_is_a_file_warns(data_dir: Path, tmp_path: Path) -> None:
    (data_dir / "models").write_text("junk")
    code, checks = doctor_json("--model", str(tiny_model(tmp_path / "tiny.gguf")))
    assert code == 0 and checks["disk"]["status"] == "warn", checks["disk"]
    assert f"the models folder {data_dir / 'models'} is not a folder" in checks["disk"]["summary"]


def test_a_truncated_model_fails_and_gets_no_speed_estimate(demo_model_path: Path, data_dir: Path,
                                                             tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(demo_model_path.read_bytes()[:100_000])
    code, checks = doctor_json("--model", str(truncated))
    assert code == 1 and checks["memory"]["status"] == "fail"
    assert "tokens/s" not in checks["speed"]["summary"] and "weights_bytes" not in checks["speed"]["details"]


def test_the_speed_ceiling_says_where_the_model_runs(tmp_path: Path) -> None:
    """The bandwidth ceiling is the CPU's; where llama.cpp offloads to a GPU (an H100 decoded a 7B Q4_K_M at
    ~190 tokens/s against a ~15 tokens/s CPU ceiling), doctor says the model runs there."""
    options = DoctorOptions(model=str(tiny_model(tmp_path / "tiny.gguf")))
    gpu = {"name": "NVIDIA H100 80GB HBM3", "memory_total": 85 * 10**9, "memory_free": 85 * 10**9}
    on_cpu = check_speed(options, [], offload=False)
    on_gpu = check_speed(options, [gpu], offload=True)
    assert "on the CPU" in on_cpu.summary and "GPU" not in on_cpu.summary
    assert "on the CPU" in on_gpu.summary and "run on the GPU (NVIDIA H100 80GB HBM3)" in on_gpu.summary
    assert "GPU" not in check_speed(options, [gpu], offload=False).summary  # a CPU-only build beside a GPU


def test_busy_port_warns_and_foreign_address_fails(data_dir: Path, tmp_path: Path) -> None:
    model = str(tiny_model(tmp_path / "tiny.gguf"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("doctor", "--json", "--model", model, "--port", str(port), timeout=60)
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    assert result.returncode == 0
    assert checks["port"]["status"] == "warn" and "is in use" in checks["port"]["summary"]

    code, checks = doctor_json("--model", model, "--host", "192.0.2.1")  # TEST-NET-1: never this machine's
    assert code == 1 and checks["port"]["status"] == "fail"
    _code, checks = doctor_json("--model", model, "--host", "0.0.0.0", "--port", str(port))
    assert checks["port"]["status"] == "ok" and "only with a login and API keys" in checks["port"]["summary"]
    assert "--allowed-host NAME" in checks["port"]["summary"]  # serve refuses 0.0.0.0 without it


def test_kv_cache_matches_llama_cpp(demo_model_path: Path) -> None:
    """llama.cpp reports "CPU KV buffer size = 48.00 MiB" for the demo model at 4,096 tokens."""
    assert kv_cache_bytes(read_gguf_metadata(demo_model_path).values, 4096) == 48 * 2**20


def test_system_panel_shows_escaped_text() -> None:
    hostile = "<img src=x onerror=alert(1)> **bold** [link](http://example.com)"
    report = Report((Check("memory", "Memory / メモリ", "fail", hostile, {"model": hostile, "gpus": [{"name": "<b>"}]}),
                     Check("python", "Python", "ok", "Python 3.11", {})))
    text = report_markdown(report)
    assert "<img" not in text and "<b>" not in text and "&lt;img" in text
    assert "\\*\\*bold\\*\\*" in text and "\\[link\\]" in text
    assert text.startswith("**Blocking problem / 要対応**")
    assert "- ✗ **Memory \\/ メモリ**: &lt;img" in text and "- ✓ **Python**: Python 3\\.11" in text
    assert "    - gpus\\[1\\]: name\\=&lt;b&gt;" in text


def system_check_handler(state: AppState) -> Callable[[gr.Request], str]:
    """The Model tab's system section, built in a page of its own; returns its button's handler."""
    with gr.Blocks() as page:
        build_system_panel(state)
    (handler,) = [block_fn.fn for block_fn in page.fns.values()]
    assert handler is not None
    return handler


def test_system_panel_checks_the_served_model_for_administrators(data_dir: Path, tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "served.gguf")
    engine = ScriptedEngine(lambda _prompt: "", card=replace(SCRIPTED_CARD, path=str(model)))
    db = tmp_path / "served.db"
    run = system_check_handler(AppState(engine, ServeOptions(n_ctx=2048, db_path=db)))
    text = run(gr.Request(username=None))  # without logins, a loopback server's local user is the administrator
    assert "**Memory for the model \\/ メモリ \\(RAM\\/VRAM\\)**" in text and "2\\,048 context" in text
    assert "Port" not in text  # this server holds its port
    assert "served\\.db" in text and not db.exists()

    lan = system_check_handler(AppState(engine, ServeOptions(host="0.0.0.0", db_path=db)))
    with pytest.raises(gr.Error):
        lan(gr.Request(username=None))


def test_an_offline_install_that_did_not_finish_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """install.sh marks the prefix first and copies BUNDLE.json last: a marker alone is an install cut short."""
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert check_python().status == OK  # a plain virtualenv, not a bundle's
    (tmp_path / ".jmedllm-bundle").touch()
    check = check_python()
    assert check.status == WARN
    assert check.summary == (f"The offline install in {tmp_path} did not finish (no BUNDLE.json): run the bundle's "
                             f"install.sh again with --prefix {tmp_path}.")
    (tmp_path / "BUNDLE.json").write_text("{}")
    assert check_python().status == OK
