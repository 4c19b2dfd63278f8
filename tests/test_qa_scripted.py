"""Asking questions on a scripted engine: the prompt each kind of question gets, the pick, busy and
stop behaviour, without loading a model."""

from __future__ import annotations

import threading

import pytest

from app.engines.base import EngineBusy, PromptTooLong
from app.qa import Query, ask
from tests.scripted_engine import ScriptedEngine

ORGANS = ("肝臓", "膵臓", "腎臓", "脾臓")


def test_multiple_choice_prompt_and_pick() -> None:
    engine = ScriptedEngine(lambda _prompt: "膵臓\nインスリンはβ細胞から分泌される。")
    answer = ask(engine, Query(text="インスリンを分泌する臓器はどれか。", choices=ORGANS))
    assert answer.generation.result().startswith("膵臓")
    assert answer.template == "medpalm_four_choice_cot_ja"
    assert engine.prompts == [answer.prompt]
    assert answer.prompt.endswith("インスリンを分泌する臓器はどれか。\n肝臓,膵臓,腎臓,脾臓\n### 応答：\n")
    assert answer.pick is not None and answer.pick.letters == ("b",)
    assert answer.chosen_text() == "(b) 膵臓"


def test_an_answer_that_names_no_option_abstains() -> None:
    answer = ask(ScriptedEngine(lambda _p: "I cannot tell from this."), Query(text="Which?", choices=ORGANS))
    answer.generation.result()
    assert answer.pick is not None and answer.pick.abstained and answer.chosen_text() == ""


def test_free_question_goes_through_the_chat_template_with_its_stops() -> None:
    engine = ScriptedEngine(lambda _p: "Between 60 and 100 beats per minute.<user>next turn")
    answer = ask(engine, Query(text="What is the normal adult resting heart rate?"))
    assert answer.generation.result() == "Between 60 and 100 beats per minute."
    assert answer.language == "en" and answer.pick is None
    assert answer.prompt.startswith("<system>You are a clinical decision-support assistant")


def test_busy_engine_and_overlong_question_are_refused_before_generating() -> None:
    engine = ScriptedEngine(lambda _p: "x" * 100, n_ctx=600)
    first = ask(engine, Query(text="Q1?"))
    with pytest.raises(EngineBusy, match="answering another question"):
        ask(engine, Query(text="Q2?"))
    first.generation.close()
    with pytest.raises(PromptTooLong, match="context window is 600 tokens"):
        ask(engine, Query(text="long " * 100))
    assert not engine.busy


def test_stop_ends_the_answer_early_and_frees_the_engine() -> None:
    cancel = threading.Event()
    engine = ScriptedEngine(lambda _p: "word " * 200, pause_s=0.001)
    answer = ask(engine, Query(text="Explain sepsis.", max_tokens=1000), cancel)
    for _ in answer.generation:
        if len(answer.generation.text) >= 20:
            cancel.set()
    assert answer.generation.stats.finish_reason == "cancelled"
    assert 20 <= len(answer.generation.text) < 1000 and not engine.busy
