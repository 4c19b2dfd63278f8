"""The app's folders (cache, data, models and those under them): one that cannot be made or used is a
clear message that names it, says why, and names the environment variable that chose it; never a
traceback."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.paths import FolderError, cache_dir, data_dir
from tests.conftest import as_another_user, assert_clean_error, run_cli

ADVICE = "This folder comes from ${}: set it to a folder you can use, or unset it for the default."


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` with ``options`` for the block; skipped where this user cannot mount."""
    path.mkdir()
    mount = shutil.which("mount")
    if mount is None or subprocess.run([mount, "-t", "tmpfs", "-o", options, "jmedllm-test", str(path)],
                                       capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_file_in_place_of_the_data_folder_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "data"
    blocked.write_text("not a folder")
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(blocked))
    result = run_cli("bench", "list")
    assert_clean_error(result)
    assert result.stderr == (f"Error: Cannot use the folder {blocked}: it is a file, not a folder. "
                             f"{ADVICE.format('JMEDLLM_DATA_DIR')}\n")
    assert blocked.read_text() == "not a folder"


def test_a_file_in_place_of_a_parent_of_the_cache_folder_is_named(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("where a folder should be")
    monkeypatch.setenv("JMEDLLM_CACHE_DIR", str(blocker / "cache"))
    result = run_cli("model", "info", "demo")
    assert_clean_error(result, f"Error: Cannot use the folder {blocker / 'cache'}: a file is in the way ({blocker}). "
                               f"{ADVICE.format('JMEDLLM_CACHE_DIR')}")
    assert len(result.stderr.splitlines()) == 1


def test_the_apps_own_folder_names_no_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "share"
    blocker.write_text("where the user's data folders should be")
    monkeypatch.delenv("JMEDLLM_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(blocker))  # platformdirs' user data folder is under it
    with pytest.raises(FolderError) as caught:
        data_dir()
    assert str(caught.value) == f"Cannot use the folder {blocker / 'jmedllm'}: a file is in the way ({blocker})."


def test_a_folder_without_permission_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryDirectory(prefix="jmedllm-folders-") as folder:  # pytest's tmp_path is root's alone
        os.chmod(folder, 0o755)
        locked = Path(folder) / "locked"
        locked.mkdir()
        os.chmod(locked, 0o555)
        monkeypatch.setenv("JMEDLLM_DATA_DIR", str(locked / "data"))
        with as_another_user(), pytest.raises(FolderError) as caught:
            data_dir()
    error = caught.value
    assert str(error) == (f"Cannot use the folder {locked / 'data'}: you have no permission to create or change "
                          f"it. {ADVICE.format('JMEDLLM_DATA_DIR')}")
    # still the OSError it was, for callers that handle one (the sha256 cache skips saving)
    assert isinstance(error, OSError) and error.errno == errno.EACCES and error.strerror == "Permission denied"
    assert isinstance(error.__cause__, PermissionError)


@pytest.mark.parametrize(("options", "why"), [("ro,size=1m", "its disk is read-only"),
                                              ("size=1m,nr_inodes=1", "its disk is full")])
def test_a_read_only_or_full_disk_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: str,
                                          why: str) -> None:
    with tmpfs(tmp_path / "disk", options) as disk:
        monkeypatch.setenv("JMEDLLM_CACHE_DIR", str(disk / "cache"))
        with pytest.raises(FolderError) as caught:
            cache_dir()
    assert str(caught.value) == f"Cannot use the folder {disk / 'cache'}: {why}. {ADVICE.format('JMEDLLM_CACHE_DIR')}"
