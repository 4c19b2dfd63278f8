"""Starting the UI server: offline settings, loopback by default, logins, host checks, private uploads.

Gradio is mounted on a FastAPI app (beside the OpenAI-compatible API at ``/v1``, :mod:`app.api`)
served by uvicorn, wrapped in :class:`RequestGuard`, which refuses requests for other host names
(DNS rebinding) or from other origins (cross-site requests), expires login sessions, and tells the
login check the client's address.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from app.db_in_use import in_use
from app.engines.base import Engine
from app.paths import cache_dir
from app.security import (
    API_KEYS_ENV,
    AUTH_ENV,
    NEW_KEY_COMMAND,
    ApiKeys,
    AuthError,
    FailureDelay,
    LiveFile,
    LoginGuard,
    PasswordHash,
    Users,
    is_loopback,
    is_unspecified,
    load_api_keys,
    load_users,
    login_page_message,
    read_api_keys_file,
)
from app.ui.state import AppState, ServeOptions

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}
UPLOAD_DIR_ENV = "GRADIO_TEMP_DIR"
MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # question-set imports (zips of benchmark repositories, question banks)
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})

CLIENT_ADDRESS: contextvars.ContextVar[str] = contextvars.ContextVar("client_address", default="unknown")

log = logging.getLogger(__name__)

__all__ = ["AuthError", "ServeOptions", "checked_options", "serve"]


def apply_offline_environment() -> None:
    """Turn off Gradio analytics and every hub call before Gradio is imported."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def allowed_host_names(options: ServeOptions) -> frozenset[str]:
    """Host names requests may name: loopback names, the bound host, and ``--allowed-host`` names."""
    if is_unspecified(options.host) and not options.allowed_hosts:
        raise AuthError(
            f"Serving on {options.host} (every address): name the host names or addresses clients use "
            f"with --allowed-host NAME (repeatable); requests for other names are refused."
        )
    names = {*LOOPBACK_NAMES, *(name.lower() for name in options.allowed_hosts)}
    if not is_unspecified(options.host):
        names.add(options.host.lower())
    return frozenset(names)


