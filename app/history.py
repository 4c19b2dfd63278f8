"""Opt-in question history in the local SQLite database (table ``questions``)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import sqlite_utils

from app.engine import Engine, GenerationStats


def open_db(path: Path) -> sqlite_utils.Database:
    """Open (creating if needed) the app database with WAL and foreign keys on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(path)
    db.execute("PRAGMA foreign_keys = ON")
    db.enable_wal()
    return db


def record_question(db_path: Path, engine: Engine, question: str, choices: tuple[str, ...],
                    language: str, answer: str, picked: str | None, stats: GenerationStats) -> int:
    """Store one answered question with the model that answered it; returns its row id."""
    db = open_db(db_path)
    card = engine.card
    with db.conn:
        table = db["questions"].insert(
            {
                "asked_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "question": question,
                "choices": json.dumps(list(choices), ensure_ascii=False),
                "language": language,
                "answer": answer,
                "picked": picked,
                "model_file": card.file_name,
                "model_sha256": card.sha256,
                "quantization": card.quantization,
                "device": engine.device,
                "completion_tokens": stats.completion_tokens,
                "tokens_per_second": round(stats.tokens_per_second, 2),
                "finish_reason": stats.finish_reason,
            },
            pk="id",
        )
    return int(table.last_pk)
