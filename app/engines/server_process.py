"""Run ``llama-server`` as a supervised child process on a private loopback port.

:class:`LlamaServerProcess` starts the binary on a free ``127.0.0.1`` port with a random API key,
waits for ``/health``, and keeps it up: a watchdog thread restarts a server that dies on its own
on the same port with the same key (clients keep their URL), and gives up after
:data:`MAX_RESTARTS` restarts within :data:`RESTART_WINDOW_S` seconds. The key reaches the child
through the ``LLAMA_API_KEY`` environment variable, never its command line or the log. Every start
appends a header line (time, command line) to the log, which is kept across runs.

The child dies with the app through :meth:`LlamaServerProcess.stop`, registered with ``atexit``
(and called by the app's SIGTERM handling, which exits through ``atexit``). ``PR_SET_PDEATHSIG``
is deliberately not used: it needs ``preexec_fn``, which is unsafe in a threaded app, and it fires
when the *thread* that started the child exits (the watchdog restarts it from its own thread).
A SIGKILLed app can therefore leave the server running; it only listens on loopback, behind a
key that died with the app.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import secrets
import shlex
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from app.engines.options import default_threads
from app.errors import UserError
from app.paths import data_dir, private_dir
from app.timestamps import utc_now

HOST = "127.0.0.1"
API_KEY_ENV = "LLAMA_API_KEY"  # read by llama-server (common/arg.cpp) like --api-key
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
RESTART_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0
LOG_ROTATE_BYTES = 20 * 1024 * 1024
_POLL_S = 0.2
_TAIL_LINES = 20
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes through a proxy

log = logging.getLogger(__name__)


class ServerStartError(UserError, RuntimeError):
    """llama-server did not come up; the message holds the last lines of its log."""


@dataclass(frozen=True)
class ServerSettings:
    """How to run the server: the model, parallel slots, context per slot, threads, GPU layers (-1: all)."""

    model_path: Path
    parallel: int = 4
    n_ctx: int = 4096  # per slot
    threads: int | None = None
    gpu_layers: int = 0
    extra_args: tuple[str, ...] = ()


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(binary: Path, settings: ServerSettings, port: int) -> list[str]:
    """The command line: loopback only, no web UI, no network, continuous batching and prompt cache on.

    With an explicit ``--parallel`` and a per-slot (not unified) KV cache, llama-server gives each
    slot ``--ctx-size / parallel`` tokens, so the total is ``parallel * n_ctx``. Flash attention is
    off, as in llama-cpp-python (the local engine): with it on, the same GGUF gives other greedy
    answers than the local engine.
    """
    threads = settings.threads or default_threads()
    gpu_layers = "all" if settings.gpu_layers < 0 else str(settings.gpu_layers)
    return [
        str(binary), "--model", str(settings.model_path), "--host", HOST, "--port", str(port),
        "--parallel", str(settings.parallel), "--ctx-size", str(settings.parallel * settings.n_ctx),
        "--no-kv-unified", "--threads", str(threads), "--threads-batch", str(threads),
        "--n-gpu-layers", gpu_layers, "--flash-attn", "off", "--cont-batching", "--cache-prompt", "--no-webui",
        "--metrics", "--slots", "--offline", *settings.extra_args,
    ]


def _child_environment(api_key: str) -> dict[str, str]:
    """This process's environment with the key, minus ``LLAMA_ARG_*`` settings that would override ours."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("LLAMA_ARG_") and name != API_KEY_ENV}
    env[API_KEY_ENV] = api_key
    return env


