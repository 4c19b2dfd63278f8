"""Files the app writes are private (0600 files in 0700 folders), exports hold no live formulas, and
the sha256 cache does not list model paths. Run under a permissive umask so the app itself must
set the modes."""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.bench import store
from app.db import open_db
from app.hashing import cached_sha256
from app.paths import cache_dir, data_dir, models_dir
from tests.conftest import REPO_ROOT, run_cli

FORMULAS = {"=1+1": "'=1+1", "+cmd|' /C calc'!A0": "'+cmd|' /C calc'!A0", "-2": "'-2", "@SUM(A1)": "'@SUM(A1)",
            "\tleading tab": "'\tleading tab", "\rcarriage": "'\rcarriage", "plain": "plain"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def make_run(db_path: Path, model_file: str, responses: list[str]) -> int:
    """A real database with one run whose model file name and responses are the given texts."""
    db = open_db(db_path)
    try:
        run_id = store.create_run(db, {"config_key": "k", "model_file": model_file, "mode": "generate",
                                       "n_items": len(responses)})
        for i, response in enumerate(responses):
            store.add_answer(db, {"run_id": run_id, "problem_id": f"116A{i + 1}", "language": "ja",
                                  "response": response, "raw_output": response, "picked": "a", "gold": "a"})
        store.finish_run(db, run_id, "complete")
    finally:
        db.close()
    return run_id


def test_csv_export_neutralises_formulas_and_jsonl_stays_exact(tmp_path: Path) -> None:
    db_path = tmp_path / "runs.db"
    run_id = make_run(db_path, "=HYPERLINK(\"http://x\")", list(FORMULAS))
    out = tmp_path / "run.csv"
    result = run_cli("bench", "export", str(run_id), "--db", str(db_path), "-o", str(out))
    assert result.returncode == 0, result.stderr
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["response"] for r in rows] == list(FORMULAS.values())
    assert [r["raw_output"] for r in rows] == list(FORMULAS.values())
    assert {r["model_file"] for r in rows} == {"'=HYPERLINK(\"http://x\")"}
    assert mode(out) == 0o600

    result = run_cli("bench", "export", str(run_id), "--db", str(db_path), "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["response"] for r in lines] == list(FORMULAS)
    assert lines[0]["model_file"] == "=HYPERLINK(\"http://x\")"


def test_export_over_an_existing_world_readable_file_makes_it_private(tmp_path: Path) -> None:
    db_path = tmp_path / "runs.db"
    run_id = make_run(db_path, "m.gguf", ["a"])
    out = tmp_path / "run.csv"
    out.write_text("stale contents")
    out.chmod(0o644)
    result = run_cli("bench", "export", str(run_id), "--db", str(db_path), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert mode(out) == 0o600 and "stale" not in out.read_text()


def test_database_and_wal_files_are_private_in_a_private_folder(tmp_path: Path) -> None:
    db_path = tmp_path / "new-folder" / "jmedllm.db"
    db = open_db(db_path)
    try:
        store.create_run(db, {"config_key": "k"})  # a write, so the -wal and -shm files exist
        files = {p.name: mode(p) for p in db_path.parent.iterdir()}
    finally:
        db.close()
    assert files == {"jmedllm.db": 0o600, "jmedllm.db-wal": 0o600, "jmedllm.db-shm": 0o600}
    assert mode(db_path.parent) == 0o700


def test_app_folders_are_created_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for env, name in (("JMEDLLM_DATA_DIR", "data"), ("JMEDLLM_CACHE_DIR", "cache"), ("JMEDLLM_MODELS_DIR", "models")):
        monkeypatch.setenv(env, str(tmp_path / name / "sub"))
    for folder in (data_dir(), cache_dir(), models_dir()):
        assert folder.is_dir() and mode(folder) == 0o700, folder
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(shared))
    assert data_dir() == shared and mode(shared) == 0o755  # a folder the user chose keeps its mode


def test_default_folders_are_tightened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's own default folders, created 0755 by older releases, become 0700."""
    import platformdirs

    old = tmp_path / "jmedllm"
    old.mkdir(mode=0o755)
    monkeypatch.delenv("JMEDLLM_DATA_DIR", raising=False)
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda name: str(old))
    assert data_dir() == old and mode(old) == 0o700


def test_sha256_cache_lists_no_model_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JMEDLLM_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "secret-patient-folder" / "model.gguf"
    model.parent.mkdir()
    model.write_bytes(b"weights" * 1000)
    cache = tmp_path / "cache" / "sha256-cache.json"
    cache.parent.mkdir()
    cache.write_text(json.dumps({f"{model}|1|2": "0" * 64}))  # the old format, path in clear
    digest = cached_sha256(model)
    text = cache.read_text()
    assert "secret-patient-folder" not in text and "model.gguf" not in text
    assert json.loads(text) and list(json.loads(text).values()) == [digest]
    assert mode(cache) == 0o600
    model.write_bytes(b"changed")  # a different size: computed again, not served stale
    assert cached_sha256(model) != digest


def test_ui_export_folder_is_private_and_removed_at_exit(tmp_path: Path) -> None:
    """One 0700 folder per process for the Benchmark tab's downloads, removed when the process ends."""
    code = ("from app.bench.export import open_export, private_export_dir\n"
            "import os, stat\n"
            "folder = private_export_dir()\n"
            "assert private_export_dir() == folder\n"
            "with open_export(folder / 'run.csv') as h: h.write('x')\n"
            "print(folder, oct(stat.S_IMODE(folder.stat().st_mode)), "
            "oct(stat.S_IMODE((folder / 'run.csv').stat().st_mode)))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    folder, folder_mode, file_mode = result.stdout.split()
    assert (folder_mode, file_mode) == ("0o700", "0o600")
    assert not Path(folder).exists()
