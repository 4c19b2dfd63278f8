"""llama.cpp's own ``llama-server``, built from the source that the pinned llama-cpp-python sdist vendors.

No prebuilt binary is downloaded: the llama-cpp-python sdist of exactly the installed version
(``$JMEDLLM_LLAMA_CPP_SDIST``, else a copy in the cache, else ``pip download``) is checked member
by member, only its ``vendor/llama.cpp`` tree is unpacked, and CMake builds the ``llama-server``
target statically with the same ``$CMAKE_ARGS`` that built llama-cpp-python (``cuda=True`` adds
``-DGGML_CUDA=ON``). The binary lands in ``<cache>/llama-server/<version>-<options hash>/`` with
a ``build.json`` beside it. The build runs in a temporary folder that is renamed into place only
when finished, under a file lock, so an interrupted build leaves no half binary and two
concurrent builds of the same key build once. ``$JMEDLLM_LLAMA_SERVER`` names a binary of the
hospital's own and skips all of this.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TextIO

from app.atomic import write_json_atomic
from app.engines.options import default_threads
from app.errors import UserError
from app.hashing import sha256_file
from app.paths import cache_dir, private_dir
from app.timestamps import utc_now

PACKAGE = "llama-cpp-python"
BINARY_NAME = "llama-server"
SERVER_ENV = "JMEDLLM_LLAMA_SERVER"
SDIST_ENV = "JMEDLLM_LLAMA_CPP_SDIST"
VENDOR_DIR = "vendor/llama.cpp"
SERVER_SOURCE_DIR = f"{VENDOR_DIR}/tools/server"
COMMIT_FILE = ".git/modules/vendor/llama.cpp/HEAD"  # the submodule's commit, as the sdist records it
MAX_SOURCE_BYTES = 1024**3  # the vendored tree is about 180 MB; more is not a llama-cpp-python sdist
MIN_CMAKE = (3, 14)
CPU_BUILD_CORE_MINUTES = 15  # measured: 7.2 minutes on 2 cores
# Always the app's choice (after $CMAKE_ARGS, so these win): a static, relocatable server without
# HTTPS, web UI or anything fetched at build time (LLAMA_USE_PREBUILT_UI would download the UI).
FIXED_CMAKE_ARGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_COMMON=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
)
_TRUE = {"on", "true", "yes", "y", "1"}
_FALSE = {"off", "false", "no", "n", "0"}
_NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]")
_MAKE_STEP = re.compile(r"^\[\s*(\d+)%\]")
_LOG_TAIL_LINES = 25

Progress = Callable[[str], None]


class ServerBuildError(UserError, RuntimeError):
    """llama-server cannot be found or built; the message says what to install or fix."""


def _normalise(args: Sequence[str]) -> dict[str, str]:
    """``-DNAME[:TYPE]=VALUE`` definitions as {NAME: VALUE}, the last one winning, booleans as ON/OFF.

    Other CMake arguments (a generator, warning flags) do not change what is built and are left out.
    """
    definitions: dict[str, str] = {}
    tokens = iter(args)
    for token in tokens:
        if token == "-D":
            token = "-D" + next(tokens, "")
        if not token.startswith("-D"):
            continue
        name, sep, value = token[2:].partition("=")
        name = name.split(":", 1)[0].strip()
        if not sep or not name:
            raise ServerBuildError(f"Cannot read the CMake option {token!r} (from $CMAKE_ARGS): "
                                   "write it as -DNAME=VALUE.")
        lowered = value.strip().lower()
        definitions[name] = "ON" if lowered in _TRUE else "OFF" if lowered in _FALSE else value
    return definitions


@dataclass(frozen=True)
class BuildOptions:
    """What the binary is built with: CUDA or not, and the user's CMake arguments (as for llama-cpp-python)."""

    cuda: bool = False
    cmake_args: tuple[str, ...] = ()

    @classmethod
    def from_environment(cls, cuda: bool = False) -> BuildOptions:
        """The options llama-cpp-python was built with: ``$CMAKE_ARGS``, plus CUDA when asked."""
        return cls(cuda=cuda, cmake_args=tuple(shlex.split(os.environ.get("CMAKE_ARGS", ""))))

    @property
    def uses_cuda(self) -> bool:
        return self.cuda or _normalise(self.cmake_args).get("GGML_CUDA") == "ON"

    def definitions(self) -> tuple[str, ...]:
        """The normalised user definitions, sorted, with ``-DGGML_CUDA=ON`` when CUDA is asked for."""
        definitions = _normalise(self.cmake_args)
        if self.cuda:
            definitions["GGML_CUDA"] = "ON"
        return tuple(f"-D{name}={value}" for name, value in sorted(definitions.items()))

    def key(self, version: str) -> str:
        """The cache folder name: ``<version>-<12 hex of sha256(options)>``."""
        payload = json.dumps({"cmake_args": self.definitions(), "cuda": self.uses_cuda, "fixed": FIXED_CMAKE_ARGS})
        return f"{version}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class SourceInfo:
    """An unpacked llama.cpp tree and the commit the sdist records for it (None if it records none)."""

    source_dir: Path
    commit: str | None


