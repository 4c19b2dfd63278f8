"""What the UI's tabs share: the loaded engine (swappable from the Model tab) and serve options."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from app.db import default_db_path
from app.engines.base import Engine
from app.security import ApiKeys, LiveFile, Users, is_loopback
from app.timestamps import utc_now


@dataclass(frozen=True)
class ServeOptions:
    """How the server was started."""

    host: str = "127.0.0.1"
    port: int = 7860
    auth_file: Path | None = None
    history: bool = False
    db_path: Path | None = None
    gpu_layers: str = "auto"
    n_ctx: int = 4096
    threads: int | None = None
    allowed_hosts: tuple[str, ...] = ()
    session_hours: float = 12.0
    users: Users | None = None
    admins: frozenset[str] = frozenset()
    api_key_file: Path | None = None
    api_keys: ApiKeys | None = None

    @property
    def database(self) -> Path:
        return self.db_path or default_db_path()

    @property
    def login_required(self) -> bool:
        """Whether users log in (a users file or ``$JMEDLLM_AUTH`` is in use)."""
        return self.users is not None

    @property
    def api_key_required(self) -> bool:
        """Whether the API needs ``Authorization: Bearer KEY``: keys are configured, or users log in."""
        return self.api_keys is not None or self.login_required


@dataclass(frozen=True)
class LoadedModel:
    """The engine that answers now and the load that put it there."""

    engine: Engine
    version: int  # 0 for the model the server started with, +1 per load: a page showing another is stale
    loaded_at: str  # ISO 8601, UTC
    username: str | None = None  # who loaded it from the UI (None: the console, or the local user)
    address: str | None = None  # from where (None: the model the server started with)


class AppState:
    """The current engine; the Model tab replaces it while no generation is running."""

    def __init__(self, engine: Engine, options: ServeOptions, users: LiveFile[Users] | None = None,
                 api_keys: LiveFile[ApiKeys] | None = None) -> None:
        self._loaded = LoadedModel(engine, 0, utc_now())
        self._swap_lock = threading.Lock()
        self.options = options
        self._users = users  # the users file as it is now (administrators demoted while it runs)
        self._api_keys = api_keys  # the API keys file as it is now (keys revoked while it runs)

    @property
    def engine(self) -> Engine:
        return self._loaded.engine

    @property
    def loaded(self) -> LoadedModel:
        """The current engine together with its version and who loaded it (one consistent snapshot)."""
        return self._loaded

    def replace_engine(self, engine: Engine, username: str | None = None, address: str | None = None) -> LoadedModel:
        """Swap in a newly loaded engine (the old one is freed when unreferenced)."""
        with self._swap_lock:
            self._loaded = LoadedModel(engine, self._loaded.version + 1, utc_now(), username, address)
            return self._loaded

    def may_load_models(self, username: str | None) -> bool:
        """Whether ``username`` may load models from the UI: the one place this rule lives.

        An administrator of the users file may; without logins, only on a loopback-bound server,
        whose local user is the administrator. Anyone else (on a LAN, nobody without admins in the
        users file) restarts ``jmedllm serve --model NAME`` at the console instead, as everyone does
        on a served engine (llama-server, openai), whose model the server process holds.
        """
        return self.engine.kind == "local" and self.is_admin(username)

    def api_keys(self) -> ApiKeys | None:
        """The API keys in force now (None: none configured)."""
        return self._api_keys.current() if self._api_keys else self.options.api_keys

    def is_admin(self, username: str | None) -> bool:
        """An administrator of the users file; without logins, the local user of a loopback-bound server."""
        admins = self._users.current().admins if self._users else self.options.admins
        if username is not None and username in admins:
            return True
        return not self.options.login_required and is_loopback(self.options.host)
