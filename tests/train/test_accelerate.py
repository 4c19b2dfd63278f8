"""The same command under ``accelerate launch`` with the shipped one-process CPU configuration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

CONFIG = REPO_ROOT / "model_tools" / "train" / "assets" / "accelerate" / "cpu.yaml"


@pytest.mark.slow
def test_accelerate_launch_one_cpu_process(tmp_path: Path, small_base: Path, question_file: Path) -> None:
    accelerate = Path(sys.executable).with_name("accelerate")
    out = tmp_path / "lora"
    result = subprocess.run(
        [str(accelerate), "launch", "--config_file", str(CONFIG), "-m", "model_tools.train.cli", "lora",
         "--base", str(small_base), "--data", str(question_file), "--out", str(out), "--epochs", "2",
         "--batch-size", "2", "--grad-accum", "1", "--max-length", "256", "--lr", "1e-2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    assert manifest["losses"], manifest.keys()
