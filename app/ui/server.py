"""Starting the UI server: offline settings, loopback by default, optional login."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING

from app.engines.base import Engine
from app.errors import UserError
from app.ui.state import AppState, ServeOptions

if TYPE_CHECKING:
    import gradio as gr  # imported at run time only after apply_offline_environment

AUTH_ENV = "JMEDLLM_AUTH"
OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}

__all__ = ["AuthError", "ServeOptions", "load_auth", "serve"]


class AuthError(UserError, ValueError):
    """The login settings are unreadable, malformed, or missing where a login is required."""


def apply_offline_environment() -> None:
    """Turn off Gradio analytics and every hub call before Gradio is imported."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def parse_auth_lines(text: str, source: str) -> list[tuple[str, str]]:
    """ "user:password" entries, one per line or comma-separated; blank lines and # comments skipped."""
    pairs = []
    for number, raw in enumerate(text.replace(",", "\n").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise AuthError(f'{source}, entry {number}: expected "user:password"')
        pairs.append((user, password))
    if not pairs:
        raise AuthError(f"{source} holds no user:password entry")
    return pairs


def load_auth(auth_file: Path | None) -> list[tuple[str, str]] | None:
    """Login pairs from ``auth_file`` or ``$JMEDLLM_AUTH``; ``None`` when neither is set."""
    if auth_file is not None:
        try:
            return parse_auth_lines(Path(auth_file).read_text(encoding="utf-8"), str(auth_file))
        except OSError as exc:
            raise AuthError(f"Cannot read the auth file {auth_file}: {exc}") from exc
    env = os.environ.get(AUTH_ENV)
    return parse_auth_lines(env, f"${AUTH_ENV}") if env else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(engine: Engine, options: ServeOptions, lang: str = "ja", block: bool = True) -> gr.Blocks:
    """Build and launch the UI. Binding beyond loopback requires a login."""
    auth = load_auth(options.auth_file)
    if not is_loopback(options.host) and not auth:
        raise AuthError(
            f"Refusing to serve on {options.host} without a login: patient questions would be open to "
            f"the network. Pass --auth-file FILE (user:password lines) or set ${AUTH_ENV}."
        )
    apply_offline_environment()
    from app.ui.blocks import THEME, build_app

    demo = build_app(AppState(engine, options), lang)
    demo.queue(default_concurrency_limit=1)
    demo.launch(
        server_name=options.host,
        server_port=options.port,
        auth=auth,
        share=False,
        inbrowser=False,
        ssr_mode=False,
        theme=THEME,
        footer_links=[],
        prevent_thread_lock=not block,
        quiet=False,
    )
    return demo