def host_name(netloc: str) -> str:
    """The host name of a ``Host`` header value (port and IPv6 brackets removed, lower case)."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:].partition("]")[0]
    name, _, port = netloc.rpartition(":")
    return name if name and port.isdigit() else netloc


class SessionClock:
    """Expires Gradio's login tokens ``max_age_s`` after they were first seen (at the login response), and
    at once those of a user no longer in ``users`` (removed from the users file while logged in) or whose
    password was changed since (the old sessions may be someone else's who knew the old password)."""

    def __init__(self, tokens: Callable[[], dict[str, str]], max_age_s: float,
                 users: LiveFile[Users] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._tokens = tokens
        self.max_age_s = max_age_s
        self._users = users
        self._clock = clock
        self._born: dict[str, tuple[float, PasswordHash | None]] = {}  # token: first seen, password then

    def sweep(self) -> None:
        """Note new tokens and delete expired ones (their cookies then count as logged out)."""
        now = self._clock()
        tokens = self._tokens()
        current = self._users.current() if self._users else None
        for token, user in list(tokens.items()):
            account = current.get(user) if current is not None else None
            password = account.password if account else None
            born, password_then = self._born.setdefault(token, (now, password))
            if current is not None and account is None:
                tokens.pop(token, None)
                log.info("session ended, no longer in the users file: user=%r", user)
            elif password != password_then:
                tokens.pop(token, None)
                log.info("session ended, password changed: user=%r", user)
            elif now - born >= self.max_age_s:
                tokens.pop(token, None)
                log.info("session expired: user=%r", user)
        self._born = {token: seen for token, seen in self._born.items() if token in tokens}


class RequestGuard:
    """ASGI wrapper: 400 for a Host not allowed, 403 for a foreign Origin; session expiry; client address."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str], proxy_hosts: frozenset[str],
                 sessions: SessionClock | None) -> None:
        self.app = app
        self.hosts = hosts
        self.proxy_hosts = proxy_hosts
        self.sessions = sessions

    def refusal(self, headers: dict[str, str]) -> tuple[int, str] | None:
        """``(status, reason)`` when the request must be refused, else ``None``."""
        host = headers.get("host", "")
        if host_name(host) not in self.hosts:
            return 400, "Host not allowed"
        origin = headers.get("origin")
        if origin is not None and not self.origin_allowed(origin, host):
            return 403, "Cross-origin request refused"
        return None

    def origin_allowed(self, origin: str, host: str) -> bool:
        """Same origin as the requested host, or a ``--allowed-host`` name (a reverse proxy's)."""
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        return parts.netloc.lower() == host.strip().lower() or parts.hostname in self.proxy_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        refused = self.refusal(headers)
        if refused is not None:
            await self._refuse(scope, send, *refused)
            return
        client = scope.get("client")
        CLIENT_ADDRESS.set(client[0] if client else "unknown")
        if self.sessions is not None:
            self.sessions.sweep()
        try:
            await self.app(scope, receive, send)
        finally:
            if self.sessions is not None:
                self.sessions.sweep()

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, reason: str) -> None:
        log.warning("%s: %s %s host=%r origin=%r", reason, scope["type"], scope.get("path"),
                    dict(scope["headers"]).get(b"host"), dict(scope["headers"]).get(b"origin"))
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = reason.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def authenticate_with(guard: LoginGuard, failure_delay: FailureDelay) -> Callable[[str, str], Awaitable[bool]]:
    """Gradio's login check: throttled by user and by the client address, ``failure_delay`` after a failure."""

    async def authenticate(username: str, password: str) -> bool:
        accepted = await asyncio.to_thread(guard.check, username, password, CLIENT_ADDRESS.get())
        if not accepted:
            await failure_delay.wait()
        return accepted

    return authenticate


@contextlib.contextmanager
def private_upload_dir() -> Iterator[Path]:
    """A 0700 folder under the cache folder for Gradio's uploads, set as ``$GRADIO_TEMP_DIR``, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="uploads-", dir=cache_dir()))
    previous = os.environ.get(UPLOAD_DIR_ENV)
    os.environ[UPLOAD_DIR_ENV] = str(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if previous is None:
            os.environ.pop(UPLOAD_DIR_ENV, None)
        else:
            os.environ[UPLOAD_DIR_ENV] = previous


@contextlib.contextmanager
def sigterm_exits() -> Iterator[None]:
    """SIGTERM raises SystemExit (uvicorn re-sends it after its graceful shutdown), so cleanups still run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_now(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def checked_options(options: ServeOptions) -> ServeOptions:
    """``options`` with their users and API keys loaded, checked before anything slow starts: binding
    beyond loopback requires a login and API keys, binding every address requires --allowed-host."""
    users = load_users(options.auth_file)
    api_keys = load_api_keys(options.api_key_file)
    if not is_loopback(options.host) and users is None:
        raise AuthError(
            f"Refusing to serve on {options.host} without a login: patient questions would be open to "
            f"the network. Create users with `jmedllm user add NAME` and pass --auth-file FILE, or set ${AUTH_ENV}."
        )
    if not is_loopback(options.host) and api_keys is None:
        raise AuthError(
            f"Refusing to serve on {options.host} without API keys: the API at /v1 needs them beyond loopback. "
            f"Pass --api-key-file FILE (one key per line, e.g. from {NEW_KEY_COMMAND}; chmod 600 FILE) "
            f"or set ${API_KEYS_ENV}."
        )
    allowed_host_names(options)
    return replace(options, users=users, admins=users.admins if users else frozenset(), api_keys=api_keys)


def serve(engine: Engine, options: ServeOptions, lang: str = "ja") -> None:
    """Build the UI and serve it until interrupted; ``options`` come from :func:`checked_options`."""
    users = options.users
    hosts = allowed_host_names(options)
    with private_upload_dir(), in_use(options.database):  # `db restore` waits for this server to stop
        apply_offline_environment()
        guard = LoginGuard(users) if users else None
        api_keys = (LiveFile(options.api_keys, options.api_key_file, read_api_keys_file, ApiKeys(()))
                    if options.api_keys and options.api_key_file else None)
        app, gradio_app = build_server(AppState(engine, options, guard.users if guard else None, api_keys), lang,
                                       guard)
        sessions = (SessionClock(lambda: gradio_app.tokens, options.session_hours * 3600, guard.users)
                    if guard else None)
        guarded = RequestGuard(app, hosts, frozenset(n.lower() for n in options.allowed_hosts), sessions)
        import uvicorn

        config = uvicorn.Config(guarded, host=options.host, port=options.port, access_log=False,
                                timeout_graceful_shutdown=5)
        with sigterm_exits():
            uvicorn.Server(config).run()


def build_server(state: AppState, lang: str, guard: LoginGuard | None) -> tuple[Any, Any]:
    """The FastAPI app with the OpenAI-compatible API at ``/v1`` and the Gradio UI mounted at ``/``, and
    Gradio's own app (which holds the login tokens)."""
    import gradio as gr
    from fastapi import FastAPI
    from starlette.middleware.cors import CORSMiddleware
    from starlette.routing import Mount

    from app.api.routes import api_router
    from app.ui.blocks import THEME, build_app
    from app.ui.ime_guard import IME_GUARD_SCRIPT

    demo = build_app(state, lang)
    demo.queue(default_concurrency_limit=state.engine.slots)  # one event per generation slot
    root = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    # The UI is same-origin: no cross-origin access at all (this also turns off Gradio's origin echo).
    root.add_middleware(CORSMiddleware, allow_origins=[])
    failure_delay = FailureDelay()  # one line for wrong API keys and wrong passwords alike
    root.include_router(api_router(state, failure_delay))  # before the mount at "/", which would otherwise take /v1
    gr.mount_gradio_app(
        root, demo, path="/", server_name=state.options.host, server_port=state.options.port,
        auth=authenticate_with(guard, failure_delay) if guard else None, auth_message=login_page_message(),
        max_file_size=MAX_UPLOAD_BYTES,
        ssr_mode=False, theme=THEME, head=IME_GUARD_SCRIPT, footer_links=[],
    )
    gradio_app = next(route.app for route in root.routes if isinstance(route, Mount))
    return root, gradio_app
