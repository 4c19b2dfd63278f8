"""Exporting a run's answers, each row carrying the run's model and settings."""

from __future__ import annotations

import csv
import json
from typing import IO

import sqlite_utils

from app.bench.store import answer_columns, iter_answers

RUN_FIELDS = ("model_file", "model_sha256", "quantization", "mode", "template", "shots", "question_set",
              "data_fingerprint")


def write_export(db: sqlite_utils.Database, run: dict, fmt: str, handle: IO[str]) -> int:
    columns = ["run_id", *RUN_FIELDS, *[c for c in answer_columns() if c not in ("id", "run_id")]]
    count = 0
    writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore") if fmt == "csv" else None
    if writer:
        writer.writeheader()
    for row in iter_answers(db, run["id"]):
        record = {"run_id": run["id"], **{k: run[k] for k in RUN_FIELDS}, **row}
        record.pop("id", None)
        if writer:
            writer.writerow(record)
        else:
            handle.write(json.dumps({c: record.get(c) for c in columns}, ensure_ascii=False) + "\n")
        count += 1
    return count
