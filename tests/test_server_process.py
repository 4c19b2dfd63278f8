"""A real llama-server (built from the vendored llama.cpp, cached) with the demo model, under supervision."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import app.engines.server_process as server_process
from app.engines.server_process import LlamaServerProcess, ServerSettings, ServerStartError

pytestmark = pytest.mark.slow
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def make_server(binary: Path, model: Path, log_path: Path, restarts: list[int] | None = None) -> LlamaServerProcess:
    settings = ServerSettings(model_path=model, parallel=2, n_ctx=1024, threads=2)
    return LlamaServerProcess(binary, settings, log_path=log_path,
                              on_restart=restarts.append if restarts is not None else None)


@pytest.fixture
def server(llama_server_binary: Path, demo_model_path: Path, tmp_path: Path) -> Iterator[LlamaServerProcess]:
    with make_server(llama_server_binary, demo_model_path, tmp_path / "logs" / "llama-server.log") as process:
        yield process


def call(server: LlamaServerProcess, path: str, body: dict[str, Any] | None = None,
         key: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.base_url + path, data=data, headers=headers)
    try:
        with NO_PROXY.open(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def complete(server: LlamaServerProcess, prompt: str = "def add(a, b):", n_predict: int = 16) -> str:
    status, reply = call(server, "/completion", {"prompt": prompt, "n_predict": n_predict, "temperature": 0},
                         key=server.api_key)
    assert status == 200, reply
    return str(reply["content"])


def port_is_free(port: int) -> bool:
    """Nothing listens on the port, and a new server could bind it (as servers do, with SO_REUSEADDR)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        pass
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_serves_two_slots_of_1024_tokens_behind_its_key(server: LlamaServerProcess) -> None:
    assert server.running and server.base_url.startswith("http://127.0.0.1:")
    assert server.version.startswith("b"), server.version
    assert complete(server).strip()
    assert call(server, "/completion", {"prompt": "x", "n_predict": 1})[0] == 401
    assert call(server, "/completion", {"prompt": "x", "n_predict": 1}, key="wrong")[0] == 401
    status, props = call(server, "/props", key=server.api_key)
    assert status == 200 and props["total_slots"] == 2
    assert props["default_generation_settings"]["n_ctx"] == 1024
    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(complete(server, n_predict=24))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == 2 and all(answers)


def test_key_is_not_on_the_command_line_or_in_the_log(server: LlamaServerProcess) -> None:
    complete(server)
    assert server.api_key not in Path(f"/proc/{server.pid}/cmdline").read_bytes().decode()
    text = server.log_path.read_text()
    assert "starting llama-server:" in text and f"--port {server.base_url.rsplit(':', 1)[1]}" in text
    assert server.api_key not in text
    assert server.log_path.parent.stat().st_mode & 0o777 == 0o700
    assert server.log_path.stat().st_mode & 0o777 == 0o600


def test_killed_server_comes_back_on_the_same_port(llama_server_binary: Path, demo_model_path: Path,
                                                   tmp_path: Path) -> None:
    restarts: list[int] = []
    with make_server(llama_server_binary, demo_model_path, tmp_path / "server.log", restarts) as server:
        url, key, pid = server.base_url, server.api_key, server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: server.restarts == 1, 30), server.log_tail()
        assert server.wait_healthy(30)
        assert (server.base_url, server.api_key) == (url, key) and server.pid != pid
        assert restarts == [1] and server.last_error is None
        assert complete(server).strip()
        assert server.log_path.read_text().count("starting llama-server:") == 2
        assert "exited unexpectedly" in server.log_path.read_text()


def test_gives_up_when_it_keeps_dying(llama_server_binary: Path, demo_model_path: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_process, "MAX_RESTARTS", 1)
    with make_server(llama_server_binary, demo_model_path, tmp_path / "server.log") as server:
        first = server.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: server.restarts == 1 and server.running, 30), server.log_tail()
        second = server.pid
        assert second is not None
        os.kill(second, signal.SIGKILL)
        assert wait_for(lambda: server.last_error is not None, 30)
        assert "giving up after 1 restarts" in (server.last_error or "")
        assert not server.running and server.pid is None
        assert not server.wait_healthy(1)


def test_stop_ends_the_process_and_frees_the_port(llama_server_binary: Path, demo_model_path: Path,
                                                  tmp_path: Path) -> None:
    server = make_server(llama_server_binary, demo_model_path, tmp_path / "server.log")
    server.start()
    pid, port = server.pid, int(server.base_url.rsplit(":", 1)[1])
    assert pid is not None
    server.stop()
    server.stop()  # idempotent
    assert not server.running and server.pid is None
    assert not Path(f"/proc/{pid}").exists()
    assert port_is_free(port)
    assert "stopped llama-server" in server.log_path.read_text()


def test_a_model_that_does_not_load_is_a_clear_error(llama_server_binary: Path, tmp_path: Path) -> None:
    bad_model = tmp_path / "bad.gguf"
    bad_model.write_bytes(b"not a gguf file" * 100)
    server = make_server(llama_server_binary, bad_model, tmp_path / "server.log")
    with pytest.raises(ServerStartError, match="exited with status .* while starting.*ends with"):
        server.start(timeout_s=60)
    assert not server.running


def test_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    server = make_server(tmp_path / "no-such-llama-server", tmp_path / "model.gguf", tmp_path / "server.log")
    with pytest.raises(ServerStartError, match="Cannot run"):
        server.start()
