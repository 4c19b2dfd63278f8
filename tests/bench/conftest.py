"""Fixtures for the IgakuQA benchmark tests: the shared data (never copied into the repo), a
session-wide demo engine, and small hand-made data folders for the malformed-data tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.bench.data import Dataset
from app.bench.sources import load_dataset
from app.engines.base import Engine
from tests.conftest import SHARED_DIR, require_shared

IGAKUQA_DIR = SHARED_DIR / "igakuqa"


@pytest.fixture(scope="session")
def igakuqa_dir() -> Path:
    require_shared(IGAKUQA_DIR / "data", "IgakuQA data (git clone https://github.com/jungokasai/IgakuQA)")
    return IGAKUQA_DIR


@pytest.fixture(scope="session")
def dataset(igakuqa_dir: Path) -> Dataset:
    return load_dataset(igakuqa_dir)


@pytest.fixture(scope="session")
def bench_engine(demo_engine: Engine) -> Engine:
    """The session's demo engine (0.5B Qwen2.5 GGUF on the CPU), shared with the app's tests."""
    return demo_engine


def write_block(root: Path, exam: int = 116, block: str = "A", n: int = 3, **overrides: list[str]) -> Path:
    """A tiny, valid IgakuQA-shaped year: data/YEAR/EXAM-X{,_translate,_metadata}.jsonl for blocks A-F,
    ``overrides`` ("", "_translate", "_metadata": lists of lines) replacing files of ``block``."""
    for other in "ABCDEF":
        if other != block:
            _write_one(root, exam, other, n, {})
    return _write_one(root, exam, block, n, overrides)


def _write_one(root: Path, exam: int, block: str, n: int, overrides: dict[str, list[str]]) -> Path:
    year = {112: 2018, 113: 2019, 114: 2020, 115: 2021, 116: 2022}[exam]
    folder = root / "data" / str(year)
    folder.mkdir(parents=True, exist_ok=True)
    ja, en, meta = [], [], []
    for i in range(1, n + 1):
        pid = f"{exam}{block}{i}"
        ja.append({"problem_id": pid, "problem_text": f"問題{i}", "choices": ["あ", "い", "う", "え", "お"],
                   "text_only": True, "answer": ["a"], "points": "1"})
        en.append({"problem_id": pid, "problem_text_en": f"Question {i}",
                   "choices_en": ["A1", "B1", "C1", "D1", "E1"], "answer": ["a"]})
        meta.append({"problem_id": pid, "category": "test", "kinki": [], "human_accuracy": "50.0"})
    for name, rows in (("", ja), ("_translate", en), ("_metadata", meta)):
        lines = [json.dumps(r, ensure_ascii=False) for r in rows]
        if name in overrides:
            lines = overrides[name]
        (folder / f"{exam}-{block}{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
