"""The offline bundle end to end: built here, refused when damaged or foreign, installed and asked with no network.

The bundle is built once for the module by ``scripts/make_bundle.sh`` (pip's cached llama-cpp-python
wheel and the cached llama-server build are reused, nothing of llama.cpp is compiled). The install
and the first answer run in a network namespace with no network at all (``unshare -n``, which needs
root: CI has it); where that is not available the tests skip, or fail when $JMEDLLM_REQUIRE_NETNS is set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, scratch_folder

REQUIRE_ENV = "JMEDLLM_REQUIRE_NETNS"
QUESTION = "日本の首都はどこですか？一言で答えてください。"

pytestmark = [pytest.mark.slow, pytest.mark.model]


def _netns_problem() -> str | None:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return "unshare (util-linux) is not available"
    result = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return f"unshare -n cannot make a network namespace here (needs root): {result.stderr.strip()}"
    return None


@pytest.fixture(scope="module", autouse=True)
def network_namespace() -> None:
    problem = _netns_problem()
    if problem:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, llama_server_binary: Path) -> Iterator[Path]:
    """The bundle built by make_bundle.sh and unpacked, as a workstation would get it."""
    with scratch_folder(tmp_path_factory, "bundle-out") as out:
        started = time.monotonic()
        result = subprocess.run([str(REPO_ROOT / "scripts" / "make_bundle.sh"), "--out", str(out)],
                                capture_output=True, text=True, timeout=900, check=False, cwd=REPO_ROOT)
        assert result.returncode == 0, result.stdout + result.stderr
        print(f"bundle built in {time.monotonic() - started:.0f} s:\n{result.stdout}")
        (tar,) = out.glob("jmedllm-*.tar")
        assert "Bundle: " in result.stdout
        with tarfile.open(tar) as archive:
            archive.extractall(out / "unpacked", filter="data")
        tar.unlink()
        (folder,) = (out / "unpacked").iterdir()
        yield folder


def copy_of(bundle: Path, target: Path) -> Path:
    """A copy of the unpacked bundle sharing its files (hard links); replace a file before changing it."""
    shutil.copytree(bundle, target, copy_function=os.link)
    return target


def replace_file(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def install(bundle: Path, home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``install.sh --prefix home/prefix`` with no network, the app's folders under ``home``."""
    return subprocess.run(["unshare", "-n", str(bundle / "install.sh"), "--prefix", str(home / "prefix"), *extra],
                          capture_output=True, text=True, timeout=900, check=False, env=app_env(home))


def app_env(home: Path) -> dict[str, str]:
    return {**os.environ, "JMEDLLM_CACHE_DIR": str(home / "cache"), "JMEDLLM_DATA_DIR": str(home / "data")}


