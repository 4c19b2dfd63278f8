"""What the UI's tabs share: the loaded engine (swappable from the Model tab) and serve options."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from app.db import default_db_path
from app.engines.base import Engine


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

    @property
    def database(self) -> Path:
        return self.db_path or default_db_path()


class AppState:
    """The current engine; the Model tab replaces it while no generation is running."""

    def __init__(self, engine: Engine, options: ServeOptions) -> None:
        self._engine = engine
        self._swap_lock = threading.Lock()
        self.options = options

    @property
    def engine(self) -> Engine:
        return self._engine

    def replace_engine(self, engine: Engine) -> None:
        """Swap in a newly loaded engine (the old one is freed when unreferenced)."""
        with self._swap_lock:
            self._engine = engine
