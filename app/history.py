"""Opt-in question history in the local SQLite database (table ``questions``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

from app.db import connect
from app.engines.base import Engine, GenerationStats
from app.timestamps import utc_now


def record_question(db_path: Path, engine: Engine, question: str, choices: tuple[str, ...],
                    language: str, answer: str, picked: str | None, stats: GenerationStats) -> int:
    """Store one answered question with the model that answered it; returns its row id."""
    card = engine.card
    with connect(db_path) as db:
        table = db.table("questions").insert(
            {
                "asked_at": utc_now(),
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
        )
    return int(cast(int, table.last_pk))  # every insert sets it
