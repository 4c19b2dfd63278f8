"""Runs reuse their shared prompt prefix: on the real demo model a run that reuses it gives the raw
outputs and picks of one that evaluates every prompt from scratch (0 and 3 shots; generated answers,
and the loglik mode's choice scores), takes the
prefix from the engine's kept state from each language's second question on, and leaves nothing
kept when it ends; on a scripted engine with several slots, questions in flight together never
share a key, and every key is forgotten."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from app.bench.data import Dataset
from app.bench.runner import RunConfig, plan, prefix_key, run_benchmark
from app.bench.sets import SetSpec
from app.bench.sources import load_dataset
from app.engines.base import Generation, GenerationStats, OptionScores, Sampling
from app.engines.local import LocalEngine
from tests.bench.conftest import write_block
from tests.bench.test_runner_scripted import first_choice
from tests.scripted_engine import ScriptedEngine

# questions of different lengths, so that the part evaluated after the shared prefix varies
TEXTS = [("頭痛を訴える患者で最初に行う検査はどれか。", "Which test comes first in a patient with a headache?"),
         ("65歳の男性。3日前からの発熱と咳嗽を主訴に来院した。胸部エックス線写真で右下肺野に浸潤影を認める。"
          "最も考えられるのはどれか。",
          "A 65-year-old man has had fever and cough for three days. A chest X-ray shows an infiltrate in "
          "the right lower lung field. What is the most likely diagnosis?"),
         ("貧血の原因で正しいのはどれか。", "Which is a cause of anaemia?")]
CHOICES = [(["血液検査", "頭部CT", "腰椎穿刺", "脳波", "MRI"],
            ["Blood test", "Head CT", "Lumbar puncture", "EEG", "MRI"]),
           (["肺炎", "肺癌", "気胸", "肺塞栓症", "心不全"],
            ["Pneumonia", "Lung cancer", "Pneumothorax", "Pulmonary embolism", "Heart failure"]),
           (["鉄欠乏", "高血圧", "糖尿病", "骨折", "近視"],
            ["Iron deficiency", "Hypertension", "Diabetes", "Fracture", "Myopia"])]


@pytest.fixture(scope="module")
def varied(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Block A of 2022: three questions of different lengths in Japanese and English."""
    ja = [json.dumps({"problem_id": f"116A{i}", "problem_text": text, "choices": choices, "text_only": True,
                      "answer": ["a"], "points": "1"}, ensure_ascii=False)
          for i, ((text, _), (choices, _)) in enumerate(zip(TEXTS, CHOICES, strict=True), start=1)]
    en = [json.dumps({"problem_id": f"116A{i}", "problem_text_en": text, "choices_en": choices, "answer": ["a"]})
          for i, ((_, text), (_, choices)) in enumerate(zip(TEXTS, CHOICES, strict=True), start=1)]
    # "" (the Japanese file) is no identifier, so only ** can pass it; mypy matches the dict to every parameter
    folder = write_block(tmp_path_factory.mktemp("igakuqa"), n=3, **{"": ja, "_translate": en})  # type: ignore[arg-type]
    return load_dataset(folder)


def answers(db: Path) -> list[tuple[str, str, str, str, int]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("select problem_id, language, raw_output, picked, prompt_tokens from answers "
                            "order by id").fetchall()
    finally:
        conn.close()


def recorded_run(engine: LocalEngine, db: Path, config: RunConfig, dataset: Dataset,
                 monkeypatch: pytest.MonkeyPatch) -> list[GenerationStats | OptionScores]:
    """Run to the end; what each question's evaluation reported, in order: a generation's stats (seen
    through the engine's ``stream``) or, in the loglik mode, the options' scores."""
    seen: list[Generation | OptionScores] = []
    method = "option_logprobs" if config.mode == "loglik" else "stream"
    original = getattr(engine, method)

    def recording(*args: object, **kwargs: object) -> Generation | OptionScores:
        result = original(*args, **kwargs)
        seen.append(result)
        return result

    with monkeypatch.context() as patch:
        patch.setattr(engine, method, recording)
        events = list(run_benchmark(engine, db, config, dataset=dataset))
    assert events[-1].status == "complete"
    return [s.stats if isinstance(s, Generation) else s for s in seen]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["generate", "loglik"])