def llama_cpp_python_version() -> str:
    """The installed (pinned) llama-cpp-python version, whose vendored llama.cpp the server is built from."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ServerBuildError(f"{PACKAGE} is not installed; install the app with: pip install -e .") from exc


def server_root() -> Path:
    """``<cache>/llama-server``: built binaries, their logs, and the downloaded sdist."""
    return private_dir(cache_dir() / "llama-server")


def sdist_name(version: str) -> str:
    return f"llama_cpp_python-{version}.tar.gz"


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def cached_server(options: BuildOptions | None = None) -> Path | None:
    """The cached binary for ``options`` (default: from the environment) if already built, else None.

    Only the cache is looked at; ``$JMEDLLM_LLAMA_SERVER`` is honoured by :func:`ensure_llama_server`.
    """
    options = options or BuildOptions.from_environment()
    binary = server_root() / options.key(llama_cpp_python_version()) / BINARY_NAME
    return binary if _is_executable(binary) else None


def ensure_llama_server(options: BuildOptions | None = None, on_progress: Progress | None = None) -> Path:
    """The llama-server binary: ``$JMEDLLM_LLAMA_SERVER``, else the cached build, else built now (minutes)."""
    override = os.environ.get(SERVER_ENV)
    if override:
        binary = Path(override).expanduser()
        if not _is_executable(binary):
            raise ServerBuildError(f"${SERVER_ENV} is {override}, which is not an executable file. Point it at "
                                   "a llama-server binary, or unset it to build one from the llama.cpp source.")
        return binary
    options = options or BuildOptions.from_environment()
    report = on_progress or (lambda _line: None)
    version = llama_cpp_python_version()
    key = options.key(version)
    root = server_root()
    binary = root / key / BINARY_NAME
    if _is_executable(binary):
        return binary
    with _build_lock(root / f"build-{key}.lock", report):
        if _is_executable(binary):  # another process built it while this one waited
            return binary
        cmake = find_cmake()
        _check_compilers(options)
        sdist = _locate_sdist(version, root, report)
        _build(sdist, version, options, cmake, root / key, report)
    return binary


@contextlib.contextmanager
def _build_lock(path: Path, report: Progress) -> Iterator[None]:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report("Another process is building llama-server; waiting for it ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def find_cmake() -> str:
    """CMake from the app's environment (``pip install cmake``) or PATH, at least version 3.14."""
    bundled = Path(sys.executable).parent / "cmake"
    cmake = str(bundled) if _is_executable(bundled) else shutil.which("cmake")
    if cmake is None:
        raise ServerBuildError("Building llama-server needs CMake 3.14 or newer, which was not found. Install it "
                               "(apt install cmake, or pip install cmake into the app's environment).")
    output = subprocess.run([cmake, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"version (\d+)\.(\d+)", output)
    if match is None or (int(match[1]), int(match[2])) < MIN_CMAKE:
        raise ServerBuildError(f"{cmake} is too old or unreadable ({output.strip()[:80]!r}); building "
                               "llama-server needs CMake 3.14 or newer (pip install cmake).")
    return cmake


def _check_compilers(options: BuildOptions) -> None:
    """A C and a C++ compiler (``$CC``/``$CXX`` or the usual names), and nvcc for a CUDA build."""
    for env, names, what in (("CC", ("cc", "gcc", "clang"), "C"), ("CXX", ("c++", "g++", "clang++"), "C++")):
        candidates = [os.environ[env]] if os.environ.get(env) else list(names)
        if not any(shutil.which(name) for name in candidates):
            raise ServerBuildError(f"Building llama-server needs a {what} compiler ({' or '.join(candidates)}), "
                                   "which was not found. Install one: apt install build-essential (Debian/Ubuntu), "
                                   "dnf install gcc-c++ (Fedora), or xcode-select --install (macOS).")
    if options.uses_cuda and not (os.environ.get("CUDACXX") or shutil.which("nvcc")
                                  or _is_executable(Path("/usr/local/cuda/bin/nvcc"))):
        raise ServerBuildError("A CUDA build of llama-server needs the CUDA toolkit's nvcc, which was not found. "
                               "Install the CUDA toolkit, or set $CUDACXX to nvcc's path.")


def _locate_sdist(version: str, root: Path, report: Progress) -> Path:
    """``$JMEDLLM_LLAMA_CPP_SDIST``, else the cached sdist, else one downloaded now with pip and cached."""
    override = os.environ.get(SDIST_ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ServerBuildError(f"${SDIST_ENV} is {override}, which is not a file. Point it at "
                                   f"{sdist_name(version)}, or unset it to download the source with pip.")
        return path
    cached = private_dir(root / "sdist") / sdist_name(version)
    if cached.is_file():
        return cached
    report(f"Downloading the {PACKAGE} {version} source from PyPI ...")
    with tempfile.TemporaryDirectory(prefix=".download-", dir=root) as folder:
        command = [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={version}", "--no-binary", ":all:",
                   "--no-deps", "--disable-pip-version-check", "-d", folder]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        found = sorted(Path(folder).glob("*.tar.gz"))
        if result.returncode != 0 or len(found) != 1:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-_LOG_TAIL_LINES:])
            raise ServerBuildError(f"Could not download the {PACKAGE} {version} source with pip. Without "
                                   f"internet access, set ${SDIST_ENV} to a copy of {sdist_name(version)}.\n{tail}")
        os.replace(found[0], cached)
    return cached


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse an archive member that could write outside the target: absolute, ``..``, outward link, device."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or member.name.startswith("\\"):
        raise ServerBuildError(f"{archive} holds an unsafe path {member.name!r}; refusing to unpack it.")
    if member.issym() or member.islnk():
        # A symlink is relative to its folder, a hard link to the archive root.
        base = path.parent if member.issym() else PurePosixPath()
        target = PurePosixPath(os.path.normpath(base / member.linkname))
        if PurePosixPath(member.linkname).is_absolute() or target.parts[:1] == ("..",):
            raise ServerBuildError(f"{archive} holds a link {member.name!r} -> {member.linkname!r} pointing "
                                   "outside it; refusing to unpack it.")
    elif not (member.isfile() or member.isdir()):
        raise ServerBuildError(f"{archive} holds a special file {member.name!r} (device or pipe); "
                               "refusing to unpack it.")


