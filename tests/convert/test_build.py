"""``jmedllm convert build`` end to end on the real Qwen2 model, and an interrupted build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from app.hashing import sha256_file
from tests.conftest import JMEDLLM, REPO_ROOT


@pytest.mark.slow
def test_build_end_to_end(tmp_path: Path, real_dir: Path, real_adapter: Path) -> None:
    out = tmp_path / "out"
    merged = tmp_path / "merged"
    proc = subprocess.run([*JMEDLLM, "convert", "build", "--base", str(real_dir), "--adapter", str(real_adapter),
                           "--out", str(out), "--quant", "Q4_K_M,Q8_0", "--save-merged", str(merged),
                           "--name", "JMedLLM-test"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "overall: PASS" in proc.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == ["JMedLLM-test-f16.gguf", "JMedLLM-test-q4_k_m.gguf", "JMedLLM-test-q8_0.gguf",
                     "MODEL_CARD.md", "manifest.json", "verification.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["outputs"]:
        path = out / entry["file"]
        assert entry["size"] == path.stat().st_size and entry["sha256"] == sha256_file(path)
    assert manifest["inputs"]["adapter"]["files"]["adapter_model.safetensors"]["sha256"] == \
        sha256_file(real_adapter / "adapter_model.safetensors")
    assert manifest["tools"]["llama-cpp-python"] == "0.3.36"
    report = manifest["verification"]
    assert report["passed"] and report["tokenizer"]["mismatches"] == []
    assert set(report["quantization"]["types"]) == {"Q4_K_M", "Q8_0"}
    assert "Verification" in (out / "MODEL_CARD.md").read_text()
    assert (merged / "model.safetensors").is_file() and (merged / "tokenizer.json").is_file()


@pytest.mark.slow
def test_interrupted_build_leaves_no_partial_file(tmp_path: Path, real_dir: Path, real_adapter: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([*JMEDLLM, "convert", "build", "--base", str(real_dir), "--adapter", str(real_adapter),
                             "--out", str(out), "--quant", "Q4_K_M"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list(out.glob(".build-*/.*.partial")):  # the F16 export has started writing (in the staging folder)
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr.decode()
    assert "interrupted" in stderr.decode()
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_sigterm_also_cleans_up(tmp_path: Path, real_dir: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([*JMEDLLM, "convert", "export", "--model", str(real_dir), "--out", str(out / "m.gguf")],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.monotonic() + 300
    while not list(out.glob(".*.partial")) if out.exists() else True:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_ctrl_c_during_quantization_stops_it(tmp_path: Path, real_f16: Path) -> None:
    # The Ctrl-C arrives while llama.cpp's quantizer runs. Python would deliver it inside the log callback,
    # where ctypes prints and drops it, and the quantization ran to the end. It must stop the command, with
    # nothing kept.
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([*JMEDLLM, "convert", "quantize", "--input", str(real_f16), "--out",
                             str(out / "q.gguf"), "--type", "Q8_0", "--threads", "1"],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not any(p.stat().st_size > 1 << 20 for p in out.glob(".*.partial")):  # tensors are being written
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr.decode()
    assert "Stopping once llama.cpp has finished this quantization" in stderr.decode()
    assert "Exception ignored" not in stderr.decode()
    assert list(out.iterdir()) == []