@pytest.mark.parametrize("shots", [0, 3])
def test_reuse_gives_the_answers_from_scratch(bench_engine: LocalEngine, varied: Dataset, shots: int, mode: str,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = RunConfig(SetSpec("paper", blocks="A"), ("ja", "en"), mode=mode, shots=shots)
    items = plan(varied, config)
    assert len(items) == 6
    kept_before = len(bench_engine.conversation_cache)

    scratch = recorded_run(bench_engine, tmp_path / "scratch.db", replace(config, reuse_prefix=False),
                           varied, monkeypatch)
    reused = recorded_run(bench_engine, tmp_path / "reused.db", config, varied, monkeypatch)

    # loglik's raw output is every choice's log-probability: the scores too are bit-identical
    assert answers(tmp_path / "reused.db") == answers(tmp_path / "scratch.db")
    assert [s.cached_tokens for s in scratch] == [0] * 6
    # items alternate ja, en: each language's first question evaluates its whole prompt, the later ones
    # take the shared prefix (the instructions, 40% of a 0-shot prompt here; with the examples, most of
    # a 3-shot one) from the state kept under their language's key
    cached = [s.cached_tokens for s in reused]
    assert cached[:2] == [0, 0]
    share = 0.8 if shots else 0.35
    assert all(c > s.prompt_tokens * share for c, s in zip(cached[2:], reused[2:], strict=True)), cached
    keys = {prefix_key(config, language, question.n_choices) for question, language in items}
    assert len(keys) == 2 and not any(key is not None and key in bench_engine.conversation_cache for key in keys)
    assert len(bench_engine.conversation_cache) == kept_before


class LaneEngine(ScriptedEngine):
    """A served-like engine with three slots that records which keys are in use at once and which are forgotten."""

    def __init__(self) -> None:
        super().__init__(first_choice, pause_s=0.002, slots=3)
        self.kind = "llama-server"
        self.busy_keys: set[str | None] = set()
        self.shared: list[str | None] = []  # keys found in use by another question in flight
        self.forgotten: list[str] = []
        self._lock = threading.Lock()

    def _generate(self, prompt: str, sampling: Sampling, cancel: threading.Event | None,
                  stats: GenerationStats, conversation: str | None = None) -> Iterator[str]:
        with self._lock:
            if conversation in self.busy_keys:
                self.shared.append(conversation)
            self.busy_keys.add(conversation)
        try:
            yield from super()._generate(prompt, sampling, cancel, stats, conversation)
        finally:
            with self._lock:
                self.busy_keys.discard(conversation)

    def forget(self, conversation: str) -> None:
        self.forgotten.append(conversation)


def test_questions_in_flight_never_share_a_key(tmp_path: Path) -> None:
    dataset = load_dataset(write_block(tmp_path / "igakuqa", n=2))
    config = RunConfig(SetSpec("paper"), ("ja", "en"))
    engine = LaneEngine()
    events = list(run_benchmark(engine, tmp_path / "bench.db", config, dataset=dataset))
    assert events[-1].status == "complete" and len(engine.prompts) == 24
    assert engine.shared == [] and None not in engine.conversations
    used = set(engine.conversations)
    assert len(used) == 6  # two languages x three lanes
    assert set(engine.forgotten) == used


def test_reuse_off_asks_without_a_key(tmp_path: Path) -> None:
    dataset = load_dataset(write_block(tmp_path / "igakuqa", n=1))
    engine = LaneEngine()
    config = RunConfig(SetSpec("paper"), ("ja",), reuse_prefix=False)
    list(run_benchmark(engine, tmp_path / "bench.db", config, dataset=dataset))
    assert engine.conversations == [None] * 6 and engine.forgotten == []
    assert config.identity("x", "y") == RunConfig(SetSpec("paper"), ("ja",)).identity("x", "y")
