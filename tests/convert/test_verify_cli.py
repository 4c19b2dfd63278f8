"""``convert export`` and ``convert verify`` from the command line: a JSON report, a table, and a
non-zero exit when a threshold fails."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from model_tools.cli import convert


def test_export_then_verify_passes_and_fails(tmp_path: Path, tiny_dir: Path, tiny_adapter: Path) -> None:
    runner = CliRunner()
    merged = tmp_path / "merged.gguf"
    result = runner.invoke(convert, ["export", "--model", str(tiny_dir), "--adapter", str(tiny_adapter),
                                     "--out", str(merged), "--outtype", "f32"])
    assert result.exit_code == 0, result.output
    report_path = tmp_path / "ok.json"
    result = runner.invoke(convert, ["verify", "--model", str(tiny_dir), "--adapter", str(tiny_adapter),
                                     "--gguf", str(merged), "--report", str(report_path)])
    assert result.exit_code == 0, result.output
    assert "overall: PASS" in result.output and "conversion nmse" in result.output
    report = json.loads(report_path.read_text())
    assert report["passed"] and report["tokenizer"]["mismatches"] == []

    unmerged = tmp_path / "unmerged.gguf"
    assert runner.invoke(convert, ["export", "--model", str(tiny_dir), "--out", str(unmerged),
                                   "--outtype", "f32"]).exit_code == 0
    bad_path = tmp_path / "bad.json"
    result = runner.invoke(convert, ["verify", "--model", str(tiny_dir), "--adapter", str(tiny_adapter),
                                     "--gguf", str(unmerged), "--report", str(bad_path)])
    assert result.exit_code == 1
    assert "overall: FAIL" in result.output and "verification failed" in result.output
    assert json.loads(bad_path.read_text())["conversion"]["passed"] is False
