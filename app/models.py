"""Resolving what the user names as a model ("demo", a path, or nothing) to a GGUF file."""

from __future__ import annotations

import os
from pathlib import Path

from app.demo_model import DEMO_ALIAS, ensure_demo_model
from app.model_card import check_gguf_file
from app.paths import models_dir

MODEL_ENV = "JMEDLLM_MODEL"


def resolve_model(spec: str | Path | None, progress: bool = True) -> Path:
    """The GGUF for ``spec``: ``demo`` (the default) or a path, absolute or in the models folder."""
    spec = str(spec) if spec else os.environ.get(MODEL_ENV, DEMO_ALIAS)
    if spec == DEMO_ALIAS:
        return ensure_demo_model(progress=progress)
    path = Path(spec).expanduser()
    if not path.exists() and not path.is_absolute() and (models_dir() / path).exists():
        path = models_dir() / path
    return check_gguf_file(path)


def list_models() -> list[Path]:
    """GGUF files in the models folder, for the UI's picker."""
    return sorted(p for p in models_dir().glob("*.gguf") if p.is_file())
