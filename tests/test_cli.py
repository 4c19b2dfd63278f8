"""The jmedllm command line, end to end in real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from app.demo_model import DEMO_SHA256
from app.qa import Answer
from tests.conftest import JMEDLLM, REPO_ROOT, assert_clean_error, run_cli

CHOICES = ("Liver", "Pancreas", "Kidney")


def test_model_info_demo_as_json(demo_model_path: Path) -> None:
    result = run_cli("model", "info", "demo", "--json")
    assert result.returncode == 0, result.stderr
    card = json.loads(result.stdout)
    assert card["sha256"] == DEMO_SHA256
    assert card["architecture"] == "qwen2"
    assert card["quantization"] == "Q4_K_M"
    assert card["is_demo"] is True
    assert card["path"] == str(demo_model_path)


def test_model_info_table_and_bad_file(tmp_path: Path, demo_model_path: Path) -> None:
    result = run_cli("model", "info", str(demo_model_path))
    assert result.returncode == 0
    assert "quantization: Q4_K_M" in result.stdout
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("not a model")
    result = run_cli("model", "info", str(bogus))
    assert result.returncode == 1
    assert "not a GGUF model" in result.stderr
    result = run_cli("model", "info", str(tmp_path / "missing.gguf"))
    assert result.returncode == 1
    assert "Model file not found" in result.stderr


def test_ask_streams_a_japanese_answer_with_its_model_card(demo_model_path: Path) -> None:
    result = run_cli("ask", "インフルエンザの主な症状を3つ挙げてください。", "--max-tokens", "32", "--ctx", "1024")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert f"sha256 {DEMO_SHA256[:12]}" in result.stderr
    assert "Q4_K_M" in result.stderr
    assert "not a diagnosis" in result.stderr
    assert "demo model" in result.stderr


def test_ask_multiple_choice_names_the_chosen_option(demo_model_path: Path) -> None:
    result = run_cli(
        "ask", "Which organ produces insulin?", *(arg for c in CHOICES for arg in ("--choices", c)),
        "--lang", "en", "--max-tokens", "24", "--ctx", "1024",
    )
    assert result.returncode == 0, result.stderr
    answer, marker, chosen = result.stdout.rpartition("\n\nChosen option: ")
    assert marker and answer.strip()
    expected = Answer(SimpleNamespace(text=answer), "en", CHOICES, None, "").chosen_text()  # type: ignore[arg-type]
    assert chosen.strip() == (expected or "none of the options (abstained)")


def test_ask_rejects_bad_input_clearly(demo_model_path: Path) -> None:
    result = run_cli("ask", "   ", "--max-tokens", "8", "--ctx", "1024")
    assert result.returncode == 1
    assert "The question is empty" in result.stderr
    result = run_cli("ask", "Q?", "--choices", "only one", "--max-tokens", "8", "--ctx", "1024")
    assert result.returncode == 1
    assert "at least two choices" in result.stderr
    result = run_cli("ask", "Q?", "--choices", "a", "--choices", "b", "--template", "nope", "--ctx", "1024")
    assert result.returncode == 1
    assert "Unknown template 'nope'" in result.stderr


def test_a_missing_extra_is_named_with_its_install_command(monkeypatch) -> None:
    import click
    from click.testing import CliRunner

    from app.cli import UserErrorGroup

    monkeypatch.setitem(sys.modules, "trl", None)  # as if the train extra were not installed

    @click.group(cls=UserErrorGroup)
    def group() -> None:
        pass

    @group.command()
    def needs_trl() -> None:
        import trl  # noqa: F401

    @group.command()
    def needs_nothing_known() -> None:
        import not_an_extra_package  # noqa: F401

    result = CliRunner().invoke(group, ["needs-trl"])
    assert result.exit_code == 1 and "needs the 'train' extra (trl is not installed)" in result.output
    assert "pip install -e '.[train]'" in result.output and "Traceback" not in result.output
    other = CliRunner().invoke(group, ["needs-nothing-known"])
    assert isinstance(other.exception, ModuleNotFoundError)  # not an extra: a real bug, not hidden


def test_ctrl_c_while_the_model_loads_stops_before_the_answer(demo_model_path: Path) -> None:
    """Ctrl-C in the first second (model loading, where llama.cpp's log callback swallowed it) is not lost."""
    for delay in (0.4, 0.7):
        process = subprocess.Popen([*JMEDLLM, "ask", "Explain sepsis management in detail", "--max-tokens", "60",
                                    "--gpu-layers", "0"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(delay)
            process.send_signal(signal.SIGINT)
            _out, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode in (1, 130), err  # 1: "Aborted!" before the handler is set, 130: stopped
        assert "· length]" not in err and "Traceback" not in err


def test_serve_on_a_busy_port_says_so_before_loading_the_model(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_cli("serve", "--model", str(tmp_path / "absent.gguf"), "--port", str(port), timeout=120)
    assert_clean_error(result, f"Cannot serve: 127.0.0.1:{port} is in use", "another --port")


def test_llama_cpp_is_loaded_before_pyarrow(tmp_path: Path) -> None:
    """With a CUDA build whose libraries carry their own libstdc++, a model loaded after pyarrow crashed
    (seen on an H100 machine); the command line loads llama.cpp first, also for commands that open the
    database (sqlite-utils imports pandas, which imports pyarrow) before any model."""
    result = subprocess.run([*JMEDLLM, "db", "check", "--db", str(tmp_path / "new.db")], capture_output=True,
                            text=True, timeout=120, cwd=REPO_ROOT, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")]
    assert "pyarrow" in imported, "this command no longer imports pyarrow: test another one"
    assert imported.index("llama_cpp") < imported.index("pyarrow")


def test_output_to_a_full_disk_is_one_line(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run([*JMEDLLM, "bench", "data", "list"], stdout=full, stderr=subprocess.PIPE, text=True,
                                cwd=REPO_ROOT, timeout=120, env={**os.environ, "JMEDLLM_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr == "Error: Cannot write the output: No space left on device.\n"

