"""The log of model loads from the UI (table ``model_loads``): who, when, which file, its sha256, and the outcome."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from app.db import connect
from app.timestamps import utc_now

LOADED = "loaded"  # the model now answers
REFUSED = "refused"  # not allowed: not an administrator, not a name in the models folder, or the model was busy
FAILED = "failed"  # allowed, but the file could not be loaded
RECENT_LOADS = 20
MAX_NAME_CHARS = 300  # a requested name is stored cut to this: the log stays small whatever is sent


@dataclass(frozen=True)
class LoadAttempt:
    """One attempt to load a model; ``username`` is None for the local user of a server without logins."""

    username: str | None
    address: str | None
    file_name: str
    outcome: str
    message: str = ""
    sha256: str | None = None
    quantization: str | None = None


def record_load(db_path: Path, attempt: LoadAttempt) -> int:
    """Append ``attempt`` to the log, stamped with the current UTC time; returns its row id."""
    row = asdict(attempt) | {
        "at": utc_now(),
        "file_name": attempt.file_name[:MAX_NAME_CHARS],
    }
    with connect(db_path) as db:
        table = db.table("model_loads").insert(row)
    return int(cast(int, table.last_pk))  # every insert sets it


def recent_loads(db_path: Path, limit: int = RECENT_LOADS) -> list[dict[str, Any]]:
    """The last ``limit`` attempts, newest first."""
    with connect(db_path) as db:
        return list(db.table("model_loads").rows_where(order_by="id desc", limit=limit))
