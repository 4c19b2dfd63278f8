"""``scripts/bundle_checks.py`` and the pieces of install.sh that need no full install: where it installs
(``prepare-prefix``) and how llama-server is placed (``place-server``); each failure is one line for
install.sh to show, not a traceback, and an interrupted install can simply be run again."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from app.engines.server_build import BINARY_NAME, llama_cpp_python_version, sdist_name
from tests.conftest import REPO_ROOT


def load_bundle_checks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bundle_checks", REPO_ROOT / "scripts" / "bundle_checks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bundle_checks = load_bundle_checks()


def server_bundle(tmp_path: Path) -> Path:
    """A bundle folder holding only ``llama-server/`` (a fake binary, its build.json and sdist)."""
    server = tmp_path / "bundle" / "llama-server"
    server.mkdir(parents=True)
    version = llama_cpp_python_version()
    (server / "build.json").write_text(json.dumps({"llama_cpp_python": version}))
    (server / BINARY_NAME).write_bytes(b"\x7fELF")
    (server / sdist_name(version)).write_bytes(b"sdist")
    return server


def test_an_unwritable_cache_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    server = server_bundle(tmp_path)
    blocked = tmp_path / "cache-is-a-file"
    blocked.write_text("not a folder")
    result = subprocess.run([sys.executable, "-B", "scripts/bundle_checks.py", "place-server", str(server.parent),
                             str(tmp_path / "prefix")], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                            env={**os.environ, "JMEDLLM_CACHE_DIR": str(blocked / "cache")})
    assert result.returncode == 1
    assert result.stderr.startswith(f"Cannot write {blocked / 'cache'}") and result.stderr.count("\n") == 1, \
        result.stderr
    assert not (tmp_path / "prefix").exists()


def test_llama_server_is_executable_even_when_the_tar_lost_its_modes(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    server = server_bundle(tmp_path)  # written without the x bit, as a tar re-packed on Windows leaves it
    monkeypatch.setenv("JMEDLLM_CACHE_DIR", str(tmp_path / "cache"))
    placed = bundle_checks.place_server(server.parent, tmp_path / "prefix")
    for binary in (placed, tmp_path / "prefix" / "share" / "jmedllm" / "llama-server" / BINARY_NAME):
        assert binary.stat().st_mode & stat.S_IXUSR, oct(binary.stat().st_mode)


@pytest.mark.parametrize("kind", ["another program's folder", "a file"])
def test_a_prefix_that_is_not_ours_is_refused(tmp_path: Path, kind: str) -> None:
    prefix = tmp_path / "prefix"
    if kind == "a file":
        prefix.write_text("not a folder")
    else:
        prefix.mkdir()
        (prefix / "notes.txt").write_text("another program's")
    assert bundle_checks.prefix_problems(prefix, 1) == [
        f"{prefix} exists and is not a JMedLLM Desk installation; choose an empty or new folder with --prefix."]


def test_a_prefix_below_a_file_says_it_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "usb").write_text("a file, not a folder")
    (problem,) = bundle_checks.prefix_problems(tmp_path / "usb" / "jmedllm", 1)
    assert problem.startswith(f"{tmp_path / 'usb' / 'jmedllm'} cannot be written: {tmp_path / 'usb'} is not a folder")
    assert "--prefix" in problem


@pytest.mark.parametrize(("ours", "free_mib", "refused"), [(False, 150, True), (False, 250, False),
                                                           (True, 150, False), (True, 50, True)])
def test_free_space_for_a_new_install_and_for_an_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ours: bool,
                                                         free_mib: int, refused: bool) -> None:
    prefix = tmp_path / "prefix"
    if ours:
        prefix.mkdir()
        (prefix / bundle_checks.MARKER).touch()
    usage = shutil.disk_usage(tmp_path)._replace(free=free_mib * 2**20)
    monkeypatch.setattr(bundle_checks.shutil, "disk_usage", lambda _path: usage)
    problems = bundle_checks.prefix_problems(prefix, 100 * 2**20)
    assert bool(problems) == refused, problems
    if refused:
        assert f"{prefix} needs about {100 if ours else 200} MiB free and its disk has {free_mib} MiB" in problems[0]


def test_a_virtualenv_whose_python_was_removed_is_made_again(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "wheelhouse").mkdir(parents=True)
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / bundle_checks.MARKER).touch()
    (prefix / "pyvenv.cfg").write_text("home = /usr/local/python3.11-removed\n")
    (prefix / "bin" / "python").symlink_to("/usr/local/python3.11-removed/bin/python3")
    bundle_checks.prepare_prefix(bundle, prefix)
    assert sorted(path.name for path in prefix.iterdir()) == [bundle_checks.MARKER]


def mini_bundle(folder: Path) -> Path:
    """A bundle that passes install.sh's checks (this machine's BUNDLE.json, a consistent SHA256SUMS) but has
    no real wheels: enough to run install.sh up to making the virtualenv."""
    (folder / "wheelhouse").mkdir(parents=True)
    (folder / "wheelhouse" / "pip-0-py3-none-any.whl").write_bytes(b"not used")
    shutil.copy2(REPO_ROOT / "assets" / "bundle" / "install.sh", folder / "install.sh")
    shutil.copy2(REPO_ROOT / "scripts" / "bundle_checks.py", folder / "bundle_checks.py")
    subprocess.run([sys.executable, "-B", "bundle_checks.py", "describe", "BUNDLE.json", "--name", "mini",
                    "--version", "0.0.0", "--llama-cpp-python", llama_cpp_python_version()], cwd=folder, check=True)
    files = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    sums = subprocess.run(["sha256sum", *files], cwd=folder, capture_output=True, text=True, check=True).stdout
    (folder / "SHA256SUMS").write_text(sums)
    return folder


def test_an_install_interrupted_while_making_the_virtualenv_can_be_run_again(tmp_path: Path) -> None:
    bundle = mini_bundle(tmp_path / "bundle")
    python = tmp_path / "python-interrupted-in-venv"  # makes part of the virtualenv, then stops as Ctrl-C would
    python.write_text(f"""#!/usr/bin/env bash
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$4/bin"; echo "home = /usr/bin" >"$4/pyvenv.cfg"; exit 130; fi
exec "{sys.executable}" "$@"
""")
    python.chmod(0o755)
    prefix = tmp_path / "prefix"
    for _ in range(2):
        result = subprocess.run([str(bundle / "install.sh"), "--prefix", str(prefix)], capture_output=True, text=True,
                                timeout=120, check=False, env={**os.environ, "PYTHON": str(python)})
        assert result.returncode == 1
        assert result.stderr.strip().endswith(f"could not make a virtualenv in {prefix} (see above); fix that and "
                                              "run install.sh again."), result.stderr


def test_a_python_that_does_not_run_says_what_to_do(tmp_path: Path) -> None:
    bundle = mini_bundle(tmp_path / "bundle")
    result = subprocess.run([str(bundle / "install.sh"), "--prefix", str(tmp_path / "prefix")], capture_output=True,
                            text=True, timeout=120, check=False, env={**os.environ, "PYTHON": "/bin/false"})
    assert result.returncode == 1
    want = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert result.stderr == (f"install.sh: /bin/false does not run as Python. Set PYTHON=/path/to/python{want}. "
                             "Nothing was installed.\n")
    assert not (tmp_path / "prefix").exists()
