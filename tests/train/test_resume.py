"""Killed (SIGKILL) after its first checkpoint (mid-epoch), the same command resumes and ends with the same adapter."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import REPO_ROOT

TRAIN = [sys.executable, "-m", "model_tools.train.cli"]
ARGS = ["--lr", "2e-2", "--epochs", "6", "--batch-size", "2", "--grad-accum", "1", "--max-length", "256",
        "--eval-fraction", "0.1", "--seed", "1", "--save-steps", "3", "--logging-steps", "2"]


def _lora(base: Path, data: Path, out: Path) -> list[str]:
    return [*TRAIN, "lora", "--base", str(base), "--data", str(data), "--out", str(out), *ARGS]


def _kill_after_first_checkpoint(command: list[str], out: Path) -> None:
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list((out / "checkpoints").glob("checkpoint-*/jmedllm-seal.json")):
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:  # killed here as the test means to, and also when a check above fails
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_adapter(tmp_path: Path, small_base: Path, question_file: Path) -> None:
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    done = subprocess.run(_lora(small_base, question_file, reference), cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    _kill_after_first_checkpoint(_lora(small_base, question_file, resumed), resumed)
    assert not (resumed / "training.json").exists()
    again = subprocess.run(_lora(small_base, question_file, resumed), cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    assert "resuming from checkpoint-" in again.stderr
    expected = load_file(reference / "adapter_model.safetensors")
    got = load_file(resumed / "adapter_model.safetensors")
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert (got[name] == tensor).all(), name  # bit-identical on the CPU