class LlamaServerProcess:
    """One supervised llama-server: start, health, restart on death, stop (also at exit)."""

    def __init__(self, binary: Path, settings: ServerSettings, log_path: Path | None = None,
                 on_restart: Callable[[int], None] | None = None) -> None:
        self.binary = Path(binary)
        self.settings = settings
        self._log_path = log_path or data_dir() / "logs" / "llama-server.log"
        self.on_restart = on_restart
        self.restarts = 0
        self.last_error: str | None = None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: threading.Thread | None = None
        self._port = 0
        self._api_key = ""
        self._version = ""

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self._port}"

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    @property
    def running(self) -> bool:
        process = self._process
        return process is not None and process.poll() is None

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def version(self) -> str:
        """llama.cpp's build info, e.g. ``b0-0c1e570`` (from ``GET /props``)."""
        return self._version

    def start(self, timeout_s: float = 120) -> None:
        """Start the server on a new free port with a new key and wait until it is healthy.

        Raises :class:`ServerStartError` (with the log's last lines) if it exits or is not healthy in time.
        Does nothing if it is already running.
        """
        with self._lock:
            if self.running:
                return
            self._stopping.clear()
            self.restarts = 0
            self.last_error = None
            self._port = free_port()
            self._api_key = secrets.token_urlsafe(32)
            self._launch(timeout_s)
            self._version = self._read_version()
            atexit.register(self.stop)
            self._watchdog = threading.Thread(target=self._watch, name="llama-server-watchdog", daemon=True)
            self._watchdog.start()

    def _launch(self, timeout_s: float) -> None:
        """Spawn the child on the current port and key, and wait for health (the lock is held)."""
        command = server_command(self.binary, self.settings, self._port)
        private_dir(self._log_path.parent)
        if self._log_path.is_file() and self._log_path.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(self._log_path, self._log_path.with_name(self._log_path.name + ".1"))
        self._note(f"starting llama-server: {shlex.join(command)}")
        fd = os.open(self._log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                                             env=_child_environment(self._api_key))
        except OSError as exc:
            raise ServerStartError(f"Cannot run {self.binary}: {exc}") from exc
        finally:
            os.close(fd)
        self._wait_started(self._process, timeout_s)

    def _wait_started(self, process: subprocess.Popen[bytes], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._healthy():
            if process.poll() is not None:
                self._process = None
                raise ServerStartError(f"llama-server exited with status {process.returncode} while starting. "
                                       f"Its log ({self._log_path}) ends with:\n{self.log_tail()}")
            if self._stopping.is_set() or time.monotonic() > deadline:
                _terminate(process)
                self._process = None
                reason = "was stopped" if self._stopping.is_set() else f"was not ready after {timeout_s:.0f} s"
                raise ServerStartError(f"llama-server {reason} while starting. "
                                       f"Its log ({self._log_path}) ends with:\n{self.log_tail()}")
            time.sleep(_POLL_S)

    def _healthy(self) -> bool:
        """``GET /health`` answers 200 (503 while the model loads)."""
        try:
            with _NO_PROXY.open(f"{self.base_url}/health", timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, ValueError):
            return False

    def _read_version(self) -> str:
        request = urllib.request.Request(f"{self.base_url}/props",
                                         headers={"Authorization": f"Bearer {self._api_key}"})
        try:
            with _NO_PROXY.open(request, timeout=10) as response:
                return str(json.loads(response.read()).get("build_info", ""))
        except (OSError, ValueError, AttributeError):
            return ""

    def _watch(self) -> None:
        """Restart the server whenever it exits without :meth:`stop`; give up if it keeps dying."""
        attempts: collections.deque[float] = collections.deque()
        while not self._stopping.is_set():
            process = self._process
            if process is None:
                return
            try:
                process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
            with self._lock:
                if self._stopping.is_set() or process is not self._process:
                    continue
                reason = f"llama-server (pid {process.pid}) exited unexpectedly with status {process.returncode}"
                now = time.monotonic()
                while attempts and now - attempts[0] > RESTART_WINDOW_S:
                    attempts.popleft()
                if len(attempts) >= MAX_RESTARTS:
                    self.last_error = (f"{reason}; giving up after {MAX_RESTARTS} restarts within "
                                       f"{RESTART_WINDOW_S:.0f} s. See {self._log_path}.")
                    self._note(self.last_error)
                    log.error("%s", self.last_error)
                    self._process = None
                    return
                attempts.append(now)
                self._note(f"{reason}; restarting")
                log.warning("%s; restarting it on %s", reason, self.base_url)
                try:
                    self._launch(RESTART_TIMEOUT_S)
                except ServerStartError as exc:
                    self.last_error = str(exc)
                    if self._process is None and not self._stopping.is_set():
                        # it exited or hung while starting: count it and try again
                        self._process = process
                    continue
                self.restarts += 1
                self.last_error = None
                restarts = self.restarts
            if self.on_restart is not None:
                self.on_restart(restarts)

    def wait_healthy(self, timeout_s: float) -> bool:
        """Wait until the server answers ``/health`` (True), or it was stopped, gave up, or time ran out (False)."""
        deadline = time.monotonic() + timeout_s
        while not self._stopping.is_set():
            if self._healthy():
                return True
            if self._process is None or time.monotonic() > deadline:
                return False
            time.sleep(_POLL_S)
        return False

    def stop(self) -> None:
        """Stop the watchdog and the server (SIGTERM, then SIGKILL after 10 s). Idempotent."""
        self._stopping.set()
        with self._lock:
            process, self._process = self._process, None
            if process is not None:
                _terminate(process)
                self._note(f"stopped llama-server (pid {process.pid})")
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join(timeout=STOP_GRACE_S)
        atexit.unregister(self.stop)

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        """The log's last ``lines`` lines."""
        try:
            with self._log_path.open("rb") as handle:
                handle.seek(max(0, self._log_path.stat().st_size - 16384))
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _note(self, message: str) -> None:
        """Append one line of our own (time, message) to the server log."""
        fd = os.open(self._log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as handle:
            handle.write(f"=== {utc_now()} {message}\n")

    def __enter__(self) -> LlamaServerProcess:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it is still there after :data:`STOP_GRACE_S`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