def test_damaged_wheel_is_refused_by_name_before_anything_is_installed(bundle: Path, tmp_path: Path) -> None:
    damaged = copy_of(bundle, tmp_path / "damaged")
    (wheel,) = (damaged / "wheelhouse").glob("click-*.whl")
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    replace_file(wheel, bytes(data))
    result = install(damaged, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"wheelhouse/{wheel.name}" in result.stderr and "damaged" in result.stderr, result.stderr
    assert "Nothing was installed" in result.stderr
    assert not (tmp_path / "prefix").exists()


def test_added_file_is_refused(bundle: Path, tmp_path: Path) -> None:
    tampered = copy_of(bundle, tmp_path / "tampered")
    (tampered / "wheelhouse" / "extra-1.0-py3-none-any.whl").write_bytes(b"not listed")
    result = install(tampered, tmp_path)
    assert result.returncode == 1
    assert "wheelhouse/extra-1.0-py3-none-any.whl" in result.stderr, result.stderr
    assert not (tmp_path / "prefix").exists()


def test_many_added_files_are_named_five_at_most(bundle: Path, tmp_path: Path) -> None:
    tampered = copy_of(bundle, tmp_path / "tampered")
    for number in range(8):
        (tampered / "wheelhouse" / f"extra{number}-1.0-py3-none-any.whl").write_bytes(b"not listed")
    result = install(tampered, tmp_path)
    assert result.returncode == 1
    assert "wheelhouse/extra4-1.0-py3-none-any.whl and 3 more. Nothing was installed" in result.stderr, result.stderr
    assert "extra5" not in result.stderr


def test_a_relative_prefix_is_relative_to_where_install_sh_runs(bundle: Path, tmp_path: Path) -> None:
    copy = copy_of(bundle, tmp_path / "bundle")
    here = tmp_path / "here"
    (here / "jm").mkdir(parents=True)
    (here / "jm" / "notes.txt").write_text("another program's folder")
    result = subprocess.run(["unshare", "-n", str(copy / "install.sh"), "--prefix", "jm"], cwd=here,
                            capture_output=True, text=True, timeout=900, check=False, env=app_env(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{here}/jm exists and is not a JMedLLM Desk installation" in result.stderr, result.stderr
    assert not (copy / "jm").exists()


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("machine", "aarch64", "The bundle is for linux/aarch64"),
    ("cpu_features", ["avx2", "no_such_feature"], "this CPU lacks no_such_feature"),
    ("glibc", "99.0", "built against glibc 99.0"),
])
def test_wrong_platform_is_refused_before_anything_is_installed(bundle: Path, tmp_path: Path, field: str,
                                                                 value: object, expected: str) -> None:
    foreign = copy_of(bundle, tmp_path / "foreign")
    manifest = json.loads((foreign / "BUNDLE.json").read_text())
    manifest[field] = value
    replace_file(foreign / "BUNDLE.json", (json.dumps(manifest, indent=2) + "\n").encode())
    sums = foreign / "SHA256SUMS"  # made consistent, so only the platform check can refuse it
    digest = subprocess.run(["sha256sum", "BUNDLE.json"], cwd=foreign, capture_output=True, text=True,
                            check=True).stdout
    lines = [digest.rstrip("\n") if line.endswith("  BUNDLE.json") else line for line in sums.read_text().splitlines()]
    replace_file(sums, ("\n".join(lines) + "\n").encode())
    result = install(foreign, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr and "nothing was installed" in result.stderr, result.stderr
    assert not (tmp_path / "prefix").exists()


def test_installs_and_answers_in_japanese_with_no_network(bundle: Path, tmp_path: Path) -> None:
    """One network namespace: install, re-install (upgrade in place), doctor when it exists, ask; into a prefix
    with a space and Japanese in its path, as a hospital share may have."""
    prefix, data = tmp_path / "院内 apps" / "jmedllm", tmp_path / "data"
    data.mkdir()
    (data / "keep.db").write_bytes(b"the user's database")
    jmedllm = prefix / "bin" / "jmedllm"
    script = f"""
set -u
python3 -c 'import socket; socket.create_connection(("pypi.org", 443), timeout=5)' >/dev/null 2>&1 \
    && {{ echo "NETWORK REACHABLE"; exit 9; }}
t0=$(date +%s)
"{bundle}/install.sh" --prefix "{prefix}" >"{tmp_path}/install1.log" 2>&1 || {{ echo "install 1 failed"; exit 2; }}
t1=$(date +%s)
"{bundle}/install.sh" --prefix "{prefix}" >"{tmp_path}/install2.log" 2>&1 || {{ echo "install 2 failed"; exit 3; }}
t2=$(date +%s)
echo "install: $((t1 - t0)) s, upgrade in place: $((t2 - t1)) s"
if "{jmedllm}" doctor --help >/dev/null 2>&1; then
    "{jmedllm}" doctor >"{tmp_path}/doctor.log" 2>&1; echo "doctor exit $?"
fi
"{jmedllm}" ask --model demo --gpu-layers 0 --ctx 2048 --max-tokens 48 "{QUESTION}" \
    >"{tmp_path}/answer.txt" 2>"{tmp_path}/ask.log" || {{ echo "ask failed"; exit 4; }}
"""
    result = subprocess.run(["unshare", "-n", "bash", "-c", script], capture_output=True, text=True, timeout=1200,
                            check=False, env=app_env(tmp_path))
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(tmp_path.glob("*.log")))
    assert result.returncode == 0, result.stdout + result.stderr + logs
    print(result.stdout)
    assert "Installed JMedLLM Desk" in (tmp_path / "install2.log").read_text()
    assert f"'{prefix}'/bin/jmedllm serve --model demo" in (tmp_path / "install1.log").read_text()  # copyable
    assert (data / "keep.db").read_bytes() == b"the user's database"
    assert (tmp_path / "cache" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf").is_file()
    assert list((tmp_path / "cache" / "llama-server").glob("*/llama-server"))
    if "doctor exit" in result.stdout:
        doctor = (tmp_path / "doctor.log").read_text()
        assert "Traceback" not in doctor and doctor.strip(), doctor
    answer = (tmp_path / "answer.txt").read_text().strip()
    assert answer, (tmp_path / "ask.log").read_text()
    assert "Decision support only" in (tmp_path / "ask.log").read_text()
