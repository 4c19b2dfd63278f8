"""The llama-server build and cache: options key, sdist checks, hostile archives, tools, lock, failed build."""

from __future__ import annotations

import fcntl
import io
import shutil
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from app.engines.server_build import (
    BINARY_NAME,
    BuildOptions,
    ServerBuildError,
    cached_server,
    ensure_llama_server,
    extract_llama_cpp,
    llama_cpp_python_version,
    server_root,
)

VERSION = "0.3.36"
TOP = f"llama_cpp_python-{VERSION}"
COMMIT = "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("c++") is None,
                                 reason="needs cmake and a C++ compiler")


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of the test's own, no $CMAKE_ARGS, no overrides."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("JMEDLLM_CACHE_DIR", str(cache))
    for name in ("CMAKE_ARGS", "JMEDLLM_LLAMA_SERVER", "JMEDLLM_LLAMA_CPP_SDIST"):
        monkeypatch.delenv(name, raising=False)
    return cache


def file_member(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link_member(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def write_sdist(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def good_members(top: str = TOP) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    return [
        file_member(f"{top}/pyproject.toml"),
        file_member(f"{top}/.git/modules/vendor/llama.cpp/HEAD", f"{COMMIT}\n".encode()),
        file_member(f"{top}/vendor/llama.cpp/.git", b"gitdir: ../../.git/modules/vendor/llama.cpp\n"),
        file_member(f"{top}/vendor/llama.cpp/CMakeLists.txt", b"project(x)\n"),
        file_member(f"{top}/vendor/llama.cpp/tools/server/server.cpp", b"int main() {}\n"),
    ]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_key_is_stable_and_names_version_and_options() -> None:
    key = BuildOptions().key(VERSION)
    assert key == BuildOptions().key(VERSION)
    assert key.startswith(f"{VERSION}-") and len(key) == len(VERSION) + 13
    assert BuildOptions().key("0.3.37") != key
    assert BuildOptions(cuda=True).key(VERSION) != key
    assert BuildOptions(cmake_args=("-DGGML_AVX2=OFF",)).key(VERSION) != key


def test_key_normalises_cmake_arguments() -> None:
    cuda = BuildOptions(cuda=True).key(VERSION)
    assert BuildOptions(cmake_args=("-DGGML_CUDA=on",)).key(VERSION) == cuda
    assert BuildOptions(cmake_args=("-D", "GGML_CUDA:BOOL=1")).key(VERSION) == cuda
    assert BuildOptions(cmake_args=("-G", "Ninja", "-DGGML_CUDA=true")).key(VERSION) == cuda
    both = BuildOptions(cmake_args=("-DA=1", "-DB=x")).key(VERSION)
    assert BuildOptions(cmake_args=("-DB=x", "-DA=ON")).key(VERSION) == both
    assert BuildOptions(cmake_args=("-DGGML_CUDA=on", "-DGGML_CUDA=off")).key(VERSION) == BuildOptions(
        cmake_args=("-DGGML_CUDA=OFF",)).key(VERSION)


def test_options_come_from_cmake_args(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMAKE_ARGS", "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES='86;89'")
    options = BuildOptions.from_environment()
    assert options.uses_cuda
    assert options.definitions() == ("-DCMAKE_CUDA_ARCHITECTURES=86;89", "-DGGML_CUDA=ON")
    assert BuildOptions.from_environment(cuda=True).key(VERSION) == options.key(VERSION)
    monkeypatch.setenv("CMAKE_ARGS", "-DGGML_CUDA")
    with pytest.raises(ServerBuildError, match="-DNAME=VALUE"):
        BuildOptions.from_environment().key(VERSION)


def test_server_override_must_be_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    monkeypatch.setenv("JMEDLLM_LLAMA_SERVER", str(binary))
    with pytest.raises(ServerBuildError, match="JMEDLLM_LLAMA_SERVER.*not an executable file"):
        ensure_llama_server()
    monkeypatch.setenv("JMEDLLM_LLAMA_SERVER", str(tmp_path / "missing"))
    with pytest.raises(ServerBuildError, match="not an executable file"):
        ensure_llama_server()
    binary.chmod(0o755)
    monkeypatch.setenv("JMEDLLM_LLAMA_SERVER", str(binary))
    assert ensure_llama_server() == binary


def fake_build(options: BuildOptions) -> Path:
    """Put an executable where a finished build of ``options`` would be."""
    folder = server_root() / options.key(llama_cpp_python_version())
    folder.mkdir(parents=True)
    binary = folder / BINARY_NAME
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return binary


def test_cached_binary_is_returned_without_building(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")  # no cmake, no compiler: a build would fail
    assert cached_server() is None
    binary = fake_build(BuildOptions())
    assert cached_server() == binary
    assert cached_server(BuildOptions(cuda=True)) is None
    assert ensure_llama_server() == binary


def test_second_build_waits_for_the_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While another process holds the build lock, a caller waits, then finds its binary."""
    monkeypatch.setenv("PATH", "")
    options = BuildOptions()
    lock_path = server_root() / f"build-{options.key(llama_cpp_python_version())}.lock"
    lines: list[str] = []
    result: list[Path] = []
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        waiter = threading.Thread(target=lambda: result.append(ensure_llama_server(options, lines.append)))
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and any("waiting" in line for line in lines)
        binary = fake_build(options)
        fcntl.flock(lock, fcntl.LOCK_UN)
    waiter.join(timeout=10)
    assert result == [binary]


def test_missing_cmake_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if (Path(sys.executable).parent / "cmake").exists():
        pytest.skip("the environment has its own cmake")
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ServerBuildError, match="needs CMake 3.14 or newer.*apt install cmake"):
        ensure_llama_server()


@needs_cmake
def test_missing_compiler_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    only_cmake = tmp_path / "bin"
    only_cmake.mkdir()
    (only_cmake / "cmake").symlink_to(shutil.which("cmake") or "")
    monkeypatch.setenv("PATH", str(only_cmake))
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(ServerBuildError, match="needs a C compiler.*build-essential"):
        ensure_llama_server()


def test_good_sdist_unpacks_only_llama_cpp(tmp_path: Path) -> None:
    sdist = write_sdist(tmp_path / "good.tar.gz", good_members())
    source = extract_llama_cpp(sdist, VERSION, tmp_path / "dest")
    assert source.commit == COMMIT
    assert source.source_dir == tmp_path / "dest" / TOP / "vendor" / "llama.cpp"
    assert files_under(source.source_dir) == ["CMakeLists.txt", "tools", "tools/server", "tools/server/server.cpp"]
    assert files_under(tmp_path / "dest") == [TOP, f"{TOP}/vendor", f"{TOP}/vendor/llama.cpp", *[
        f"{TOP}/vendor/llama.cpp/{name}" for name in files_under(source.source_dir)]]  # no .git, no pyproject.toml


@pytest.mark.parametrize("hostile", [
    file_member("../evil"),
    file_member(f"{TOP}/vendor/llama.cpp/../../../evil"),
    file_member("/tmp/jmedllm-test-evil"),
    link_member(f"{TOP}/vendor/llama.cpp/etc", "/etc"),
    link_member(f"{TOP}/vendor/llama.cpp/up", "../../../../evil"),
    link_member(f"{TOP}/vendor/llama.cpp/hard", "../evil", tarfile.LNKTYPE),
    link_member(f"{TOP}/vendor/llama.cpp/null", "", tarfile.CHRTYPE),
    link_member(f"{TOP}/vendor/llama.cpp/fifo", "", tarfile.FIFOTYPE),
], ids=["dotdot", "dotdot-in-vendor", "absolute", "symlink-etc", "symlink-up", "hardlink-out", "device", "fifo"])
def test_hostile_archive_is_refused(tmp_path: Path, hostile: tuple[tarfile.TarInfo, bytes | None]) -> None:
    sdist = write_sdist(tmp_path / "hostile.tar.gz", [*good_members(), hostile])
    before = files_under(tmp_path)
    with pytest.raises(ServerBuildError, match="refusing to unpack"):
        extract_llama_cpp(sdist, VERSION, tmp_path / "work" / "dest")
    assert files_under(tmp_path) == before
    assert not Path("/tmp/jmedllm-test-evil").exists()


def test_sdist_without_server_source_is_refused(tmp_path: Path) -> None:
    members = [m for m in good_members() if "tools/server" not in m[0].name]
    sdist = write_sdist(tmp_path / "nosrv.tar.gz", members)
    with pytest.raises(ServerBuildError, match="has no llama_cpp_python-0.3.36/vendor/llama.cpp/tools/server"):
        extract_llama_cpp(sdist, VERSION, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_sdist_of_another_version_is_refused(tmp_path: Path) -> None:
    sdist = write_sdist(tmp_path / "old.tar.gz", good_members("llama_cpp_python-0.3.1"))
    with pytest.raises(ServerBuildError, match="not the llama-cpp-python 0.3.36 source"):
        extract_llama_cpp(sdist, VERSION, tmp_path / "dest")


def test_unreadable_sdist_is_refused(tmp_path: Path) -> None:
    sdist = tmp_path / "broken.tar.gz"
    sdist.write_bytes(b"not a gzip file")
    with pytest.raises(ServerBuildError, match="Cannot unpack .*damaged; delete it and try again"):
        extract_llama_cpp(sdist, VERSION, tmp_path / "dest")


@needs_cmake
def test_sdist_override_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JMEDLLM_LLAMA_CPP_SDIST", str(tmp_path / "missing.tar.gz"))
    with pytest.raises(ServerBuildError, match="JMEDLLM_LLAMA_CPP_SDIST.*not a file"):
        ensure_llama_server()


@needs_cmake
def test_failed_build_keeps_its_log_and_no_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members = [m for m in good_members() if not m[0].name.endswith("CMakeLists.txt")]
    members.append(file_member(f"{TOP}/vendor/llama.cpp/CMakeLists.txt",
                               b'cmake_minimum_required(VERSION 3.14)\nproject(x NONE)\nmessage(FATAL_ERROR "boom")\n'))
    monkeypatch.setenv("JMEDLLM_LLAMA_CPP_SDIST", str(write_sdist(tmp_path / "fails.tar.gz", members)))
    monkeypatch.setattr("app.engines.server_build.llama_cpp_python_version", lambda: VERSION)
    lines: list[str] = []
    with pytest.raises(ServerBuildError, match="Configuring llama-server failed") as failure:
        ensure_llama_server(on_progress=lines.append)
    log = server_root() / f"build-{BuildOptions().key(VERSION)}.log"
    assert str(log) in str(failure.value) and "boom" in str(failure.value)
    assert "boom" in log.read_text()
    assert cached_server() is None
    assert [p.name for p in server_root().iterdir() if p.name.startswith(".build-")] == []
    assert any("Unpacking" in line for line in lines)