def extract_llama_cpp(sdist: Path, version: str, dest: Path) -> SourceInfo:
    """Check every member of the llama-cpp-python ``version`` sdist, then unpack only its llama.cpp tree.

    Raises :class:`ServerBuildError` for an unreadable or hostile archive, another version's sdist,
    or one without ``vendor/llama.cpp/tools/server``; nothing is written outside ``dest``.
    """
    top = f"llama_cpp_python-{version}"
    vendor = f"{top}/{VENDOR_DIR}/"
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            members = archive.getmembers()
            for member in members:
                _check_member(member, sdist)
            names = {member.name.rstrip("/") for member in members}
            if not any(name.startswith(f"{top}/{SERVER_SOURCE_DIR}/") for name in names):
                raise ServerBuildError(f"{sdist} is not the {PACKAGE} {version} source with llama.cpp's server: "
                                       f"it has no {top}/{SERVER_SOURCE_DIR}. Use the sdist of exactly "
                                       f"{PACKAGE} {version}.")
            wanted = [m for m in members if m.name.startswith(vendor) and m.name != f"{vendor}.git"]
            if sum(m.size for m in wanted) > MAX_SOURCE_BYTES:
                raise ServerBuildError(f"{sdist} unpacks to more than {MAX_SOURCE_BYTES >> 20} MiB; "
                                       f"that is not a {PACKAGE} sdist.")
            commit = _read_commit(archive, f"{top}/{COMMIT_FILE}") if f"{top}/{COMMIT_FILE}" in names else None
            archive.extractall(dest, members=wanted, filter="data")
    except (tarfile.TarError, EOFError) as exc:
        raise ServerBuildError(f"Cannot unpack {sdist}: {exc}. The file is damaged; delete it and try again.") from exc
    except OSError as exc:
        raise ServerBuildError(f"Cannot unpack {sdist}: {exc}") from exc
    return SourceInfo(dest / top / VENDOR_DIR, commit)


