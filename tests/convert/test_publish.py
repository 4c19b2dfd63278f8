"""How a finished build reaches --out: reports first, stale reports removed, failed GGUFs not kept."""

from __future__ import annotations

import json
from pathlib import Path

from model_tools.build import BuildResult, publish, staging_dir


def staged(stage: Path, passed: bool | None) -> BuildResult:
    gguf = stage / "M-f16.gguf"
    gguf.write_bytes(b"GGUF new")
    (stage / "manifest.json").write_text("{}")
    (stage / "MODEL_CARD.md").write_text("# M")
    if passed is not None:
        (stage / "verification.json").write_text(json.dumps({"passed": passed}))
    return BuildResult([gguf], None if passed is None else {"passed": passed}, stage / "manifest.json")


def test_an_unverified_build_replaces_the_old_one_and_its_stale_verification(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "M-f16.gguf").write_bytes(b"GGUF old")
    (out / "verification.json").write_text('{"passed": false}')  # about the old files
    with staging_dir(out) as stage:
        result = publish(stage, out, staged(stage, passed=None))
    assert {p.name for p in out.iterdir()} == {"MODEL_CARD.md", "M-f16.gguf", "manifest.json"}
    assert (out / "M-f16.gguf").read_bytes() == b"GGUF new" and result.outputs == [out / "M-f16.gguf"]


def test_a_build_that_fails_verification_keeps_its_reports_not_its_gguf(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with staging_dir(out) as stage:
        result = publish(stage, out, staged(stage, passed=False))
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "manifest.json", "verification.json"]
    assert result.outputs == [] and not result.passed


def test_the_staging_folder_goes_whatever_happens(tmp_path: Path) -> None:
    try:
        with staging_dir(tmp_path) as stage:
            (stage / "half.gguf").write_bytes(b"GG")
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert list(tmp_path.iterdir()) == []