def _read_commit(archive: tarfile.TarFile, name: str) -> str | None:
    handle = archive.extractfile(name)
    text = handle.read(200).decode("ascii", errors="replace").strip() if handle else ""
    return text if re.fullmatch(r"[0-9a-f]{40}", text) else None


def _build(sdist: Path, version: str, options: BuildOptions, cmake: str, target: Path, report: Progress) -> None:
    """Unpack, configure and build in a temporary folder, then rename the finished folder to ``target``."""
    root, key = target.parent, target.name
    for stale in root.glob(f".build-{key}-*"):  # left by an interrupted build; the lock is held
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=root))
    log_path = root / f"build-{key}.log"
    try:
        report(f"Unpacking the llama.cpp source from {sdist.name} ...")
        source = extract_llama_cpp(sdist, version, work / "src")
        commit = source.commit[:7] if source.commit else "unknown"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        configure = [cmake, "-S", str(source.source_dir), "-B", str(work / "build"), *generator,
                     *options.definitions(), *FIXED_CMAKE_ARGS, f"-DLLAMA_BUILD_COMMIT={commit}",
                     "-DLLAMA_BUILD_NUMBER=0"]
        jobs = default_threads()
        started = time.monotonic()
        with log_path.open("w") as log:
            report(f"Configuring llama-server ({'CUDA' if options.uses_cuda else 'CPU'} build) ...")
            _run_logged(configure, log, log_path, "Configuring llama-server", None)
            minutes = max(2, round(CPU_BUILD_CORE_MINUTES / jobs))
            estimate = "much longer with CUDA" if options.uses_cuda else f"about {minutes} minutes"
            report(f"Building llama-server on {jobs} cores ({estimate}) ...")
            _run_logged([cmake, "--build", str(work / "build"), "--target", BINARY_NAME, "-j", str(jobs)],
                        log, log_path, "Building llama-server", report)
        seconds = time.monotonic() - started
        out = work / "out"
        out.mkdir()
        shutil.copy2(work / "build" / "bin" / BINARY_NAME, out / BINARY_NAME)
        write_json_atomic(out / "build.json", {
            "llama_cpp_python": version,
            "cuda": options.uses_cuda,
            "cmake_args": [*options.definitions(), *FIXED_CMAKE_ARGS],
            "sdist": sdist.name,
            "sdist_sha256": sha256_file(sdist),
            "llama_cpp_commit": source.commit,
            "server_version": server_version(out / BINARY_NAME),
            "built_at": utc_now(),
            "build_seconds": round(seconds),
        })
        if target.exists():  # a folder without a usable binary: replace it
            shutil.rmtree(target)
        os.replace(out, target)
        report(f"Built llama-server in {seconds / 60:.1f} minutes: {target / BINARY_NAME}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_logged(command: list[str], log: TextIO, log_path: Path, what: str, report: Progress | None) -> None:
    """Run ``command`` with its output in the build log, reporting build progress every 10 %."""
    log.write(f"$ {shlex.join(command)}\n")
    log.flush()
    next_step = 10
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          text=True, errors="replace") as process:
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            ninja, make = _NINJA_STEP.match(line), _MAKE_STEP.match(line)
            percent = int(ninja[1]) * 100 // max(1, int(ninja[2])) if ninja else int(make[1]) if make else -1
            if report is not None and percent >= next_step:
                report(f"Building llama-server: {percent}% ...")
                next_step = percent // 10 * 10 + 10
    log.flush()
    if process.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:])
        raise ServerBuildError(f"{what} failed (exit status {process.returncode}). The full log is {log_path}; "
                               f"its last lines:\n{tail}")


def server_version(binary: Path) -> str:
    """The ``version: N (commit)`` line that ``llama-server --version`` prints ("" if it prints none)."""
    try:
        result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerBuildError(f"{binary} does not run: {exc}") from exc
    for line in (result.stdout + result.stderr).splitlines():
        if line.startswith("version:"):
            return line.strip()
    return ""
